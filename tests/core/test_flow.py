"""The flow base on toy flows: the machine's decisions, remembered only when that is safe."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import attrs
import pytest
from statemachine import State

from mfa_fsm import CyberArkFlow, EntrustFlow, IdpError
from mfa_fsm.core.flow import Flow, FlowMachine, Outcome, _declares_no_action, pure_guard, said
from mfa_fsm.core.snapshot import Snapshot

#: How often each guard below was called, by name.
CALLS: Counter[str] = Counter()


@pure_guard
def accepted(outcome: Outcome) -> bool:
    """A marked guard: its answer depends on the outcome's kind alone."""
    CALLS["accepted"] += 1
    return outcome.kind == "accepted"


def refused(outcome: Outcome) -> bool:
    """The same kind of guard, left unmarked: the engine may not remember its answers."""
    CALLS["refused"] += 1
    return outcome.kind == "refused"


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
    Completed = State(final=True)
    Failed = State(final=True)

    submit_response = AwaitingFirstFactor.to(Completed, cond=accepted) | AwaitingFirstFactor.to(
        AwaitingFirstFactor, cond=said("again")
    )
    cancel = Failed.from_(AwaitingFirstFactor)
    expire = Failed.from_(AwaitingFirstFactor)


class UnmarkedMachine(FlowMachine):
    """One transition of ``submit_response`` is decided by an unmarked guard."""

    AwaitingFirstFactor = State(initial=True)
    Completed = State(final=True)
    Failed = State(final=True)

    submit_response = AwaitingFirstFactor.to(Completed, cond=accepted) | AwaitingFirstFactor.to(
        Failed, cond=refused
    )
    cancel = Failed.from_(AwaitingFirstFactor, cond=said("cancelled"))
    expire = Failed.from_(AwaitingFirstFactor)


class ActionMachine(FlowMachine):
    """Marked guards, but the machine declares an action: nothing may be remembered."""

    AwaitingFirstFactor = State(initial=True)
    Completed = State(final=True)
    Failed = State(final=True)

    submit_response = AwaitingFirstFactor.to(Completed, cond=accepted)
    cancel = Failed.from_(AwaitingFirstFactor, cond=said("cancelled"))
    expire = Failed.from_(AwaitingFirstFactor)

    def on_enter_Completed(self) -> None:
        CALLS["entered"] += 1


class ToyFlow(Flow):
    """A flow whose handlers return the outcome the test asks for, with no IdP call."""

    provider: ClassVar[str] = "toy-decisions"
    machine = MarkedMachine
    context_type = ToyContext
    config_type = ToyConfig
    client_type = ToyClient

    def _on_submit_response(self, snapshot: Snapshot, now: float, kind: str) -> Outcome:
        return Outcome(kind)

    def _on_cancel(self, snapshot: Snapshot, now: float) -> Outcome:
        return Outcome("cancelled")


class UnmarkedFlow(ToyFlow):
    provider: ClassVar[str] = "toy-decisions-unmarked"
    machine = UnmarkedMachine


class ActionFlow(ToyFlow):
    provider: ClassVar[str] = "toy-decisions-action"
    machine = ActionMachine


def run(flow_class: type[ToyFlow], kind: str) -> str:
    """One stateless step from a fresh snapshot; returns the state it ends in."""
    snapshot = Snapshot(
        provider=flow_class.provider,
        flow_id="f",
        user_id="u",
        state="AwaitingFirstFactor",
        version=0,
        created_at=0.0,
        deadline=1e12,
        context=ToyContext(),
    )
    flow = flow_class.restore(snapshot.to_json(), config=ToyConfig())
    return flow.send("submit_response", kind=kind).state


@pytest.fixture(autouse=True)
def fresh_decisions() -> None:
    CALLS.clear()
    for flow_class in (ToyFlow, UnmarkedFlow, ActionFlow):
        flow_class._decisions.clear()


