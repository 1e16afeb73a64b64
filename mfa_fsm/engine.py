"""The facade a stateless web handler calls once per request: load, step, save, render.

::

    engine = Engine(RedisStore(redis.Redis()), [EntrustConfig(...)], throttle=Throttle())
    # or, in an asyncio application: AsyncEngine(AsyncRedisStore(redis.asyncio.Redis()), ...)
    # and ``await`` each call below
    user = VerifiedUser(session["user"], checked_by="example.com password")  # your own check
    view = engine.start("entrust", verified_user=user, client_ip=request.remote_addr)
    view = engine.send(view.flow_id, "submit_first_factor", client_ip=request.remote_addr)
    view = engine.send(flow_id, "submit_response", answer=code, client_ip=...)
    view = engine.hand_off(flow_id)   # Completed: the result, once; the store erases the token

Theory of operation
-------------------
``Engine.send(flow_id, event, **data)`` is one request:

1. load the flow's snapshot from the store (FlowNotFound: unknown or expired; no IdP call);
2. restore it with its provider's flow class and configuration, and send it the event;
3. the first time the step is about to call the IdP, claim the flow at the loaded version for
   ``claim_ttl`` seconds: a request that lost the race gets FlowBusy (another request holds
   the claim) or FlowConflict (the flow has already moved on) *instead of* making that call;
4. if the step advanced the flow, save it with compare-and-set on the loaded version, which
   also ends the claim; if anything raised, release the claim and re-raise, with the stored
   flow exactly as it was;
5. return the view of the new state.

A step whose IdP call succeeded is not given up on the store's first failure: the IdP has
acted on it (a code accepted, a token rotated), so the flow as stored can no longer go on.
While the store is unavailable (``StoreUnavailable``) the engine retries the save for up to
``save_retry`` seconds (:data:`DEFAULT_SAVE_RETRY`), with capped exponential back-off, still
holding the claim, so no other request reaches the IdP meanwhile; it never retries past the
claim's own end (``claim_ttl`` after it was taken). A retry that finds the store already at
the new version checks that it holds exactly this step's snapshot (the first save went
through but its answer was lost) and counts it as saved. When the window runs out the step
raises :class:`~mfa_fsm.core.errors.StepNotSaved`, a ``StoreUnavailable``: the stored flow
is as it was before the step and the claim is released (or ends at ``claim_ttl``, if the
store is still down), which is safely recoverable but not a resumable login (the IdP has
moved on, so the same event may then end the flow ``Failed(expired)``; see that class).
``start`` retries its ``create`` the same way. Steps that made no IdP call are not retried:
nothing was spent, the caller can simply send the event again.

A step that calls no IdP (a poll before ``next_poll_at``, an event the state does not take,
malformed input) claims nothing, and a step that leaves the version as it was saves nothing:
neither writes to the store.

The claim keeps a losing request away from the IdP; compare-and-set keeps the store right even
when a claim expired under a step slower than ``claim_ttl``: then both requests reached the
IdP, the first to save wins, the other gets FlowConflict and a ``mfa_fsm.step_lost`` warning
is logged. So set ``claim_ttl`` above the longest step (see :data:`DEFAULT_CLAIM_TTL`).

:class:`SealedEngine` runs the same steps on sealed client-side state: the snapshot travels in
a token, and the claim is taken on the :class:`~mfa_fsm.stores.sealed.SealedState`'s replay
ledger. Without a ledger there is nothing on the server to claim, so two requests carrying the
same token both reach the IdP (see ``mfa_fsm.stores.sealed``).

Blocking and async
------------------
:class:`AsyncEngine` and :class:`AsyncSealedEngine` are the same engines for asyncio
applications: ``await engine.send(...)`` over an async store (``mfa_fsm.stores.aio``) and an
:class:`~mfa_fsm.core.http.AsyncTransport`. Every call above is written once, as a plan
(:mod:`mfa_fsm.core.plans`): a generator that yields each piece of I/O (a store or ledger
call, the flow's ``start``/``send``, a wait between save attempts) and is sent its result or
thrown its exception. The blocking engines perform that I/O (``plans.run``: ``flow.send``,
``time.sleep``), the async ones await it (``plans.run_async``: ``flow.send_async``,
``asyncio.sleep``); nothing else differs, so the claims, compare-and-set, save retries,
errors and log lines are the same by construction. A task cancelled mid-step (its client
went away) has the CancelledError thrown into the plan like any error: the claim is released,
the stored flow is unchanged, and the cancellation goes on.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

import attrs

from mfa_fsm.core.calls import checked, is_seconds
from mfa_fsm.core.errors import (
    FlowConflict,
    StepNotSaved,
    StoreError,
    StoreUnavailable,
    UsageError,
)
from mfa_fsm.core.fields import neutral_fields
from mfa_fsm.core.flow import Clock, Flow
from mfa_fsm.core.http import AsyncTransport
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.logref import LazyLogger, flow_ref
from mfa_fsm.core.plans import Call, Plan, Sleep, call, run, run_async
from mfa_fsm.core.registry import flow_for_config
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.core.snapshot import FlowView, Snapshot, handed_off
from mfa_fsm.core.transport import (
    DEFAULT_STEP_TIMEOUT,
    HttpRequest,
    HttpResponse,
    RequestsTransport,
    Transport,
    step_deadline,
)
from mfa_fsm.stores.base import FlowStore, check_flow_id

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle
    from mfa_fsm.stores.aio import AsyncFlowStore
    from mfa_fsm.stores.sealed import SealedState

#: Seconds a step may hold its flow's claim: above the step's own wall-clock bound
#: (``step_timeout``, default 30 s: every IdP call, retry and wait of the step, whatever the
#: IdP's pace; see ``mfa_fsm.core.transport``), so a step ends before its claim does. A
#: request that dies holding the claim keeps its flow busy this long.
DEFAULT_CLAIM_TTL = 60.0

#: Seconds a step whose IdP call succeeded keeps retrying its save while the store is
#: unavailable, holding its claim: long enough for a Redis or PostgreSQL restart or a
#: fail-over (a few seconds), short enough that the step (``step_timeout``, 30 s) plus this
#: stays below ``DEFAULT_CLAIM_TTL`` and below common proxy read timeouts (60 s).
DEFAULT_SAVE_RETRY = 10.0

#: The waits between save attempts: capped exponential back-off with full jitter (AWS
#: Architecture Blog, "Exponential Backoff And Jitter"), 0.1 s doubling up to 1 s, so that a
#: store back after a restart is found within about a second. Only ``delay`` is used; the
#: window is ``save_retry``.
_SAVE_BACKOFF = RetryPolicy(first_delay=0.1, max_delay=1.0)

log = LazyLogger("mfa_fsm")

Saved = TypeVar("Saved")
T = TypeVar("T")


# Every call is written once, as a plan (mfa_fsm.core.plans): a generator that yields the
# I/O it needs, which Engine and SealedEngine run with plans.run (blocking) and AsyncEngine
# and AsyncSealedEngine with plans.run_async (awaited). The claims, compare-and-set, save
# retries, errors and log lines are the plan's, so the two kinds of engine cannot drift apart.


@attrs.frozen
class _Start:
    """A flow's ``start`` (blocking) or ``start_async`` (awaited)."""

    flow_class: type[Flow]
    options: Mapping[str, Any]

    def blocking(self) -> Flow:
        return self.flow_class.start(**self.options)

    async def awaited(self) -> Flow:
        return await self.flow_class.start_async(**self.options)


