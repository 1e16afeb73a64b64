"""The flow base on toy flows of its own (as h11 tests ``ConnectionState``): ``Flow.send``'s
contract, handlers found by declaration, and the machine's decisions, remembered only when
that is safe. No IdP and no transport call: the handlers return what the test asks for."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import attrs
import pytest
import structlog
from statemachine import State

from mfa_fsm import CyberArkFlow, EntrustFlow, IdpError
from mfa_fsm.core.errors import EventNotAllowed, InvalidInput, MfaError, UnmodelledOutcome
from mfa_fsm.core.flow import (
    Flow,
    FlowMachine,
    Outcome,
    _declares_no_action,
    on,
    pure_guard,
    rows,
    said,
    said_kinds,
)
from mfa_fsm.core.outcomes import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FIRST_FACTOR_DUE,
    OOB_PENDING,
    REJECTED,
    OutcomeKind,
)
from mfa_fsm.core.registry import provider_flow, provider_names
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.duo import DuoFlow

#: How often each guard below was called, by name.
CALLS: Counter[str] = Counter()


@pure_guard
def accepted(outcome: Outcome) -> bool:
    """A marked guard: its answer depends on the outcome's kind alone."""
    CALLS["accepted"] += 1
    return outcome.kind == COMPLETED


def refused(outcome: Outcome) -> bool:
    """The same kind of guard, left unmarked: the engine may not remember its answers."""
    CALLS["refused"] += 1
    return outcome.kind == FAILED


@attrs.frozen
class ToyConfig:
    name: str = "toy"


@attrs.frozen
class ToyContext:
    answers: int = 0


class ToyClient:
    def __init__(self, config: ToyConfig) -> None:
        self.config = config


class MarkedMachine(FlowMachine):
    """Every guard marked pure, no action: decisions may be remembered."""

    AwaitingFirstFactor = State(initial=True)
    OobPending = State()
    Completed = State(final=True)
    Failed = State(final=True)

    submit_response = AwaitingFirstFactor.to(Completed, cond=accepted) | rows(
        AwaitingFirstFactor, {REJECTED: AwaitingFirstFactor, OOB_PENDING: OobPending}
    )
    poll = rows(OobPending, {OOB_PENDING: OobPending, COMPLETED: Completed})
    cancel = rows((AwaitingFirstFactor, OobPending), {CANCELLED: Failed})
    expire = rows((AwaitingFirstFactor, OobPending), {EXPIRED: Failed})


class UnmarkedMachine(FlowMachine):
    """One transition of ``submit_response`` is decided by an unmarked guard."""

    AwaitingFirstFactor = State(initial=True)
    OobPending = State()
    Completed = State(final=True)
    Failed = State(final=True)

    submit_response = (
        AwaitingFirstFactor.to(Completed, cond=accepted)
        | AwaitingFirstFactor.to(Failed, cond=refused)
        | rows(AwaitingFirstFactor, {OOB_PENDING: OobPending})
    )
    poll = rows(OobPending, {COMPLETED: Completed})
    cancel = rows((AwaitingFirstFactor, OobPending), {CANCELLED: Failed})
    expire = rows((AwaitingFirstFactor, OobPending), {EXPIRED: Failed})


class ActionMachine(FlowMachine):
    """Marked guards, but the machine declares an action: nothing may be remembered."""

    AwaitingFirstFactor = State(initial=True)
    OobPending = State()
    Completed = State(final=True)
    Failed = State(final=True)

    submit_response = AwaitingFirstFactor.to(Completed, cond=accepted) | rows(
        AwaitingFirstFactor, {OOB_PENDING: OobPending}
    )
    poll = rows(OobPending, {COMPLETED: Completed})
    cancel = rows((AwaitingFirstFactor, OobPending), {CANCELLED: Failed})
    expire = rows((AwaitingFirstFactor, OobPending), {EXPIRED: Failed})

    def on_enter_Completed(self) -> None:
        CALLS["entered"] += 1