def test_marked_guards_are_asked_once() -> None:
    """With pure guards and no action, the machine is asked once per (state, event, kind)."""
    assert [run(ToyFlow, "accepted") for _ in range(3)] == ["Completed"] * 3
    assert CALLS["accepted"] == 1
    assert run(ToyFlow, "again") == "AwaitingFirstFactor"  # another kind: asked again
    assert CALLS["accepted"] == 2
    assert ToyFlow._decisions == {
        ("AwaitingFirstFactor", "submit_response", "accepted"): "Completed",
        ("AwaitingFirstFactor", "submit_response", "again"): "AwaitingFirstFactor",
    }


def test_an_unmarked_guard_is_asked_every_time() -> None:
    """A decision that an unmarked guard takes part in is never remembered."""
    assert [run(UnmarkedFlow, "refused") for _ in range(3)] == ["Failed"] * 3
    assert CALLS["refused"] == 3
    assert [run(UnmarkedFlow, "accepted") for _ in range(2)] == ["Completed"] * 2
    assert CALLS["accepted"] == 5  # once per step: it shares the event with the unmarked guard
    assert not UnmarkedFlow._decisions
    # Another event of the same machine, decided by marked guards only, is remembered.
    assert ("AwaitingFirstFactor", "cancel") in UnmarkedFlow._rememberable
    assert ("AwaitingFirstFactor", "submit_response") not in UnmarkedFlow._rememberable


def test_a_machine_with_an_action_is_asked_every_time() -> None:
    """An action (here on_enter_Completed) makes every decision of the machine unrememberable,
    and the action runs on every step as python-statemachine would run it."""
    assert [run(ActionFlow, "accepted") for _ in range(3)] == ["Completed"] * 3
    assert CALLS["accepted"] == 3
    assert CALLS["entered"] == 3
    assert not ActionFlow._decisions
    assert not ActionFlow._rememberable


def test_an_outcome_without_a_row_is_refused_every_time() -> None:
    """An outcome the table does not model raises IdpError, remembered or not, and the flow
    is left as it was."""
    for _ in range(2):
        with pytest.raises(IdpError, match="not valid in state AwaitingFirstFactor"):
            run(ToyFlow, "surprise")
    assert ToyFlow._decisions == {("AwaitingFirstFactor", "submit_response", "surprise"): None}


def test_provider_machines_are_fully_rememberable() -> None:
    """Both shipped flows mark every guard and declare no action, so no step of theirs
    rebuilds a machine twice for the same decision."""
    for flow_class in (EntrustFlow, CyberArkFlow):
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
        go = start.to(done, cond=said("go"))

    class Listening(FlowMachine):
        listeners = (object,)
        start = State(initial=True)
        done = State(final=True)
        go = start.to(done, cond=said("go"))

    assert not _declares_no_action(Inline)
    assert not _declares_no_action(Listening)
    assert _declares_no_action(MarkedMachine)


# -- mutation-testing pins (issue 15): the shared states and guard names, as diagrams show them


@pytest.mark.parametrize("flow", [EntrustFlow, CyberArkFlow])
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


def test_a_said_guard_is_named_after_its_kinds() -> None:
    guard = said("completed", "rejected")
    assert guard.__name__ == guard.__qualname__ == "completed or rejected"


def test_each_flow_class_registers_its_provider_and_context() -> None:
    for flow_class in (ToyFlow, UnmarkedFlow, EntrustFlow, CyberArkFlow):
        assert Flow.providers[flow_class.provider] is flow_class
        assert Snapshot.contexts[flow_class.provider] is flow_class.context_type


def test_a_flow_class_without_a_handler_for_an_event_is_refused_when_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The registries are filled before the check: give the test its own copies.
    monkeypatch.setattr(Flow, "providers", dict(Flow.providers))
    monkeypatch.setattr(Snapshot, "contexts", dict(Snapshot.contexts))
    with pytest.raises(TypeError, match=r"^NoCancel has no handler _on_cancel for event 'cancel'$"):

        class NoCancel(Flow):
            provider: ClassVar[str] = "toy-no-cancel"
            machine = MarkedMachine
            context_type = ToyContext
            config_type = ToyConfig
            client_type = ToyClient

            def _on_submit_response(self, snapshot: Snapshot, now: float, kind: str) -> Outcome:
                return Outcome(kind)
