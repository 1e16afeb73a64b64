"""The engine: one event in, IdP calls made, one new immutable snapshot out.

Theory of operation
-------------------
Each provider declares two things side by side in one module:

* a :class:`FlowMachine` subclass: the six states of the shared vocabulary and the table of
  every transition, (state, event, outcome) -> target, each row guarded by the shared outcome
  it takes (``cond=said(OutcomeKind.COMPLETED)``, or :func:`rows` for a whole event). This
  table is the whole flow; the diagrams in ``diagrams/`` are drawn from it.
* a :class:`Flow` subclass with one handler per event, found by its :func:`on` declaration
  (``@on(Machine.submit_response, outcomes=[...], calls="POST /...")``), which describes the
  IdP calls for the event and returns an :class:`Outcome`: what the IdP said (``kind``, an
  :class:`~mfa_fsm.core.outcomes.OutcomeKind`) and the snapshot fields it changes. A handler
  is an exchange (:mod:`mfa_fsm.core.exchange`): a generator that yields the requests it
  needs (``reply = yield from self.client.query(user_id)``) and returns the outcome; one
  that calls no IdP may simply return it.

``mfa-fsm verify`` (:func:`mfa_fsm.verify.verify_flow`) checks the two against each other
without an IdP: every outcome a handler declares has a row, every state is reachable, every
live state can be cancelled, can expire and has a way forward, ``Completed`` is entered only
on ``completed``.

``Flow.send(event, **data)`` then runs one step:

1. refuse an unknown event, or any event once the flow has ended (no IdP call);
2. if the state's deadline has passed, turn the event into ``expire`` (no IdP call, except a
   best-effort cancel where the provider has one);
3. refuse an event the current state does not take (no IdP call);
4. run the handler with a driver, which sends the requests it yields through the transport
   and hands it the replies, until it returns an ``Outcome`` (or ``None``: nothing to do yet,
   e.g. a poll before ``next_poll_at``);
5. ask the machine which target ``event`` with that outcome leads to: the first time for a
   given (state, event, outcome kind), send it to a machine restored at the current state and
   let its guards pick; later, the remembered answer (see "Asking the machine once"). An
   outcome the handler does not declare, or the table has no row for, raises
   :class:`UnmodelledOutcome`: a bug in the provider, not an IdP error;
6. commit ``evolve(snapshot, state=target, version=version + 1, **outcome.changes)`` and log
   one structlog event.

Steps 1-5 never touch the held snapshot, so any exception (network, IdP refusal, malformed
reply, a bug) leaves the flow exactly as it was before the event. The machine is strict
(``StateMachine`` semantics pinned below), and it is rebuilt around the snapshot's state on
every step it needs, so restoring a flow never runs an entry action.

``send`` drives step 4 with :func:`~mfa_fsm.core.exchange.drive` over a blocking
:class:`~mfa_fsm.core.http.Transport` (``requests``); ``await send_async`` drives the very
same generator with :func:`~mfa_fsm.core.exchange.drive_async` over an
:class:`~mfa_fsm.core.http.AsyncTransport` (``httpx``). Everything else (the checks of steps
1-3, the throttle, the step deadline, the target, the commit and the log line) is one code
path, shared: prepare (:meth:`Flow._prepare`), drive, commit (:meth:`Flow._commit`). So are
``start`` and ``start_async``: both drive the provider's :meth:`Flow.opening` exchange.

Asking the machine once
-----------------------
Building a python-statemachine machine and sending it an event costs far more than the rest
of a step. When every guard of the candidate transitions is marked pure (:func:`said` guards
are: their answer depends on the outcome's ``kind`` alone) and the machine declares no
action at all (no ``on``/``before``/``after``/validator callbacks, no enter/exit callbacks,
no ``prepare_event``), the machine's answer for (flow class, state, event, outcome kind) can
never change, so it is asked the first time and remembered per flow class. The machine stays
the single declaration of the flow and the source of every decision (diagrams are still drawn
from it); it is simply not rebuilt to repeat an answer it has already given. A transition
guarded by anything unmarked (a plain function, a guard named by a string) is asked every
time, and so is every transition of a machine that declares an action.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self, TypeVar

import attrs
from statemachine import State, StateMachine
from statemachine.callbacks import CallbackGroup, SpecReference
from statemachine.exceptions import TransitionNotAllowed

from mfa_fsm.core.calls import call_problem, checked
from mfa_fsm.core.deadline import DEFAULT_STEP_TIMEOUT, step_deadline, step_time_left
from mfa_fsm.core.errors import (
    EventNotAllowed,
    IdpError,
    InvalidInput,
    MfaError,
    ResendTooSoon,
    SnapshotError,
    UnmodelledOutcome,
    UsageError,
)
from mfa_fsm.core.exchange import CallRecord, Exchange, drive, drive_async, returned, traced_step
from mfa_fsm.core.fields import choice_kinds, neutral_fields, resolve_factor
from mfa_fsm.core.http import AsyncTransport, Transport
from mfa_fsm.core.identity import VerifiedUser, client_address
from mfa_fsm.core.logref import LazyLogger, flow_ref
from mfa_fsm.core.outcomes import OutcomeKind
from mfa_fsm.core.snapshot import FINAL_STATES, FlowView, Snapshot

if TYPE_CHECKING:
    from mfa_fsm.core.registry import Setting
    from mfa_fsm.core.snapshot import Choice
    from mfa_fsm.core.throttle import Throttle

Clock = Callable[[], float]

#: Challenge and choice kinds whose start makes the IdP reach the user's device (a push, an
#: SMS/e-mail/voice code, a phone call): counted as ``send`` by a throttle.
SEND_KINDS = frozenset({"otp", "push", "call"})

log = LazyLogger("mfa_fsm")


class FlowMachine(StateMachine):
    """Base of every provider's machine, with the engine's error semantics set explicitly."""

    # An event the current state does not take raises TransitionNotAllowed; never dropped.
    allow_event_without_transition = False
    # An exception in a callback propagates and the state is rolled back; never an event.
    catch_errors_as_events = False


def states() -> tuple[State, ...]:
    """The shared state vocabulary, fresh ``State`` objects for one machine class.

    Unpack them at class level, in this order::

        (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected,
         OobPending, Completed, Failed) = states()
    """
    return (
        State("Awaiting first factor", initial=True),
        State("Awaiting second factor"),
        State("Second factor selected"),
        State("OOB pending"),
        State("Completed", final=True),
        State("Failed", final=True),
    )


#: The attribute :func:`pure_guard` sets on a guard function.
_PURE_GUARD = "__mfa_fsm_pure_guard__"

Guard = TypeVar("Guard", bound=Callable[..., bool])


def pure_guard(guard: Guard) -> Guard:
    """Mark ``guard`` as a pure function of the outcome's ``kind`` and return it.

    A marked guard promises that it reads nothing but ``outcome.kind`` (no clock, no model,
    no other event data), so the engine may remember the machine's decision for (state,
    event, outcome kind) instead of asking again (see "Asking the machine once" above).
    Marking a guard that reads anything else would make the engine reuse a stale decision.
    """
    setattr(guard, _PURE_GUARD, True)
    return guard


#: The attribute :func:`said` sets on its guards: the outcomes the guard accepts.
_SAID = "__mfa_fsm_said__"


def said(*kinds: OutcomeKind) -> Callable[..., bool]:
    """A pure transition guard that holds when the step's outcome is one of ``kinds``.

    The guard is named after the kinds (``"a or b"``), so diagrams read
    ``submit_response [completed]``; :func:`said_kinds` reads them back.
    """
    accepted = frozenset(OutcomeKind(kind) for kind in kinds)

    def guard(outcome: Outcome) -> bool:
        return outcome.kind in accepted

    guard.__name__ = guard.__qualname__ = " or ".join(kinds)
    setattr(guard, _SAID, accepted)
    return pure_guard(guard)


def said_kinds(guard: object) -> frozenset[OutcomeKind] | None:
    """The outcomes a :func:`said` guard accepts, or ``None`` for any other guard."""
    kinds: frozenset[OutcomeKind] | None = getattr(guard, _SAID, None)
    return kinds


def rows(sources: State | Iterable[State], leads_to: Mapping[OutcomeKind, State]) -> Any:
    """The table rows of one event: from each of ``sources``, each outcome to its target.

    ``submit_response = rows(SecondFactorSelected, {COMPLETED: Completed, ...})`` declares
    one transition per (source, outcome), guarded by ``said(outcome)``. Rows of one event
    may be joined with ``|``. Returns python-statemachine's transition list.
    """
    froms = (sources,) if isinstance(sources, State) else tuple(sources)
    declared: Any = None
    for kind, target in leads_to.items():
        row = target.from_(*froms, cond=said(kind))
        declared = row if declared is None else declared | row
    if declared is None:
        raise TypeError("rows() needs at least one outcome")
    return declared


# Handler and _Prepared are NamedTuples, not attrs classes: they are built on every flow's
# import path, where attrs' generated methods cost about half a millisecond per class (issue 12).
class Handler(NamedTuple):
    """What an :func:`on` declaration says about one event's handler.

    ``outcomes`` are what the handler may return, by the state it runs in (``None``: every
    state that takes the event); ``calls`` the IdP requests it makes, for diagrams and
    readers (``"POST /Security/AdvanceAuthentication"``).
    """

    event: str
    outcomes: Mapping[str | None, frozenset[OutcomeKind]]
    calls: tuple[str, ...] = ()
    #: the method's name on the flow class (set when the class is defined)
    name: str = ""

    def outcomes_in(self, state: str) -> frozenset[OutcomeKind]:
        """The outcomes the handler may return when run in ``state``."""
        if state in self.outcomes:
            return self.outcomes[state]
        return self.outcomes.get(None, frozenset())


#: The attribute :func:`on` sets on a handler method.
_HANDLER = "__mfa_fsm_handler__"

Method = TypeVar("Method", bound=Callable[..., Any])


def on(
    event: str,
    *,
    outcomes: Iterable[OutcomeKind] | Mapping[str, Iterable[OutcomeKind]],
    calls: str | Iterable[str] = (),
) -> Callable[[Method], Method]:
    """Declare the decorated method as the flow's handler of ``event``.

    ``event`` is the machine's event (``EntrustMachine.submit_response``, so "go to
    definition" reaches the table) or its name. ``outcomes`` lists every
    :class:`~mfa_fsm.core.outcomes.OutcomeKind` the handler may return, or, for a handler
    whose outcomes depend on the state, a mapping of state id to outcomes. ``calls`` names
    the IdP requests it makes (``"POST /path"``), drawn on the diagrams. The engine refuses
    an outcome the declaration does not list (:class:`UnmodelledOutcome`), and ``mfa-fsm
    verify`` checks that each declared outcome has a row in every state taking the event.
    The handler is called as ``handler(snapshot, now, **data)``; its keyword parameters
    are the event's fields.
    """
    if isinstance(outcomes, Mapping):
        by_state: dict[str | None, frozenset[OutcomeKind]] = {
            str(state): frozenset(OutcomeKind(kind) for kind in kinds)
            for state, kinds in outcomes.items()
        }
    else:
        by_state = {None: frozenset(OutcomeKind(kind) for kind in outcomes)}
    declared = Handler(
        event=str(event),
        outcomes=by_state,
        calls=(calls,) if isinstance(calls, str) else tuple(calls),
    )

    def mark(method: Method) -> Method:
        setattr(method, _HANDLER, declared._replace(name=method.__name__))
        return method

    return mark


def _declares_no_action(machine: type[StateMachine]) -> bool:
    """Whether ``machine`` runs nothing but its guards when it takes a transition.

    Every callback python-statemachine would call besides the guards is either declared
    inline (``on=``, ``State(enter=)``, validators: a non-convention spec) or found by its
    naming convention (``on_enter_<state>``, ``before_<event>``, ``prepare_event``, ...) on the
    machine class; the model the engine binds has no attributes but its state. Listeners
    declared on the class (``listeners = [...]``) may hold any callback: they count as actions.
    """
    if getattr(machine, "_class_listeners", None):
        return False
    for specs in machine._all_specs():  # type: ignore[no-untyped-call]  # no stubs
        for spec in specs:
            if spec.group is CallbackGroup.COND:
                continue
            if not spec.is_convention or hasattr(machine, spec.attr_name):
                return False
    return True


def _pure_guards_only(transitions: Any) -> bool:
    """Whether every guard of ``transitions`` is a callable marked by :func:`pure_guard`."""
    for transition in transitions:
        for spec in transition._specs:
            if spec.group is not CallbackGroup.COND:
                continue
            if spec.reference is not SpecReference.CALLABLE or not getattr(
                spec.func, _PURE_GUARD, False
            ):
                return False
    return True


@attrs.frozen
class Outcome:
    """What one IdP exchange said, and the snapshot fields it changes.

    ``kind`` (an :class:`~mfa_fsm.core.outcomes.OutcomeKind`; its string value is accepted
    and converted, anything else raises ValueError) selects the transition (see
    :func:`said`); ``changes`` are keyword arguments for ``attrs.evolve`` of the snapshot
    (never ``state`` or ``version``: the engine sets those).
    """

    kind: OutcomeKind = attrs.field(converter=OutcomeKind)
    changes: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


class _Model:
    """The object python-statemachine reads and writes the current state on."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