class ToyFlow(Flow):
    """A flow whose handlers return the outcome the test asks for, with no IdP call.

    ``kind="boom"`` makes the handler fail as an IdP call would; ``changes`` go into the
    outcome. The handlers' names are deliberately not ``_on_<event>``: the ``@on``
    declaration is what makes a method a handler.
    """

    provider: ClassVar[str] = "toy-decisions"
    machine = MarkedMachine
    context_type = ToyContext
    config_type = ToyConfig
    client_type = ToyClient

    @on("submit_response", outcomes=[COMPLETED, REJECTED, FAILED, OOB_PENDING])
    def answer(
        self, snapshot: Snapshot, now: float, kind: str, changes: dict[str, Any] | None = None
    ) -> Outcome:
        CALLS["handler"] += 1
        if kind == "boom":
            raise IdpError("the toy IdP refused", path="/toy", status=500)
        return Outcome(kind, changes or {})

    @on(MarkedMachine.poll, outcomes=[OOB_PENDING, COMPLETED])
    def ask_again(self, snapshot: Snapshot, now: float) -> Outcome:
        CALLS["handler"] += 1
        return Outcome(COMPLETED)

    @on(MarkedMachine.cancel, outcomes=[CANCELLED])
    def give_up(self, snapshot: Snapshot, now: float) -> Outcome:
        return Outcome(CANCELLED, {"failure": "cancelled"})


class UnmarkedFlow(ToyFlow):
    provider: ClassVar[str] = "toy-decisions-unmarked"
    machine = UnmarkedMachine


class ActionFlow(ToyFlow):
    provider: ClassVar[str] = "toy-decisions-action"
    machine = ActionMachine


def snapshot(flow_class: type[Flow], state: str = "AwaitingFirstFactor", **fields: Any) -> str:
    """A snapshot of ``flow_class`` in ``state``, as JSON (what a request would load)."""
    values: dict[str, Any] = {
        "provider": flow_class.provider,
        "flow_id": "f",
        "user_id": "u",
        "state": state,
        "version": 0,
        "created_at": 0.0,
        "deadline": 1e12,
        "context": ToyContext(),
    }
    values.update(fields)
    return Snapshot(**values).to_json()


def toy(
    state: str = "AwaitingFirstFactor", flow_class: type[ToyFlow] = ToyFlow, **fields: Any
) -> ToyFlow:
    """A toy flow restored in ``state``."""
    return flow_class.restore(snapshot(flow_class, state, **fields), config=ToyConfig())


def run(flow_class: type[ToyFlow], kind: str) -> str:
    """One stateless step from a fresh snapshot; returns the state it ends in."""
    return toy(flow_class=flow_class).send("submit_response", kind=kind).state


@pytest.fixture(autouse=True)
def fresh_decisions() -> None:
    CALLS.clear()
    for flow_class in (ToyFlow, UnmarkedFlow, ActionFlow):
        flow_class._decisions.clear()


# -- Flow.send: what it refuses, it refuses before the handler and with nothing changed ---


def test_an_unknown_event_is_refused_without_repeating_its_name() -> None:
    flow = toy()
    before = flow.snapshot()
    with pytest.raises(EventNotAllowed) as caught:
        flow.send("drop_tables; --")
    assert caught.value.event == "<unknown event>"
    assert "drop_tables" not in str(caught.value)
    assert caught.value.allowed == ("cancel", "submit_response")
    assert flow.snapshot() == before and not CALLS["handler"]


def test_an_event_the_state_does_not_take_is_refused() -> None:
    flow = toy()
    with pytest.raises(EventNotAllowed, match="poll"):
        flow.send("poll")
    assert flow.version == 0 and not CALLS["handler"]


def test_a_final_state_takes_no_event() -> None:
    flow = toy("Completed")
    assert flow.is_final and flow.allowed_events() == ()
    with pytest.raises(EventNotAllowed):
        flow.send("cancel")