@attrs.frozen
class _Send:
    """A flow's ``send`` (blocking) or ``send_async`` (awaited) of one event."""

    flow: Flow
    event: str
    client_ip: str | None
    data: Mapping[str, Any]

    def blocking(self) -> FlowView:
        return self.flow.send(self.event, client_ip=self.client_ip, **self.data)

    async def awaited(self) -> FlowView:
        return await self.flow.send_async(self.event, client_ip=self.client_ip, **self.data)


@attrs.frozen
class _Again:
    """An ended flow's ``again`` (blocking) or ``again_async`` (awaited): a fresh flow."""

    flow: Flow
    options: Mapping[str, Any]

    def blocking(self) -> Flow:
        return self.flow.again(**self.options)

    async def awaited(self) -> Flow:
        return await self.flow.again_async(**self.options)


class _Claims(Protocol):
    """Where a step claims its flow: a FlowStore, or the replay ledger of sealed state (for
    the async engines, their async counterparts: the same methods, awaited)."""

    def claim(self, flow_id: str, version: int, *, ttl: float) -> Any: ...

    def release(self, flow_id: str, claim: str) -> Any: ...


class _ClaimFirst:
    """The transport one step runs with: it claims the flow just before the first IdP call.

    ``inner`` is the engine's transport (a Transport for ``send``, an AsyncTransport for
    ``send_async``); ``take`` claims the flow (returning the claim id, or for the async
    engines an awaitable of it)."""

    def __init__(self, inner: Any, take: Callable[[], Any] | None) -> None:
        self._inner = inner
        self._take = take
        self.claim: str | None = None
        #: ``time.monotonic()`` just before the claim was asked for: it ends ``claim_ttl``
        #: after that at the latest.
        self.claimed_at: float | None = None
        self.refused: StoreError | None = None

    def _claiming(self) -> bool:
        return self.claim is None and self._take is not None

    @contextlib.contextmanager
    def _taking(self) -> Iterator[None]:
        self.claimed_at = time.monotonic()
        try:
            yield
        except StoreError as exc:
            # Kept as well as raised: a handler may swallow the errors of a best-effort
            # call (an IdP cancel), and the engine must not save that step's outcome.
            self.refused = exc
            raise

    def send(self, request: HttpRequest) -> HttpResponse:
        if self._claiming():
            with self._taking():
                self.claim = Call(self._take).blocking()  # type: ignore[arg-type]  # not None
        response: HttpResponse = self._inner.send(request)
        return response

    async def send_async(self, request: HttpRequest) -> HttpResponse:
        if self._claiming():
            with self._taking():
                self.claim = await Call(self._take).awaited()  # type: ignore[arg-type]
        response: HttpResponse = await self._inner.send_async(request)
        return response