class Flow:
    """One MFA flow of one provider, advanced one event at a time.

    Subclasses set ``provider``, ``machine``, ``context_type``, ``config_type`` and
    ``client_type``, declare one handler per event the caller may send with :func:`on` (an
    exchange, see the module docs), and an :meth:`opening` classmethod. Use
    ``Provider.start(...)`` (or ``await Provider.start_async(...)``) to begin a flow and
    :meth:`restore` to continue one; both take the provider's configuration as ``config=``.
    """

    provider: ClassVar[str]
    machine: ClassVar[type[FlowMachine]]
    context_type: ClassVar[type]
    #: the class of the configuration that ``start`` and ``restore`` take as ``config=``
    config_type: ClassVar[type]
    #: builds the provider's API client (request builders and reply parsers, no I/O) from
    #: the configuration
    client_type: ClassVar[type[Any]]
    #: the application's configuration for this provider (never stored in the snapshot)
    config: Any
    #: the provider's API client; every IdP exchange of a handler is built by it
    client: Any
    #: the provider's name for people (start pages, the CLI); defaults to ``provider`` titled
    label: ClassVar[str]
    #: how ``mfa-fsm login`` reads this provider's configuration from its command line and
    #: environment (each a :class:`~mfa_fsm.core.registry.Setting`, built into a configuration
    #: by :meth:`config_from_settings`); none: no real-tenant login
    settings: ClassVar[tuple[Setting, ...]] = ()
    #: ``"module:attribute"`` of the :class:`~mfa_fsm.testing.demo_idps.DemoIdp` class the demo
    #: and ``mfa-fsm login --emulator`` run for this provider (imported only then, so a
    #: production import never loads an emulator); ``None``: no emulator
    emulator: ClassVar[str | None] = None
    #: whether the flow can run a first factor the IdP does not check (Entrust EXTERNAL):
    #: such a flow starts only for a ``VerifiedUser``, and the web integration refuses to
    #: mount for it without the application's ``current_user``
    first_factor_outside: ClassVar[bool] = False
    #: whether the IdP itself can check a typed first factor (a user id and password): false
    #: for a flow whose first factor is only ever the application's (Duo's Auth API), which
    #: a typed ``user=`` never starts (the web start page lists it only under "Continue as")
    idp_checks_password: ClassVar[bool] = True
    #: events only the engine sends (never accepted from a caller)
    internal_events: ClassVar[frozenset[str]] = frozenset({"expire"})
    #: wall-clock seconds one ``send`` may spend on IdP calls, retries included, unless the
    #: caller opened a ``step_deadline`` already (the engines do, with their own setting)
    step_timeout: ClassVar[float] = DEFAULT_STEP_TIMEOUT

    _events_by_state: ClassVar[dict[str, frozenset[str]]]
    _public_events: ClassVar[frozenset[str]]
    _handler_params: ClassVar[dict[str, tuple[frozenset[str], frozenset[str]]]]
    #: event -> its handler's :func:`on` declaration (the method's name included)
    handlers: ClassVar[dict[str, Handler]]
    #: (state, event) pairs whose decision depends on the outcome's kind alone
    _rememberable: ClassVar[frozenset[tuple[str, str]]]
    #: (state, event, outcome kind) -> the target the machine chose (None: no transition)
    _decisions: ClassVar[dict[tuple[str, str, str], str | None]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Snapshot.contexts[cls.provider] = cls.context_type
        if "label" not in cls.__dict__ and not hasattr(cls, "label"):
            cls.label = cls.provider.replace("_", " ").replace("-", " ").title()
        cls._events_by_state = {
            state.id: frozenset(event.id for event in state.transitions.unique_events)
            for state in cls.machine.states
        }
        declared: list[Any] = cls.machine.events  # type: ignore[assignment]  # a list on the class
        cls._public_events = frozenset(e.id for e in declared) - cls.internal_events
        no_action = _declares_no_action(cls.machine)
        cls._rememberable = frozenset(
            (state.id, event.id)
            for state in cls.machine.states
            for event in state.transitions.unique_events
            if no_action and _pure_guards_only(t for t in state.transitions if t.match(event.id))
        )
        cls._decisions = {}
        cls._handler_params = {}
        cls.handlers = _declared_handlers(cls)
        for event in cls._public_events:
            if event not in cls.handlers:
                raise TypeError(
                    f"{cls.__name__} declares no handler for event {event!r}: decorate one "
                    f"method with @on({event!r}, outcomes=[...])"
                )
        for event, declaration in cls.handlers.items():
            if event not in cls._public_events:
                raise TypeError(
                    f"{cls.__name__}.{declaration.name} handles {event!r}, which is not an "
                    f"event the caller may send to {cls.machine.__name__}"
                )
            handler = getattr(cls, declaration.name)
            params = list(inspect.signature(handler).parameters.values())[3:]
            required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
            cls._handler_params[event] = (required, frozenset(p.name for p in params))

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        config: Any,
        transport: Transport | AsyncTransport | None = None,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
    ) -> None:
        if not callable(clock):
            raise UsageError("clock must be a callable returning epoch seconds, like time.time")
        if not isinstance(config, self.config_type):
            raise UsageError(
                f"{type(self).__name__} takes a {self.config_type.__name__} as config=, "
                f"not a {type(config).__name__}"
            )
        if snapshot.provider != self.provider:
            raise SnapshotError(
                f"snapshot belongs to provider {snapshot.provider!r}, not {self.provider!r}; "
                "restore it with that provider's flow class"
            )
        if not isinstance(snapshot.context, self.context_type):
            raise SnapshotError(f"snapshot context is not a {self.context_type.__name__}")
        self._snapshot = snapshot
        self._transport = transport
        #: the IdP calls of the step in progress (or the last one), for its log line
        self._calls: list[CallRecord] = []
        self.clock = clock
        self.config = config
        self.throttle = throttle
        #: the end user's address for the step being run (never stored nor logged)
        self.client_ip: str | None = None
        self.client = self.client_type(config)

    @classmethod
    def opening(cls, *args: Any, **options: Any) -> Exchange[Self] | Self:
        """The exchange that opens a flow: each provider defines it with its own keywords.

        Every provider's ``opening`` takes ``config=``, ``transport=``, ``clock=``,
        ``throttle=`` and ``client_ip=`` besides what it needs to know about the user (a
        ``user=`` typed by someone, or a ``verified_user=`` the application vouches for),
        describes the IdP calls that open the flow (an exchange; a provider that calls no IdP
        to open a flow may return the flow itself), and returns the flow in its first state
        (version 0). Run it with :meth:`start` or :meth:`start_async`.
        """
        raise NotImplementedError(f"{cls.__name__} does not define opening()")

    @classmethod
    def start(cls, *args: Any, **options: Any) -> Self:
        """Begin a new flow over a blocking transport; the keywords are the provider's
        :meth:`opening`'s (its docstring lists them and the errors raised).

        Without ``transport=`` the flow uses the one its configuration shares with every
        other flow (:func:`~mfa_fsm.core.transport.default_transport`). A call that does not
        match :meth:`opening` (an unknown keyword, a ``config=`` of another provider) raises
        :class:`UsageError`; an old option name (``user_id=``) is taken with a
        DeprecationWarning. No flow exists until this returns.
        """
        options = cls._opening_options(args, options)
        transport = cls._sync_transport_for(options.get("transport"), options["config"])
        opening = cls.opening(**{**options, "transport": transport})
        with traced_step(cls, "start") as traced:
            flow: Self = traced(drive(returned(opening), transport))
        return flow

    @classmethod
    async def start_async(cls, *args: Any, **options: Any) -> Self:
        """Begin a new flow over an :class:`~mfa_fsm.core.http.AsyncTransport` (such as
        :class:`~mfa_fsm.core.transport_async.HttpxTransport`, given as ``transport=``): the
        same keywords, checks, IdP calls and errors as :meth:`start`, awaited. Raises
        :class:`UsageError` without an asynchronous transport.
        """
        options = cls._opening_options(args, options)
        transport = cls._async_transport_for(options.get("transport"))
        with traced_step(cls, "start") as traced:
            flow: Self = traced(await drive_async(returned(cls.opening(**options)), transport))
        return flow

    @classmethod
    def _opening_options(cls, args: tuple[Any, ...], options: dict[str, Any]) -> dict[str, Any]:
        """``options`` for :meth:`opening` with old names renamed (a DeprecationWarning that
        points at the caller of ``start``), or UsageError for a call ``opening`` would refuse
        with TypeError, or a configuration of another provider."""
        options = neutral_fields("start", options, stacklevel=3)
        name = f"{cls.__name__}.start"
        problem = call_problem(inspect.signature(cls.opening), args, options)
        if problem is not None:
            raise UsageError(f"{name}() {problem}; see help({cls.__name__}.opening)")
        config = options.get("config")
        if not isinstance(config, cls.config_type):
            raise UsageError(
                f"{cls.__name__} takes a {cls.config_type.__name__} as config=, "
                f"not a {type(config).__name__}"
            )
        return options

    def _use_client_ip(self, client_ip: str | None) -> None:
        """Take the end user's address for the step about to run (validated; not kept)."""
        self.client_ip = client_address(client_ip)
        if hasattr(self.client, "client_ip"):
            # A provider client that sends the address declares the attribute.
            self.client.client_ip = self.client_ip

    @classmethod
    def config_from_settings(cls, values: Mapping[str, Any]) -> object:
        """This provider's configuration from its ``settings``' values (each setting's
        ``field`` -> the value ``mfa-fsm login`` read), for
        :func:`~mfa_fsm.core.registry.config_from_settings`.

        By default ``config_type(**values)``; a provider whose configuration is not flat
        (one holding a credentials object) overrides it. Raises what the configuration
        raises for a bad value (an :class:`MfaError`, or ``TypeError``/``ValueError``).
        """
        return cls.config_type(**values)

    @classmethod
    def throttle_user_key(cls, user_id: str) -> str:
        """The form of ``user_id`` a throttle counts this provider's user under: how the IdP
        matches user names (:func:`~mfa_fsm.core.throttle.user_key`: NFKC, casefold,
        strip). A provider that also ignores part of the name (CyberArk's
        ``@login_suffix``) overrides it; keys that collide only over-throttle."""
        from mfa_fsm.core.throttle import user_key  # noqa: PLC0415 (throttles are optional)

        return user_key(user_id)

    @classmethod
    def _check_start(cls, throttle: Throttle | None, user: str, client_ip: str | None) -> None:
        """Count a start for ``throttle`` (raises Throttled before any IdP call), blocking;
        an ``opening`` counts with ``yield from cls._count_start(...)``, which an async
        driver awaits (a throttle on an asyncio storage)."""
        if throttle is not None:
            throttle.check("start", user=cls.throttle_user_key(user), client_ip=client_ip)

    @classmethod
    def _count_start(
        cls, throttle: Throttle | None, user: str, client_ip: str | None
    ) -> Exchange[None]:
        """:meth:`_check_start` as part of an ``opening`` exchange."""
        if throttle is not None:
            user_key = cls.throttle_user_key(user)
            yield from throttle.counting("start", user=user_key, client_ip=client_ip)

    @classmethod
    @checked
    def restore(
        cls,
        snapshot: Snapshot | str | bytes,
        *,
        config: Any,
        transport: Transport | AsyncTransport | None = None,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
    ) -> Self:
        """Continue a flow from a snapshot (or its JSON) without re-running any action.

        ``config`` is the provider's configuration (an instance of ``config_type``); without
        ``transport`` the flow uses the one its configuration shares with every other flow
        (:func:`~mfa_fsm.core.transport.default_transport`), so the steps of a login reuse
        one connection; an :class:`~mfa_fsm.core.http.AsyncTransport` (such as
        :class:`~mfa_fsm.core.transport_async.HttpxTransport`) serves :meth:`send_async`.
        ``throttle`` counts the answers and sends of later steps. Raises
        :class:`SnapshotError` if the snapshot does not parse or belongs to another provider,
        :class:`UsageError` for a configuration of the wrong type.
        """
        if not isinstance(snapshot, Snapshot):
            snapshot = Snapshot.from_json(snapshot)
        return cls(snapshot, config=config, transport=transport, clock=clock, throttle=throttle)

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The flow's current immutable snapshot; persist it to continue later."""
        return self._snapshot

    def view(self) -> FlowView:
        """What to render for the current state (the snapshot without provider secrets)."""
        return FlowView.of(self._snapshot)

    @property
    def flow_id(self) -> str:
        """The flow's id, stable for its whole life."""
        return self._snapshot.flow_id

    @property
    def state(self) -> str:
        """The current state's name from the shared vocabulary."""
        return self._snapshot.state

    @property
    def version(self) -> int:
        """How many steps the flow has taken."""
        return self._snapshot.version

    @property
    def is_final(self) -> bool:
        """Whether the flow has ended (``Completed`` or ``Failed``)."""
        return self._snapshot.state in FINAL_STATES

    def allowed_events(self) -> tuple[str, ...]:
        """The events the current state takes, sorted (empty once the flow has ended)."""
        allowed = self._events_by_state[self._snapshot.state] - self.internal_events
        return tuple(sorted(allowed))

    # -- starting again -----------------------------------------------------------------

    @checked
    def again(
        self,
        *,
        verified_user: VerifiedUser | None = None,
        client_ip: str | None = None,
        flow_id: str | None = None,
    ) -> Self:
        """A fresh flow for this ended flow's user, straight to the factor picker: "send
        another push" after one expired, "try another way" after any other ending.

        This flow must be ``Failed`` (:func:`can_start_again`: for any reason but
        ``unavailable``, where a new flow would end the same way). The new flow is started
        with this flow's configuration, transport, clock and throttle (so it counts as a
        ``start``, and its push as a ``send``), exactly as :meth:`start` would:

        * with ``verified_user`` (a :class:`~mfa_fsm.core.identity.VerifiedUser` your
          application checked, for this flow's user), a first factor the IdP does not check
          (Entrust ``EXTERNAL``, Duo) is confirmed at once (``submit_first_factor``), so the
          returned flow shows the IdP's factors (``AwaitingSecondFactor``) with nothing the
          application vouched for asked again;
        * without it, the user is the typed ``user=`` of :meth:`start`: the IdP checks a first
          factor again (``AwaitingFirstFactor``), and a provider that needs a verified user
          (Duo, Entrust EXTERNAL only) raises :class:`VerifiedUserRequired` as ``start`` does.

        This flow is not changed. Raises :class:`EventNotAllowed` (event ``"again"``) for a
        flow that has not ended in ``Failed``, :class:`UsageError` for ``Failed(unavailable)``
        or a ``verified_user`` who is another user, and whatever :meth:`start` and
        :meth:`send` raise (``Throttled``, ``IdpError``, ``TransportError``), with no new flow.
        ``client_ip`` is the end user's address, as for :meth:`send`.
        """
        options = self._again_options(verified_user, client_ip, flow_id)
        flow = type(self).start(**options)
        if verified_user is not None and vouched_first_factor_due(flow.view()):
            flow.send("submit_first_factor", client_ip=client_ip)
        return flow

    @checked
    async def again_async(
        self,
        *,
        verified_user: VerifiedUser | None = None,
        client_ip: str | None = None,
        flow_id: str | None = None,
    ) -> Self:
        """:meth:`again`, awaited, over the flow's
        :class:`~mfa_fsm.core.http.AsyncTransport`: the same checks, IdP calls and errors."""
        options = self._again_options(verified_user, client_ip, flow_id)
        flow = await type(self).start_async(**options)
        if verified_user is not None and vouched_first_factor_due(flow.view()):
            await flow.send_async("submit_first_factor", client_ip=client_ip)
        return flow

    def _again_options(
        self, verified_user: VerifiedUser | None, client_ip: str | None, flow_id: str | None
    ) -> dict[str, Any]:
        """:meth:`start`'s options for :meth:`again`, after its checks (no IdP call)."""
        view = self.view()
        if view.state != "Failed":
            raise EventNotAllowed("again", view.state, self.allowed_events())
        if not can_start_again(view):
            raise UsageError(
                "this flow ended because the IdP offers the user no factor that can be used "
                "here; a new flow would end the same way: the user must set up another "
                "method with an administrator"
            )
        user_id = self._snapshot.user_id
        options: dict[str, Any] = {
            "config": self.config,
            "transport": self._transport,
            "clock": self.clock,
            "throttle": self.throttle,
            "client_ip": client_ip,
        }
        if flow_id is not None:
            options["flow_id"] = flow_id
        if verified_user is None:
            options["user"] = user_id
            return options
        if not isinstance(verified_user, VerifiedUser):
            raise UsageError(
                "verified_user must be a VerifiedUser(user_id, checked_by=...) from your own "
                f"verified session, not a {type(verified_user).__name__}"
            )
        same = type(self).throttle_user_key
        if same(verified_user.user_id) != same(user_id):
            raise UsageError(
                "verified_user is another user than this flow's: start a new flow for them "
                "with start() instead of again()"
            )
        options["verified_user"] = verified_user
        return options

    # -- stepping -----------------------------------------------------------------------

    @checked
    def send(self, event: str, /, *, client_ip: str | None = None, **data: Any) -> FlowView:
        """Advance the flow by one event and return the view of the new state.

        ``client_ip`` is the end user's IP address for this step: the IdP's risk rules get
        it on every call of the step (Entrust ``clientIp``); ``None`` falls back to the
        provider configuration's fixed address, if any. It is neither stored nor logged.

        Raises :class:`EventNotAllowed` for an event the state does not take,
        :class:`InvalidInput` for malformed data (or ``client_ip``) and :class:`Throttled`
        when the flow's throttle refuses the step, all before any IdP call; raises
        :class:`IdpError` or :class:`TransportError` when the IdP call fails, and
        TransportError when the step's IdP calls outlast ``step_timeout`` seconds (or the
        caller's ``step_deadline``). In every error case the flow and its snapshot are
        unchanged, so the same event can be retried. :class:`UnmodelledOutcome` (a
        provider's handler returned an outcome its table or declaration lacks) is a bug in
        the provider, raised after its IdP calls, with the flow unchanged too. The one IdP
        refusal that is not raised is one that says the login is gone (``IdpError.gone``:
        token, session or transaction expired or unknown): no retry could succeed, so the
        flow ends ``Failed(expired)`` and the view says to start again.
        """
        data = neutral_fields(event, data, stacklevel=3)
        prepared = self._prepare(event, client_ip)
        transport = self._sync_transport_for(self._transport, self.config)
        self._transport = transport  # the shared default, once looked up
        with self._bounded(), traced_step(self, event, prepared.before) as traced:
            taken, outcome = traced(drive(self._step(prepared, data), transport, calls=self._calls))
            return self._commit(prepared, taken, outcome)

    @checked
    async def send_async(
        self, event: str, /, *, client_ip: str | None = None, **data: Any
    ) -> FlowView:
        """:meth:`send`, awaited: the same checks, IdP calls, errors, log lines and result,
        with the requests sent through the flow's
        :class:`~mfa_fsm.core.http.AsyncTransport` (``transport=`` of :meth:`restore`).
        Raises :class:`UsageError` when the flow has no asynchronous transport.
        """
        data = neutral_fields(event, data, stacklevel=3)  # past checked's async wrapper
        prepared = self._prepare(event, client_ip)
        transport = self._async_transport_for(self._transport)
        with self._bounded(), traced_step(self, event, prepared.before) as traced:
            taken, outcome = traced(
                await drive_async(self._step(prepared, data), transport, calls=self._calls)
            )
            return self._commit(prepared, taken, outcome)

    def _prepare(self, event: str, client_ip: str | None) -> _Prepared:
        """The checks made before the step's deadline opens: the address, a known event, a
        live flow; and the step's start (clock and perf counter)."""
        started = time.perf_counter()
        before = self._snapshot
        self._use_client_ip(client_ip)
        if not (isinstance(event, str) and event in self._public_events):
            # The name came from a request: never repeat it, nor hash what is not a string.
            raise EventNotAllowed("<unknown event>", before.state, self.allowed_events())
        if before.state in FINAL_STATES:
            raise EventNotAllowed(event, before.state, self.allowed_events())
        return _Prepared(event, before, self.clock(), started)

    def _bounded(self) -> contextlib.AbstractContextManager[object]:
        """The step's deadline: ``step_timeout`` unless the caller opened one already."""
        if step_time_left() is None:
            return step_deadline(self.step_timeout)
        return contextlib.nullcontext()

    def _step(
        self, prepared: _Prepared, data: Mapping[str, Any]
    ) -> Exchange[tuple[str, Outcome | None]]:
        """The step as an exchange: the event actually taken (``expire`` past the deadline,
        or when the IdP says the login is gone) and its outcome. Touches no snapshot."""
        event, before, now = prepared.event, prepared.before, prepared.now
        self._calls.clear()
        if now >= before.deadline:
            return "expire", (yield from returned(self._expire(before, now)))
        if event not in self._events_by_state[before.state]:
            raise EventNotAllowed(event, before.state, self.allowed_events())
        if event == "select_second_factor":
            data = resolve_factor(before, data, functools.partial(self.factor_kinds, before))
        self._check_data(event, data)
        if event == "resend":
            _check_resend(before, now)
        elif event == "select_second_factor" and _same_factor_again(before, data):
            # Picking the running factor again sends again: the resend cooldown holds.
            _check_resend(before, now)
        action = self.throttle_action(before, event, data)
        if self.throttle is not None and action is not None:
            # Counted atomically before the IdP call, so parallel requests cannot all pass;
            # a step the IdP then refuses still counts (safe side).
            yield from self.throttle.counting(
                action,
                user=self.throttle_user_key(before.user_id),
                client_ip=self.client_ip,
            )
        try:
            outcome = yield from self._run_handler(prepared, data)
        except IdpError as exc:
            if not exc.gone:
                raise
            # The IdP no longer holds this login (token, session or transaction expired or
            # unknown): no retry can succeed, so the flow ends here.
            return "expire", self._gone(before, now, exc)
        return event, outcome

    def _commit(self, prepared: _Prepared, event: str, outcome: Outcome | None) -> FlowView:
        """Take the machine's target for ``outcome``, hold the new snapshot, log the step."""
        if outcome is None:
            return self.view()
        before = prepared.before
        target = self._select_target(before, event, outcome)
        after = attrs.evolve(before, **outcome.changes, state=target, version=before.version + 1)
        self._snapshot = after
        self._log_step("mfa_fsm.transition", before, event, prepared.started, target=target)
        return self.view()

    def factor_kinds(self, snapshot: Snapshot, choice: Choice) -> frozenset[str]:
        """The stable kinds ``select_second_factor(factor=...)`` may name ``choice`` by
        instead of its id: its ``kind`` and delivery channels
        (:func:`~mfa_fsm.core.fields.choice_kinds`). A provider whose choices say less than
        its IdP knows (its SMS and e-mail mechanisms share the kind ``otp``) adds to them."""
        return choice_kinds(choice)

    def throttle_action(
        self, snapshot: Snapshot, event: str, data: Mapping[str, Any]
    ) -> str | None:
        """What a throttle counts this step as: ``"send"`` (the IdP will reach the user's
        device), ``"answer"`` (a typed secret is checked) or ``None`` (not counted).

        Read from the shared vocabulary (``SEND_KINDS``); a provider whose events mean
        something else overrides it.
        """
        if event == "submit_response":
            return "answer"
        if event == "resend":
            return "send"  # a new code or push reaches the user's device, as the first did
        if event == "submit_first_factor":
            if data:
                return "answer"
            challenge = snapshot.challenge
            return "send" if challenge is not None and challenge.kind in SEND_KINDS else None
        if event == "select_second_factor":
            factor = data.get("factor")
            for choice in snapshot.choices:
                if choice.id == factor:
                    return "send" if choice.kind in SEND_KINDS else None
        return None

    def _check_data(self, event: str, data: Mapping[str, Any]) -> None:
        required, accepted = self._handler_params[event]
        for name in data.keys() - accepted:
            # The name came from a request: repeat it only when it looks like a field name.
            shown = name if name.isidentifier() and len(name) <= 40 else "<unknown field>"
            raise InvalidInput(shown, f"is not a field of {event!r}; it takes {sorted(accepted)}")
        for name in required - data.keys():
            raise InvalidInput(name, f"is required for {event!r}")

    def _run_handler(
        self, prepared: _Prepared, data: Mapping[str, Any]
    ) -> Exchange[Outcome | None]:
        handler = getattr(self, self.handlers[prepared.event].name)
        try:
            outcome: Outcome | None = handler(prepared.before, prepared.now, **data)
            if isinstance(outcome, Generator):  # an exchange (inlined returned(): hot path)
                outcome = yield from outcome
        except MfaError as exc:
            self._log_step(
                "mfa_fsm.step_failed", prepared.before, prepared.event, prepared.started, error=exc
            )
            raise
        return outcome

    def _select_target(self, before: Snapshot, event: str, outcome: Outcome) -> str:
        declared = self.handlers.get(event)
        if declared is not None and outcome.kind not in declared.outcomes_in(before.state):
            raise UnmodelledOutcome(
                type(self).__name__,
                before.state,
                event,
                outcome.kind,
                f"@on({event!r}) does not declare it for that state",
            )
        key = (before.state, event, outcome.kind)
        if key in self._decisions:
            target = self._decisions[key]
        else:
            target = self._ask_machine(before.state, event, outcome)
            if (before.state, event) in self._rememberable:
                # Races only write the same answer twice; a dict item set is atomic.
                self._decisions[key] = target
        if target is None:
            # The table has no row for what the handler returned: a gap in the provider
            # (mfa-fsm verify finds it), never the IdP's fault. Refuse rather than guess.
            raise UnmodelledOutcome(
                type(self).__name__,
                before.state,
                event,
                outcome.kind,
                f"{self.machine.__name__} has no row for it",
            )
        return target

    def _ask_machine(self, state: str, event: str, outcome: Outcome) -> str | None:
        """The target python-statemachine picks for ``event`` with ``outcome`` in ``state``."""
        model = _Model(state)
        try:
            self.machine(model=model).send(event, outcome=outcome)
        except TransitionNotAllowed:
            return None
        return model.state

    def _expire(self, snapshot: Snapshot, now: float) -> Exchange[Outcome] | Outcome:
        """The outcome of a passed deadline; providers may add a best-effort IdP cancel (then
        an exchange, as a handler)."""
        return Outcome(OutcomeKind.EXPIRED, {"failure": "expired", "next_poll_at": None})

    def _gone(self, snapshot: Snapshot, now: float, error: IdpError) -> Outcome:
        """The outcome when the IdP says the login it held is gone (``IdpError.gone``).

        ``Failed(expired)`` with a detail that tells the user to start again; providers
        extend it to drop their working secrets. No IdP call: there is nothing left to cancel.
        """
        detail = (
            "the identity provider no longer holds this login (it expired or was ended); "
            "start again"
        )
        return Outcome(
            OutcomeKind.EXPIRED,
            {"failure": "expired", "failure_detail": detail, "next_poll_at": None},
        )

    def _log_step(
        self,
        name: str,
        before: Snapshot,
        event: str,
        started: float,
        *,
        target: str | None = None,
        error: MfaError | None = None,
    ) -> None:
        calls = self._calls
        last = calls[-1] if calls else None
        fields: dict[str, Any] = {
            "flow_ref": flow_ref(before.flow_id),
            "provider": self.provider,
            "flow_event": event,
            "source": before.state,
            "idp_path": last.path if last else None,
            "idp_status": last.status if last else None,
            "idp_calls": len(calls),
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if error is None:
            log.info(name, **fields, target=target, version=before.version + 1)
        else:
            log.warning(name, **fields, error=type(error).__name__)

    @property
    def transport(self) -> Transport | AsyncTransport:
        """The transport every IdP call of this flow goes through."""
        if self._transport is None:
            self._transport = self._sync_transport_for(None, self.config)
        return self._transport

    @property
    def calls(self) -> tuple[CallRecord, ...]:
        """The IdP calls of the last step (path, HTTP status, milliseconds), in order."""
        return tuple(self._calls)

    @staticmethod
    def _sync_transport_for(given: object, config: Any) -> Transport:
        if given is None:
            # Share the configuration's (one connection per login). Imported here: only a
            # flow without a transport of its own needs requests.
            from mfa_fsm.core.transport import default_transport  # noqa: PLC0415

            return default_transport(config)
        if not callable(getattr(given, "send", None)):
            raise UsageError(
                f"a {type(given).__name__} has no send(request): Flow.send and start need a "
                "blocking Transport (such as RequestsTransport); use send_async and "
                "start_async with an AsyncTransport"
            )
        transport: Transport = given  # type: ignore[assignment]  # checked just above
        return transport

    @staticmethod
    def _async_transport_for(given: object) -> AsyncTransport:
        if not callable(getattr(given, "send_async", None)):
            raise UsageError(
                "send_async and start_async need an asynchronous transport: pass "
                "transport=HttpxTransport() (mfa_fsm.core.transport_async, the 'async' extra) "
                "to start_async or restore"
            )
        transport: AsyncTransport = given  # type: ignore[assignment]  # checked just above
        return transport


def can_start_again(view: FlowView) -> bool:
    """Whether :meth:`Flow.again` (and the engines' ``again``) may start a fresh flow after
    ``view``: the flow ended ``Failed`` for any reason but ``unavailable`` (the IdP offers
    the user no factor usable here, so a new flow would end the same way). A page shows its
    "Try again" / "Send another push" only then."""
    return view.state == "Failed" and view.failure != "unavailable"


def vouched_first_factor_due(view: FlowView) -> bool:
    """Whether ``view`` waits for the application's word on a first factor the IdP does not
    check (``challenge.kind == "external"``: Entrust EXTERNAL, Duo). For a flow started for
    a :class:`~mfa_fsm.core.identity.VerifiedUser`, the application's own check *is* that
    word, so ``submit_first_factor`` (no data) is sent at once and the user lands on the
    factor picker: :meth:`Flow.again` does so, and so should any caller that begins a flow
    for a vouched user (the web integration's ``begin()``)."""
    challenge = view.challenge
    return (
        view.state == "AwaitingFirstFactor"
        and challenge is not None
        and challenge.kind == "external"
    )


def resend_time(now: float, cooldown: float) -> int:
    """``Challenge.resend_at`` for a send at ``now``: ``cooldown`` seconds on, rounded up to
    a whole epoch second (a page shows it to the second, and the snapshot stays short)."""
    return math.ceil(now + cooldown)


def _check_resend(snapshot: Snapshot, now: float) -> None:
    """Refuse a ``resend`` the challenge does not offer, or one inside its cooldown: before
    the throttle counts it and before any IdP call."""
    challenge = snapshot.challenge
    if challenge is None or challenge.resend_at is None:
        raise UsageError(
            "this challenge sent nothing that can be sent again (a typed password, an "
            "authenticator app or a QR code); answer it, or pick another factor"
        )
    if now < challenge.resend_at:
        raise ResendTooSoon(challenge.resend_at - now)


def _same_factor_again(snapshot: Snapshot, data: Mapping[str, Any]) -> bool:
    """Whether ``select_second_factor`` names the factor whose challenge is running and has
    sent something (``resend_at`` set), over the same channel: a re-send by another name.

    Another factor, or the same factor over another ``delivery`` (the code by e-mail after
    SMS), is a different request and is not held back by the resend cooldown (the
    throttle's per-user ``send`` rates still count it). A pick without ``delivery`` is the
    same request as the running one when the factor matches (safe side)."""
    challenge = snapshot.challenge
    if challenge is None or challenge.resend_at is None or data.get("factor") != challenge.factor:
        return False
    delivery = data.get("delivery")
    if not isinstance(delivery, str) or not delivery or challenge.delivery is None:
        return True
    return delivery.upper() == challenge.delivery.upper()


class _Prepared(NamedTuple):
    """A step that passed the first checks: its event, the snapshot before it, the flow's
    clock at its start (epoch seconds) and its ``perf_counter`` start (for ``duration_ms``)."""

    event: str
    before: Snapshot
    now: float
    started: float


def _declared_handlers(flow: type[Flow]) -> dict[str, Handler]:
    """Every :func:`on` declaration of ``flow`` and its bases, by event; a subclass's
    declaration of an event replaces its base's. Two in one class for one event raise."""
    found: dict[str, Handler] = {}
    for klass in reversed(flow.__mro__):
        mine: dict[str, Handler] = {}
        for name, value in vars(klass).items():
            declared = getattr(value, _HANDLER, None)
            if not isinstance(declared, Handler):
                continue
            if declared.event in mine:
                raise TypeError(
                    f"{klass.__name__} declares two handlers for {declared.event!r}: "
                    f"{mine[declared.event].name} and {name}"
                )
            mine[declared.event] = declared._replace(name=name)
        found.update(mine)
    return found