def test_a_passed_deadline_turns_any_event_into_expire_without_the_handler() -> None:
    flow = toy(deadline=10.0)
    view = flow.send("submit_response", kind=COMPLETED)
    assert (view.state, view.failure, view.version) == ("Failed", "expired", 1)
    assert not CALLS["handler"]


def test_fields_are_checked_against_the_handlers_signature() -> None:
    flow = toy()
    with pytest.raises(InvalidInput, match="is required"):
        flow.send("submit_response")
    with pytest.raises(InvalidInput, match="is not a field of 'submit_response'"):
        flow.send("submit_response", kind=COMPLETED, colour="red")
    assert flow.version == 0 and not CALLS["handler"]


def test_a_failing_handler_leaves_the_flow_as_it_was() -> None:
    flow = toy()
    before = flow.snapshot()
    with structlog.testing.capture_logs() as logs, pytest.raises(IdpError):
        flow.send("submit_response", kind="boom")
    assert flow.snapshot() == before
    assert [log["event"] for log in logs] == ["mfa_fsm.step_failed"]


def test_an_outcome_moves_the_flow_and_applies_its_changes() -> None:
    flow = toy()
    with structlog.testing.capture_logs() as logs:
        view = flow.send("submit_response", kind=OOB_PENDING, changes={"next_poll_at": 5.0})
    assert (view.state, view.version, view.next_poll_at) == ("OobPending", 1, 5.0)
    (line,) = logs
    assert (line["event"], line["source"], line["target"]) == (
        "mfa_fsm.transition",
        "AwaitingFirstFactor",
        "OobPending",
    )


def test_an_outcome_with_no_row_raises_unmodelled_outcome_every_time() -> None:
    """The handler declares ``failed`` for submit_response, but the table has no row for it:
    a bug in the provider, not an IdP error; remembered or not, the flow is left as it was."""
    for _ in range(2):
        flow = toy()
        before = flow.snapshot()
        with pytest.raises(UnmodelledOutcome, match="MarkedMachine has no row for it") as caught:
            flow.send("submit_response", kind=FAILED)
        assert not isinstance(caught.value, IdpError)
        assert isinstance(caught.value, MfaError)
        assert (caught.value.state, caught.value.event, caught.value.outcome) == (
            "AwaitingFirstFactor",
            "submit_response",
            "failed",
        )
        assert flow.snapshot() == before
    assert ToyFlow._decisions == {("AwaitingFirstFactor", "submit_response", FAILED): None}


def test_an_outcome_the_handler_does_not_declare_is_refused() -> None:
    flow = toy()
    with pytest.raises(UnmodelledOutcome, match=r"@on\('submit_response'\) does not declare it"):
        flow.send("submit_response", kind=FIRST_FACTOR_DUE)
    assert flow.version == 0 and not ToyFlow._decisions


# -- handlers found by declaration -------------------------------------------------------


def test_handlers_are_found_by_their_declaration() -> None:
    assert {event: h.name for event, h in ToyFlow.handlers.items()} == {
        "submit_response": "answer",
        "poll": "ask_again",
        "cancel": "give_up",
    }
    assert ToyFlow.handlers["poll"].outcomes_in("OobPending") == {OOB_PENDING, COMPLETED}


def test_outcomes_may_be_declared_per_state() -> None:
    declared = on("poll", outcomes={"OobPending": [COMPLETED]}, calls="GET /x")(lambda: None)
    handler = declared.__mfa_fsm_handler__  # type: ignore[attr-defined]
    assert handler.outcomes_in("OobPending") == {COMPLETED}
    assert handler.outcomes_in("AwaitingFirstFactor") == frozenset()
    assert handler.calls == ("GET /x",)


@pytest.fixture
def own_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The registries are filled before the checks: give the test its own copies.
    monkeypatch.setattr(Snapshot, "contexts", dict(Snapshot.contexts))