class _Facade:
    """What every engine shares: the provider table, and one step from loaded to saved,
    written as plans (see above)."""

    #: The method the engine's transport must have: ``send`` or ``send_async``.
    _transport_method: ClassVar[str] = "send"

    def __init__(
        self,
        configs: Iterable[object],
        *,
        transport: Transport | AsyncTransport | None,
        clock: Clock,
        claim_ttl: float,
        throttle: Throttle | None,
        step_timeout: float,
        save_retry: float,
    ) -> None:
        if not is_seconds(claim_ttl):
            raise UsageError("claim_ttl must be positive: it is how long a step holds its flow")
        if not is_seconds(step_timeout):
            raise UsageError("step_timeout must be positive: it is how long a step may take")
        if not is_seconds(save_retry, zero=True):
            raise UsageError(
                "save_retry must be zero or more: it is how many seconds an accepted step "
                "retries its save while the store is unavailable (0: no retry)"
            )
        self.save_retry = save_retry
        if not callable(clock):
            raise UsageError("clock must be a callable returning epoch seconds, like time.time")
        method = self._transport_method
        if transport is not None and not callable(getattr(transport, method, None)):
            kind = "Transport" if method == "send" else "AsyncTransport (HttpxTransport)"
            raise UsageError(f"transport must have a {method}(HttpRequest) method, like {kind}")
        if isinstance(configs, str | bytes) or not isinstance(configs, Iterable):
            raise UsageError("configs must be a list of provider configurations")
        self._flows = _flows_for(configs)
        self.transport: Any = transport or self._default_transport()
        self.clock = clock
        self.claim_ttl = claim_ttl
        self.throttle = throttle
        self.step_timeout = step_timeout

    def _default_transport(self) -> Transport | AsyncTransport:
        return RequestsTransport()

    def throttled(self, throttle: Throttle | None) -> Self:
        """This engine (same store, transport and providers) counting steps with ``throttle``."""
        other = copy.copy(self)
        other.throttle = throttle
        return other

    def first_factor_outside(self, provider: str) -> bool:
        """Whether ``provider`` can run a first factor it does not check itself (Entrust
        ``EXTERNAL``): such flows start only for a ``VerifiedUser``."""
        flow_class, _ = self._flow_class(provider)
        return flow_class.first_factor_outside

    def idp_checks_password(self, provider: str) -> bool:
        """Whether ``provider``'s IdP can check a typed user id and password itself (false
        for Duo: its flows start only for a ``VerifiedUser``). Raises :class:`UsageError`
        for a provider this engine does not run."""
        flow_class, _ = self._flow_class(provider)
        return flow_class.idp_checks_password

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers this engine runs flows of, sorted."""
        return tuple(sorted(self._flows))

    def _flow_class(self, provider: str) -> tuple[type[Flow], object]:
        found = self._flows.get(provider) if isinstance(provider, str) else None
        if found is None:
            shown = repr(provider) if isinstance(provider, str) and len(provider) < 40 else "?"
            raise UsageError(
                f"this engine has no configuration for provider {shown}; it runs "
                f"{list(self.providers)}: pass that provider's config to the engine"
            )
        return found

    def _begin(self, provider: str, options: Mapping[str, Any]) -> Plan[Flow]:
        flow_class, config = self._flow_class(provider)
        own = sorted(options.keys() & _ENGINE_SETS)
        if own:
            raise UsageError(
                f"start() got {own}, which the engine passes itself: give them to the "
                "engine's constructor instead"
            )
        settings = {
            "config": config,
            "transport": self.transport,
            "clock": self.clock,
            "throttle": self.throttle,
        }
        with step_deadline(self.step_timeout):
            flow: Flow = yield _Start(flow_class, {**settings, **options})
        return flow

    def _again_flow(self, snapshot: Snapshot, options: Mapping[str, Any]) -> Plan[Flow]:
        """The fresh flow :meth:`Flow.again` starts after the ended flow in ``snapshot``
        (with the engine's configuration, transport, clock and throttle), not yet saved."""
        flow_class, config = self._flow_class(snapshot.provider)
        ended = flow_class.restore(
            snapshot,
            config=config,
            transport=self.transport,
            clock=self.clock,
            throttle=self.throttle,
        )
        with step_deadline(self.step_timeout):
            flow: Flow = yield _Again(ended, options)
        return flow

    def _save_held(
        self,
        save: Callable[[Snapshot], Plan[Saved]],
        recorded: Callable[[Snapshot], Plan[Saved]],
        new: Snapshot,
        *,
        claimed_at: float | None,
        operation: str,
    ) -> Plan[Saved]:
        """``save(new)`` for a step whose IdP call succeeded, retried while the store is
        unavailable, for ``save_retry`` seconds and never past the claim's end (see the module
        docs). ``recorded(new)`` is run when a retry finds the store already at
        ``new.version``: it returns what ``save`` would have if the store holds exactly
        ``new`` (an earlier attempt's write went through), else raises FlowConflict.

        Raises StepNotSaved when the window runs out, and whatever ``save`` raises otherwise.
        """
        began = time.monotonic()
        until = began + self.save_retry
        if claimed_at is not None:
            until = min(until, claimed_at + self.claim_ttl)
        rng = random.Random()  # noqa: S311 - jitter, not cryptography
        attempt = 0
        while True:
            try:
                try:
                    return (yield from save(new))
                except FlowConflict as conflict:
                    # On a retry, the store at this very version may be our own earlier write.
                    if attempt == 0 or conflict.actual != new.version:
                        raise
                    return (yield from recorded(new))
            except StoreUnavailable as exc:
                attempt += 1
                left = until - time.monotonic()
                if left <= 0:
                    if self.save_retry == 0:
                        raise
                    log.error(
                        "mfa_fsm.step_not_saved",
                        flow_ref=flow_ref(new.flow_id),
                        provider=new.provider,
                        version=new.version,
                        attempts=attempt,
                        retried_for=round(time.monotonic() - began, 3),
                        error=exc.error,
                    )
                    raise StepNotSaved(
                        exc.backend,
                        operation,
                        exc.error,
                        retried_for=time.monotonic() - began,
                    ) from None
                # The last attempt is made at the window's end, not one back-off before it.
                wait = min(_SAVE_BACKOFF.delay(attempt, rng), left)
                log.warning(
                    "mfa_fsm.save_retry",
                    flow_ref=flow_ref(new.flow_id),
                    provider=new.provider,
                    attempt=attempt,
                    wait=round(wait, 3),
                    error=exc.error,
                )
                yield Sleep(wait)

    def _step(
        self,
        snapshot: Snapshot,
        event: str,
        data: Mapping[str, Any],
        *,
        claims: _Claims | None,
        save: Callable[[Snapshot], Plan[Saved]],
        recorded: Callable[[Snapshot], Plan[Saved]],
        client_ip: str | None,
    ) -> Plan[tuple[FlowView, Saved | None]]:
        """Send ``event`` to the flow in ``snapshot`` and save what it became (see the module
        docs); returns the view and what ``save`` returned (None if nothing was saved).
        ``recorded`` is for :meth:`_save_held`."""
        flow_class, config = self._flow_class(snapshot.provider)
        take = None
        if claims is not None:
            take = partial(claims.claim, snapshot.flow_id, snapshot.version, ttl=self.claim_ttl)
        gate = _ClaimFirst(self.transport, take)
        flow = flow_class.restore(
            snapshot, config=config, transport=gate, clock=self.clock, throttle=self.throttle
        )
        saved: Saved | None = None
        claim_ended = False  # by the save
        try:
            with step_deadline(self.step_timeout):
                view: FlowView = yield _Send(flow, event, client_ip, data)
            if gate.refused is not None:
                raise gate.refused
            if flow.version != snapshot.version:
                try:
                    if gate.claim is None:  # no IdP call: nothing spent, nothing to hold
                        saved = yield from save(flow.snapshot())
                    else:
                        saved = yield from self._save_held(
                            save,
                            recorded,
                            flow.snapshot(),
                            claimed_at=gate.claimed_at,
                            operation="save",
                        )
                except FlowConflict:
                    if gate.claim is not None:
                        log.warning(
                            "mfa_fsm.step_lost",
                            flow_ref=flow_ref(snapshot.flow_id),
                            provider=snapshot.provider,
                            flow_event=event,
                            version=snapshot.version,
                            hint="a step outlasted its claim; raise claim_ttl",
                        )
                    raise
                claim_ended = True
        finally:
            if gate.claim is not None and claims is not None and not claim_ended:
                yield from _release_quietly(claims, snapshot.flow_id, gate.claim)
        return view, saved


class _ServerSide(_Facade):
    """The plans of the engines over a server-side store (:class:`Engine`,
    :class:`AsyncEngine`): each public method of theirs runs one of these."""

    store: Any

    def _start(self, provider: str, options: Mapping[str, Any]) -> Plan[FlowView]:
        flow = yield from self._begin(provider, options)
        yield from self._save_held(
            self._create,
            self._stored,
            flow.snapshot(),
            claimed_at=None,
            operation="create",
        )
        return flow.view()

    def _again(self, flow_id: str, options: Mapping[str, Any]) -> Plan[FlowView]:
        snapshot: Snapshot = yield from call(self.store.load, check_flow_id(flow_id))
        flow = yield from self._again_flow(snapshot, options)
        yield from self._save_held(
            self._create,
            self._stored,
            flow.snapshot(),
            claimed_at=None,
            operation="create",
        )
        return flow.view()

    def _create(self, snapshot: Snapshot) -> Plan[None]:
        yield from call(self.store.create, snapshot)

    def _stored(self, snapshot: Snapshot) -> Plan[None]:
        """Nothing, if the store holds exactly ``snapshot`` (a write whose answer was lost);
        else FlowConflict."""
        found: Snapshot = yield from call(self.store.load, snapshot.flow_id)
        if found != snapshot:
            raise FlowConflict(snapshot.flow_id, snapshot.version, found.version)

    def _send(
        self, flow_id: str, event: str, client_ip: str | None, data: Mapping[str, Any]
    ) -> Plan[FlowView]:
        snapshot: Snapshot = yield from call(self.store.load, check_flow_id(flow_id))

        def save(new: Snapshot) -> Plan[None]:
            yield from call(self.store.save, new, expected_version=snapshot.version)

        view, _ = yield from self._step(
            snapshot,
            event,
            data,
            claims=self.store,
            save=save,
            recorded=self._stored,
            client_ip=client_ip,
        )
        return view

    def _hand_off(self, flow_id: str) -> Plan[FlowView]:
        snapshot: Snapshot = yield from call(self.store.load, check_flow_id(flow_id))
        scrubbed = handed_off(snapshot, now=self.clock())
        yield from call(self.store.save, scrubbed, expected_version=snapshot.version)
        return FlowView.of(snapshot)

    def _view(self, flow_id: str) -> Plan[FlowView]:
        snapshot: Snapshot = yield from call(self.store.load, check_flow_id(flow_id))
        return FlowView.of(snapshot)

    def _delete(self, flow_id: str) -> Plan[None]:
        yield from call(self.store.delete, check_flow_id(flow_id))

    def _take_store(self, store: object, *, asynchronous: bool) -> None:
        if not all(callable(getattr(store, name, None)) for name in _STORE_METHODS):
            kinds = (
                "AsyncMemoryStore, AsyncSqlStore, AsyncRedisStore"
                if asynchronous
                else "MemoryStore, SqlStore, RedisStore"
            )
            raise UsageError(
                f"store must be a FlowStore ({kinds}): it has no {'/'.join(_STORE_METHODS)} methods"
            )
        if inspect.iscoroutinefunction(store.load) != asynchronous:  # type: ignore[attr-defined]
            raise UsageError(
                "AsyncEngine takes an async store (AsyncMemoryStore, AsyncSqlStore, "
                "AsyncRedisStore), Engine a blocking one (MemoryStore, SqlStore, RedisStore)"
            )
        self.store = store


class Engine(_ServerSide):
    """Runs flows kept in a server-side :class:`~mfa_fsm.stores.base.FlowStore`, one call per
    web request (see the module docs for what each call does).

    ``configs`` holds one configuration per provider the application uses (an
    ``EntrustConfig``, ...); each is matched to the registered provider
    (:mod:`mfa_fsm.core.registry`) whose flow class names it as ``config_type``, loading only
    that provider; UsageError when none does. ``transport`` carries every flow's IdP
    calls (default: one shared ``RequestsTransport``); ``clock`` is the flows' clock;
    ``claim_ttl`` (seconds) bounds how long one step may hold its flow; ``step_timeout`` is the
    wall-clock seconds each ``start`` or ``send`` may spend on IdP calls (TransportError
    after it, the flow unchanged): keep it below ``claim_ttl``; ``throttle`` (a
    :class:`~mfa_fsm.core.throttle.Throttle`) counts starts, sends and answers per user and
    per client address and refuses a step over its rate with ``Throttled`` before any IdP
    call (default: none); ``save_retry`` is how many seconds a step whose IdP call succeeded
    retries its save while the store is unavailable, holding its claim (default
    :data:`DEFAULT_SAVE_RETRY`; 0 turns it off; see the module docs). The engine keeps no
    state of its own between calls: share one between threads, or make one per process.

    Every call that takes a ``flow_id`` checks it before the store sees it: InvalidInput for
    a value that is not a string, FlowNotFound for a string that is not of the form start()
    makes flow ids (``mfa_fsm.stores.base.check_flow_id``). A store backend that fails
    raises StoreUnavailable.
    """

    @checked
    def __init__(
        self,
        store: FlowStore,
        configs: Iterable[object],
        *,
        transport: Transport | None = None,
        clock: Clock = time.time,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        throttle: Throttle | None = None,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        save_retry: float = DEFAULT_SAVE_RETRY,
    ) -> None:
        super().__init__(
            configs,
            transport=transport,
            clock=clock,
            claim_ttl=claim_ttl,
            throttle=throttle,
            step_timeout=step_timeout,
            save_retry=save_retry,
        )
        self._take_store(store, asynchronous=False)

    @checked
    def start(self, provider: str, /, **options: Any) -> FlowView:
        """Begin a flow of ``provider``, store it, and return its first view.

        ``options`` go to the provider's ``start``: the user as ``verified_user=`` (a
        :class:`~mfa_fsm.core.identity.VerifiedUser` your application checked) or as a typed
        ``user=`` (every provider; ``user_id=`` is its deprecated alias), the end user's
        ``client_ip=``, ``flow_id=``, and any option of that provider's own. Raises what
        that ``start`` raises (``VerifiedUserRequired`` for a first factor checked outside
        the IdP without a VerifiedUser, ``Throttled``), with nothing stored, and FlowConflict
        when a ``flow_id`` given is already taken (the IdP was asked, nothing is stored). A
        store that fails is retried for ``save_retry`` seconds, then StepNotSaved (nothing
        stored: start again).
        """
        return run(self._start(provider, neutral_fields("start", options, stacklevel=3)))

    @checked
    def send(
        self, flow_id: str, event: str, /, *, client_ip: str | None = None, **data: Any
    ) -> FlowView:
        """Advance ``flow_id`` by one event and return the view of its new state.

        ``client_ip`` is the end user's address for this step (Entrust ``clientIp``; not
        stored, not logged). Raises FlowNotFound (unknown or expired id), FlowBusy or
        FlowConflict (another request is advancing the flow, or already has), each before any
        IdP call, and whatever ``Flow.send`` raises: EventNotAllowed, InvalidInput, Throttled,
        IdpError, TransportError; StoreUnavailable when the store fails, and StepNotSaved
        when it stays down for ``save_retry`` seconds after the IdP accepted the step. After
        any error the stored flow is unchanged and unclaimed, so the event may be sent again
        (after StepNotSaved the IdP may then end the flow: see there).
        """
        data = neutral_fields(event, data, stacklevel=3)
        return run(self._send(flow_id, event, client_ip, data))

    @checked
    def again(
        self,
        flow_id: str,
        /,
        *,
        verified_user: VerifiedUser | None = None,
        client_ip: str | None = None,
    ) -> FlowView:
        """Start again after the flow ``flow_id`` ended; returns the new flow's view.

        A fresh flow for the user of the ended flow ``flow_id``, straight to the factor
        picker, stored under a new flow id: "send another push" after a push expired, "try
        another way" after any other ending (:meth:`mfa_fsm.core.flow.Flow.again`, whose
        rules apply: the flow must be ``Failed``, not ``unavailable``; with
        ``verified_user``, for that same user, a first factor the IdP does not check is
        confirmed at once; without it the IdP checks a first factor again).

        Raises FlowNotFound, EventNotAllowed, UsageError, VerifiedUserRequired, Throttled,
        IdpError, TransportError, and StepNotSaved as :meth:`start`; the ended flow is left
        as it was (it is forgotten at its deadline + margin, or by :meth:`delete`).
        """
        options = {"verified_user": verified_user, "client_ip": client_ip}
        return run(self._again(flow_id, options))

    @checked
    def hand_off(self, flow_id: str) -> FlowView:
        """Give the application the result of the completed flow ``flow_id``, once, and erase
        the IdP's token from the store.

        Returns the ``Completed`` view with the full ``result`` (token, cookies): put it in
        the application's session. The store then keeps only a scrubbed ``Completed``
        snapshot (no token, no cookies, no session ids; ``result.handed_off`` true) for one
        store margin, so the same browser can still load its final page; ``view`` shows that.
        Raises FlowNotFound (unknown or expired), ResultUnavailable (not completed, or already
        handed off) and FlowConflict (another request handed it off or changed it first);
        on any error the stored flow is unchanged. No IdP call.
        """
        return run(self._hand_off(flow_id))

    @checked
    def view(self, flow_id: str) -> FlowView:
        """The view of ``flow_id``'s current state, from the store alone: no IdP call, no write.

        Raises FlowNotFound for an unknown or expired id.
        """
        return run(self._view(flow_id))

    @checked
    def delete(self, flow_id: str) -> None:
        """Forget ``flow_id`` now (a missing flow is no error); :meth:`hand_off` is the usual
        end of a completed flow. Otherwise flows are forgotten at deadline + margin."""
        run(self._delete(flow_id))


class AsyncEngine(_ServerSide):
    """:class:`Engine` for asyncio applications (Starlette, FastAPI, Django's async views):
    the same calls, checks, claims, compare-and-set, save retries, errors and log lines (one
    code path: see the module docs), with every store call and IdP call awaited, so a request
    waiting on the IdP or the store holds no thread.

    ``store`` is an async store: :class:`~mfa_fsm.stores.aio.AsyncMemoryStore`,
    :class:`~mfa_fsm.stores.redis_async.AsyncRedisStore` (``redis.asyncio``),
    :class:`~mfa_fsm.stores.sql_async.AsyncSqlStore` (SQLAlchemy's asyncio engine), or any
    object with the :class:`~mfa_fsm.stores.aio.AsyncFlowStore` methods; a blocking store is
    refused with UsageError. ``transport`` must be an
    :class:`~mfa_fsm.core.http.AsyncTransport`; the default is one
    :class:`~mfa_fsm.core.transport_async.HttpxTransport` (the ``async`` extra) that the
    engine owns: close it with ``await engine.aclose()`` (or ``async with engine:``) in the
    event loop that used it. The other arguments are :class:`Engine`'s. Share one engine
    between the requests of one event loop.

    The throttle, if any, counts as in :class:`Engine`; its counts are awaited, so a throttle on
    an asyncio storage (``Throttle("async+redis://...")``) holds no thread (a blocking
    storage still works: ``memory://`` costs nothing, a blocking ``redis://`` waits in the
    event loop).
    """

    @checked
    def __init__(
        self,
        store: AsyncFlowStore,
        configs: Iterable[object],
        *,
        transport: AsyncTransport | None = None,
        clock: Clock = time.time,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        throttle: Throttle | None = None,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        save_retry: float = DEFAULT_SAVE_RETRY,
    ) -> None:
        super().__init__(
            configs,
            transport=transport,
            clock=clock,
            claim_ttl=claim_ttl,
            throttle=throttle,
            step_timeout=step_timeout,
            save_retry=save_retry,
        )
        self._owns_transport = transport is None
        self._take_store(store, asynchronous=True)

    @checked
    async def start(self, provider: str, /, **options: Any) -> FlowView:
        """Begin a flow of ``provider``, store it, and return its first view.

        ``options`` go to the provider's ``start``: the user as ``verified_user=`` (a
        :class:`~mfa_fsm.core.identity.VerifiedUser` your application checked) or as a typed
        ``user=`` (every provider; ``user_id=`` is its deprecated alias), the end user's
        ``client_ip=``, ``flow_id=``, and any option of that provider's own. Raises what
        that ``start`` raises (``VerifiedUserRequired`` for a first factor checked outside
        the IdP without a VerifiedUser, ``Throttled``), with nothing stored, and FlowConflict
        when a ``flow_id`` given is already taken (the IdP was asked, nothing is stored). A
        store that fails is retried for ``save_retry`` seconds, then StepNotSaved (nothing
        stored: start again).
        """
        return await run_async(
            self._start(provider, neutral_fields("start", options, stacklevel=2))
        )

    @checked
    async def send(
        self, flow_id: str, event: str, /, *, client_ip: str | None = None, **data: Any
    ) -> FlowView:
        """Advance ``flow_id`` by one event and return the view of its new state.

        ``client_ip`` is the end user's address for this step (Entrust ``clientIp``; not
        stored, not logged). Raises FlowNotFound (unknown or expired id), FlowBusy or
        FlowConflict (another request is advancing the flow, or already has), each before any
        IdP call, and whatever ``Flow.send`` raises: EventNotAllowed, InvalidInput, Throttled,
        IdpError, TransportError; StoreUnavailable when the store fails, and StepNotSaved
        when it stays down for ``save_retry`` seconds after the IdP accepted the step. After
        any error the stored flow is unchanged and unclaimed, so the event may be sent again
        (after StepNotSaved the IdP may then end the flow: see there).
        """
        data = neutral_fields(event, data, stacklevel=2)
        return await run_async(self._send(flow_id, event, client_ip, data))

    @checked
    async def again(
        self,
        flow_id: str,
        /,
        *,
        verified_user: VerifiedUser | None = None,
        client_ip: str | None = None,
    ) -> FlowView:
        """:meth:`Engine.again`, awaited: the same rules, calls and errors."""
        options = {"verified_user": verified_user, "client_ip": client_ip}
        return await run_async(self._again(flow_id, options))

    @checked
    async def hand_off(self, flow_id: str) -> FlowView:
        """Give the application the result of the completed flow ``flow_id``, once, and erase
        the IdP's token from the store.

        Returns the ``Completed`` view with the full ``result`` (token, cookies): put it in
        the application's session. The store then keeps only a scrubbed ``Completed``
        snapshot (no token, no cookies, no session ids; ``result.handed_off`` true) for one
        store margin, so the same browser can still load its final page; ``view`` shows that.
        Raises FlowNotFound (unknown or expired), ResultUnavailable (not completed, or already
        handed off) and FlowConflict (another request handed it off or changed it first);
        on any error the stored flow is unchanged. No IdP call.
        """
        return await run_async(self._hand_off(flow_id))

    @checked
    async def view(self, flow_id: str) -> FlowView:
        """The view of ``flow_id``'s current state, from the store alone: no IdP call, no write.

        Raises FlowNotFound for an unknown or expired id.
        """
        return await run_async(self._view(flow_id))

    @checked
    async def delete(self, flow_id: str) -> None:
        """Forget ``flow_id`` now (a missing flow is no error); :meth:`hand_off` is the usual
        end of a completed flow. Otherwise flows are forgotten at deadline + margin."""
        await run_async(self._delete(flow_id))

    _transport_method = "send_async"

    def _default_transport(self) -> AsyncTransport:
        # Imported here: httpx is the 'async' extra, and only an AsyncEngine needs it.
        from mfa_fsm.core.transport_async import HttpxTransport  # noqa: PLC0415

        return HttpxTransport()

    async def aclose(self) -> None:
        """Close the transport the engine made for itself (not one it was given), in the
        event loop that used it. The store is the application's to close."""
        if self._owns_transport:
            await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _SealedSide(_Facade):
    """The plans of the engines over sealed client-side state (:class:`SealedEngine`,
    :class:`AsyncSealedEngine`)."""

    sealed: SealedState

    def _start(self, provider: str, options: Mapping[str, Any]) -> Plan[tuple[FlowView, str]]:
        flow = yield from self._begin(provider, options)
        return (yield from self._sealed_start(flow))

    def _again(
        self, token: str, flow_id: str, options: Mapping[str, Any]
    ) -> Plan[tuple[FlowView, str]]:
        snapshot = yield from self.sealed.open_plan(token, flow_id=check_flow_id(flow_id))
        flow = yield from self._again_flow(snapshot, options)
        return (yield from self._sealed_start(flow))

    def _sealed_start(self, flow: Flow) -> Plan[tuple[FlowView, str]]:
        """Seal a flow just started (recording it in the ledger, if any)."""
        if self.sealed.ledger is None:
            return flow.view(), (yield from self.sealed.seal_plan(flow.snapshot()))
        token = yield from self._save_held(
            self.sealed.seal_plan,
            self.sealed.reseal_plan,
            flow.snapshot(),
            claimed_at=None,
            operation="ledger write",
        )
        return flow.view(), token

    def _send(
        self,
        token: str,
        flow_id: str,
        event: str,
        client_ip: str | None,
        data: Mapping[str, Any],
    ) -> Plan[tuple[FlowView, str]]:
        snapshot = yield from self.sealed.open_plan(token, flow_id=check_flow_id(flow_id))
        save = partial(self.sealed.seal_plan, expected_version=snapshot.version)
        view, new_token = yield from self._step(
            snapshot,
            event,
            data,
            claims=self.sealed.ledger,
            save=save,
            recorded=self.sealed.reseal_plan,
            client_ip=client_ip,
        )
        return view, token if new_token is None else new_token

    def _hand_off(self, token: str, flow_id: str) -> Plan[tuple[FlowView, str]]:
        snapshot = yield from self.sealed.open_plan(token, flow_id=check_flow_id(flow_id))
        scrubbed = handed_off(snapshot, now=self.clock())
        new_token = yield from self.sealed.seal_plan(scrubbed, expected_version=snapshot.version)
        return FlowView.of(snapshot), new_token

    def _view(self, token: str, flow_id: str) -> Plan[FlowView]:
        snapshot = yield from self.sealed.open_plan(token, flow_id=check_flow_id(flow_id))
        return FlowView.of(snapshot)

    def _take_sealed(self, sealed: object, *, asynchronous: bool) -> None:
        from mfa_fsm.stores.sealed import SealedState  # noqa: PLC0415 - needs cryptography

        if not isinstance(sealed, SealedState):
            raise UsageError("sealed must be a SealedState(keys, ...) from mfa_fsm.stores.sealed")
        ledger = sealed.ledger
        if ledger is not None and inspect.iscoroutinefunction(ledger.advance) != asynchronous:
            raise UsageError(
                "AsyncSealedEngine takes a SealedState whose ledger is async "
                "(AsyncStoreLedger), SealedEngine one whose ledger blocks (StoreLedger)"
            )
        self.sealed = sealed


class SealedEngine(_SealedSide):
    """Runs flows whose snapshots travel with the client as sealed tokens, one call per request.

    Like :class:`Engine`, with a :class:`~mfa_fsm.stores.sealed.SealedState` instead of a
    store: every call takes the client's token and returns the token to give back. Give the
    ``SealedState`` a replay ledger to refuse old tokens and to keep concurrent requests with
    one token from both reaching the IdP; without one, both happen (see the module docs).
    """

    @checked
    def __init__(
        self,
        sealed: SealedState,
        configs: Iterable[object],
        *,
        transport: Transport | None = None,
        clock: Clock = time.time,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        throttle: Throttle | None = None,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        save_retry: float = DEFAULT_SAVE_RETRY,
    ) -> None:
        super().__init__(
            configs,
            transport=transport,
            clock=clock,
            claim_ttl=claim_ttl,
            throttle=throttle,
            step_timeout=step_timeout,
            save_retry=save_retry,
        )
        self._take_sealed(sealed, asynchronous=False)

    @checked
    def start(self, provider: str, /, **options: Any) -> tuple[FlowView, str]:
        """Begin a flow of ``provider``; returns its first view and the token for the client.

        Raises what the provider's ``start`` raises; with a ledger, FlowConflict when a
        ``flow_id`` given is already recorded, and StepNotSaved when the ledger's store stays
        unavailable for ``save_retry`` seconds. No token is made on error.
        """
        return run(self._start(provider, neutral_fields("start", options, stacklevel=3)))

    @checked
    def send(
        self,
        token: str,
        flow_id: str,
        event: str,
        /,
        *,
        client_ip: str | None = None,
        **data: Any,
    ) -> tuple[FlowView, str]:
        """Advance the flow sealed in ``token`` by one event; returns the view and the new token.

        ``client_ip`` is the end user's address for this step, as for :meth:`Engine.send`.

        Raises SealedStateError for a token that does not open (forged, expired, another
        flow's, or, with a ledger, replayed), FlowBusy or FlowConflict (with a ledger: another
        request is advancing the flow) before any IdP call, and whatever ``Flow.send`` raises;
        with a ledger, StoreUnavailable when its store fails, and StepNotSaved when that lasts
        ``save_retry`` seconds after the IdP accepted the step (see :meth:`Engine.send`).
        After any error ``token`` is still the flow's current token. A step that did not
        advance the flow returns ``token`` itself.
        """
        data = neutral_fields(event, data, stacklevel=3)
        return run(self._send(token, flow_id, event, client_ip, data))

    @checked
    def again(
        self,
        token: str,
        flow_id: str,
        /,
        *,
        verified_user: VerifiedUser | None = None,
        client_ip: str | None = None,
    ) -> tuple[FlowView, str]:
        """Start again after the flow sealed in ``token`` ended; returns the new flow's view
        and its token (:meth:`Engine.again`'s rules and errors; SealedStateError for a token
        that does not open)."""
        options = {"verified_user": verified_user, "client_ip": client_ip}
        return run(self._again(token, flow_id, options))

    @checked
    def hand_off(self, token: str, flow_id: str) -> tuple[FlowView, str]:
        """Give the application the result of the completed flow sealed in ``token``; returns
        the ``Completed`` view with the full ``result`` and the token to give the client
        instead, which seals a scrubbed snapshot (see :meth:`Engine.hand_off`).

        With a ledger the old token (which holds the IdP's token) is refused from then on, so
        the result is handed off once; without one, a copy of the old token can be handed off
        again until it expires. Raises SealedStateError (the token does not open),
        ResultUnavailable and FlowConflict as :meth:`Engine.hand_off`; no IdP call.
        """
        return run(self._hand_off(token, flow_id))

    @checked
    def view(self, token: str, flow_id: str) -> FlowView:
        """The view of the flow sealed in ``token``: no IdP call, no write.

        Raises SealedStateError when the token does not open (see :meth:`send`).
        """
        return run(self._view(token, flow_id))


class AsyncSealedEngine(_SealedSide):
    """:class:`SealedEngine` for asyncio applications, as :class:`AsyncEngine` is
    :class:`Engine`'s: the same calls, checks, claims and errors (one code path), with the
    IdP calls and the replay ledger's calls awaited. Sealing and opening tokens is CPU work
    (AES-GCM over a few KiB) and is not awaited.

    ``sealed`` is a :class:`~mfa_fsm.stores.sealed.SealedState` without a ledger, or with an
    async one (an :class:`~mfa_fsm.stores.aio.AsyncStoreLedger`); one with a blocking ledger
    is refused with UsageError. ``transport`` is an AsyncTransport (default: an
    ``HttpxTransport`` the engine owns; ``await engine.aclose()``).
    """

    @checked
    def __init__(
        self,
        sealed: SealedState,
        configs: Iterable[object],
        *,
        transport: AsyncTransport | None = None,
        clock: Clock = time.time,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        throttle: Throttle | None = None,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        save_retry: float = DEFAULT_SAVE_RETRY,
    ) -> None:
        super().__init__(
            configs,
            transport=transport,
            clock=clock,
            claim_ttl=claim_ttl,
            throttle=throttle,
            step_timeout=step_timeout,
            save_retry=save_retry,
        )
        self._owns_transport = transport is None
        self._take_sealed(sealed, asynchronous=True)

    @checked
    async def start(self, provider: str, /, **options: Any) -> tuple[FlowView, str]:
        """Begin a flow of ``provider``; returns its first view and the token for the client.

        Raises what the provider's ``start`` raises; with a ledger, FlowConflict when a
        ``flow_id`` given is already recorded, and StepNotSaved when the ledger's store stays
        unavailable for ``save_retry`` seconds. No token is made on error.
        """
        return await run_async(
            self._start(provider, neutral_fields("start", options, stacklevel=2))
        )

    @checked
    async def send(
        self,
        token: str,
        flow_id: str,
        event: str,
        /,
        *,
        client_ip: str | None = None,
        **data: Any,
    ) -> tuple[FlowView, str]:
        """Advance the flow sealed in ``token`` by one event; returns the view and the new token.

        ``client_ip`` is the end user's address for this step, as for :meth:`Engine.send`.

        Raises SealedStateError for a token that does not open (forged, expired, another
        flow's, or, with a ledger, replayed), FlowBusy or FlowConflict (with a ledger: another
        request is advancing the flow) before any IdP call, and whatever ``Flow.send`` raises;
        with a ledger, StoreUnavailable when its store fails, and StepNotSaved when that lasts
        ``save_retry`` seconds after the IdP accepted the step (see :meth:`Engine.send`).
        After any error ``token`` is still the flow's current token. A step that did not
        advance the flow returns ``token`` itself.
        """
        data = neutral_fields(event, data, stacklevel=2)
        return await run_async(self._send(token, flow_id, event, client_ip, data))

    @checked
    async def again(
        self,
        token: str,
        flow_id: str,
        /,
        *,
        verified_user: VerifiedUser | None = None,
        client_ip: str | None = None,
    ) -> tuple[FlowView, str]:
        """:meth:`SealedEngine.again`, awaited: the same rules, calls and errors."""
        options = {"verified_user": verified_user, "client_ip": client_ip}
        return await run_async(self._again(token, flow_id, options))

    @checked
    async def hand_off(self, token: str, flow_id: str) -> tuple[FlowView, str]:
        """Give the application the result of the completed flow sealed in ``token``; returns
        the ``Completed`` view with the full ``result`` and the token to give the client
        instead, which seals a scrubbed snapshot (see :meth:`Engine.hand_off`).

        With a ledger the old token (which holds the IdP's token) is refused from then on, so
        the result is handed off once; without one, a copy of the old token can be handed off
        again until it expires. Raises SealedStateError (the token does not open),
        ResultUnavailable and FlowConflict as :meth:`Engine.hand_off`; no IdP call.
        """
        return await run_async(self._hand_off(token, flow_id))

    @checked
    async def view(self, token: str, flow_id: str) -> FlowView:
        """The view of the flow sealed in ``token``: no IdP call, no write.

        Raises SealedStateError when the token does not open (see :meth:`send`).
        """
        return await run_async(self._view(token, flow_id))

    _transport_method = "send_async"
    _default_transport = AsyncEngine._default_transport
    aclose = AsyncEngine.aclose
    __aenter__ = AsyncEngine.__aenter__
    __aexit__ = AsyncEngine.__aexit__


#: What the engine passes to every provider's ``start`` itself.
_ENGINE_SETS = frozenset({"config", "transport", "clock", "throttle"})
#: What an Engine calls on its store.
_STORE_METHODS = ("create", "load", "save", "delete", "claim", "release")


def _flows_for(configs: Iterable[object]) -> dict[str, tuple[type[Flow], object]]:
    """Provider name -> (flow class, configuration), for each configuration given."""
    given: dict[type, object] = {}
    for config in configs:
        if type(config) in given:
            raise UsageError(
                f"two {type(config).__name__} were given; an engine takes one configuration "
                "per provider, so make one engine per tenant"
            )
        given[type(config)] = config
    flows: dict[str, tuple[type[Flow], object]] = {}
    for config in given.values():
        # The provider registry (mfa_fsm.core.registry) loads only this config's provider.
        flow_class = flow_for_config(config)
        flows[flow_class.provider] = (flow_class, config)
    return flows


def _release_quietly(claims: _Claims, flow_id: str, claim: str) -> Plan[None]:
    try:
        yield from call(claims.release, flow_id, claim)
    except Exception as exc:
        # The step's own error (or result) matters more; the claim ends after claim_ttl anyway.
        log.warning("mfa_fsm.release_failed", flow_ref=flow_ref(flow_id), error=type(exc).__name__)