@pytest.mark.usefixtures("own_registries")
def test_a_flow_class_without_a_handler_for_an_event_is_refused_when_declared() -> None:
    with pytest.raises(
        TypeError,
        match=r"^NoCancel declares no handler for event 'cancel': decorate one method with "
        r"@on\('cancel', outcomes=\[\.\.\.\]\)$",
    ):

        class NoCancel(Flow):
            provider: ClassVar[str] = "toy-no-cancel"
            machine = MarkedMachine
            context_type = ToyContext
            config_type = ToyConfig
            client_type = ToyClient

            @on("submit_response", outcomes=[COMPLETED])
            def answer(self, snapshot: Snapshot, now: float) -> Outcome:
                return Outcome(COMPLETED)

            @on("poll", outcomes=[COMPLETED])
            def ask(self, snapshot: Snapshot, now: float) -> Outcome:
                return Outcome(COMPLETED)

            def _on_cancel(self, snapshot: Snapshot, now: float) -> Outcome:
                """Named like a handler, but undeclared: not one."""
                return Outcome(CANCELLED)


@pytest.mark.usefixtures("own_registries")
def test_two_handlers_for_one_event_are_refused() -> None:
    with pytest.raises(TypeError, match=r"^Twice declares two handlers for 'poll': one and two$"):

        class Twice(ToyFlow):
            provider: ClassVar[str] = "toy-twice"

            @on("poll", outcomes=[COMPLETED])
            def one(self, snapshot: Snapshot, now: float) -> Outcome:
                return Outcome(COMPLETED)

            @on("poll", outcomes=[COMPLETED])
            def two(self, snapshot: Snapshot, now: float) -> Outcome:
                return Outcome(COMPLETED)


@pytest.mark.usefixtures("own_registries")
def test_a_handler_for_an_event_the_machine_lacks_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Stray\.select handles 'select_second_factor'"):

        class Stray(ToyFlow):
            provider: ClassVar[str] = "toy-stray"

            @on("select_second_factor", outcomes=[COMPLETED])
            def select(self, snapshot: Snapshot, now: float) -> Outcome:
                return Outcome(COMPLETED)


# -- asking the machine once --------------------------------------------------------------


def test_marked_guards_are_asked_once() -> None:
    """With pure guards and no action, the machine is asked once per (state, event, kind)."""
    assert [run(ToyFlow, COMPLETED) for _ in range(3)] == ["Completed"] * 3
    assert CALLS["accepted"] == 1
    assert run(ToyFlow, REJECTED) == "AwaitingFirstFactor"  # another kind: asked again
    assert CALLS["accepted"] == 2
    assert ToyFlow._decisions == {
        ("AwaitingFirstFactor", "submit_response", COMPLETED): "Completed",
        ("AwaitingFirstFactor", "submit_response", REJECTED): "AwaitingFirstFactor",
    }


def test_an_unmarked_guard_is_asked_every_time() -> None:
    """A decision that an unmarked guard takes part in is never remembered."""
    assert [run(UnmarkedFlow, FAILED) for _ in range(3)] == ["Failed"] * 3
    assert CALLS["refused"] == 3
    assert [run(UnmarkedFlow, COMPLETED) for _ in range(2)] == ["Completed"] * 2
    assert CALLS["accepted"] == 5  # once per step: it shares the event with the unmarked guard
    assert not UnmarkedFlow._decisions
    # Another event of the same machine, decided by marked guards only, is remembered.
    assert ("AwaitingFirstFactor", "cancel") in UnmarkedFlow._rememberable
    assert ("AwaitingFirstFactor", "submit_response") not in UnmarkedFlow._rememberable


def test_a_machine_with_an_action_is_asked_every_time() -> None:
    """An action (here on_enter_Completed) makes every decision of the machine unrememberable,
    and the action runs on every step as python-statemachine would run it."""
    assert [run(ActionFlow, COMPLETED) for _ in range(3)] == ["Completed"] * 3
    assert CALLS["accepted"] == 3
    assert CALLS["entered"] == 3
    assert not ActionFlow._decisions
    assert not ActionFlow._rememberable


@pytest.mark.parametrize("flow_class", [EntrustFlow, CyberArkFlow, DuoFlow])
def test_provider_machines_are_fully_rememberable(flow_class: type[Flow]) -> None:
    """The shipped flows mark every guard and declare no action, so no step of theirs
    rebuilds a machine twice for the same decision."""
    every_pair = {
        (state.id, event.id)
        for state in flow_class.machine.states
        for event in state.transitions.unique_events
    }
    assert flow_class._rememberable == every_pair


def test_state_enter_callback_counts_as_an_action() -> None:
    """An inline ``State(enter=...)`` callback, or a class-level listener, is an action as
    much as a named callback."""

    class Inline(FlowMachine):
        start = State(initial=True, enter=lambda: None)
        done = State(final=True)
        go = start.to(done, cond=said(COMPLETED))

    class Listening(FlowMachine):
        listeners = (object,)
        start = State(initial=True)
        done = State(final=True)
        go = start.to(done, cond=said(COMPLETED))

    assert not _declares_no_action(Inline)
    assert not _declares_no_action(Listening)
    assert _declares_no_action(MarkedMachine)


# -- the shared states and outcomes, as diagrams show them --------------------------------


@pytest.mark.parametrize("flow", [EntrustFlow, CyberArkFlow, DuoFlow])
def test_every_machine_has_the_shared_states_with_their_names(flow: type[Flow]) -> None:
    """ids, display names (diagrams), the one initial state and the two final ones."""
    got = [(s.id, s.name, s.initial, s.final) for s in flow.machine.states]
    assert got == [
        ("AwaitingFirstFactor", "Awaiting first factor", True, False),
        ("AwaitingSecondFactor", "Awaiting second factor", False, False),
        ("SecondFactorSelected", "Second factor selected", False, False),
        ("OobPending", "OOB pending", False, False),
        ("Completed", "Completed", False, True),
        ("Failed", "Failed", False, True),
    ]


def test_a_said_guard_is_named_after_its_kinds_and_reads_them_back() -> None:
    guard = said(COMPLETED, REJECTED)
    assert guard.__name__ == guard.__qualname__ == "completed or rejected"
    assert said_kinds(guard) == {COMPLETED, REJECTED}
    assert said_kinds(accepted) is None
    with pytest.raises(ValueError, match="is not a valid OutcomeKind"):
        said("accepted")  # type: ignore[arg-type]


def test_rows_declare_one_transition_per_source_and_outcome() -> None:
    declared = list(rows((MarkedMachine.AwaitingFirstFactor,), {REJECTED: MarkedMachine.Failed}))
    assert len(declared) == 1
    with pytest.raises(TypeError, match="at least one outcome"):
        rows(MarkedMachine.AwaitingFirstFactor, {})


def test_outcome_kinds_are_plain_strings_in_the_shared_vocabulary() -> None:
    assert [kind.value for kind in OutcomeKind] == [
        "first_factor_due",
        "second_factor_due",
        "response_due",
        "oob_pending",
        "rejected",
        "completed",
        "failed",
        "cancelled",
        "expired",
    ]
    assert Outcome("completed").kind is COMPLETED


def test_each_flow_class_registers_its_context_and_only_providers_are_registered() -> None:
    """Defining a flow class makes its snapshots readable; only the provider registry (entry
    points, register_provider) makes it a provider, so a test's subclass never replaces one."""
    for flow_class in (ToyFlow, UnmarkedFlow, EntrustFlow, CyberArkFlow):
        assert Snapshot.contexts[flow_class.provider] is flow_class.context_type
    assert provider_flow("entrust") is EntrustFlow
    assert provider_flow("cyberark") is CyberArkFlow
    assert ToyFlow.provider not in provider_names()
