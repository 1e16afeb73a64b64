"""``verify_flow`` / ``mfa-fsm verify``: every shipped flow keeps the rules, and each rule, when
broken on purpose in a toy flow, is reported with a message that says what to fix."""

from __future__ import annotations

import io
from typing import ClassVar

import pytest
from statemachine import State

from mfa_fsm import diagrams
from mfa_fsm.cli import main
from mfa_fsm.core.flow import Flow, FlowMachine, Outcome, on, rows, states
from mfa_fsm.core.outcomes import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    OOB_PENDING,
    REJECTED,
    RESPONSE_DUE,
    SECOND_FACTOR_DUE,
)
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.verify import Problem, verify_flow
from tests.toy_provider import ToyFlow

LIVE = ("AwaitingFirstFactor", "AwaitingSecondFactor", "SecondFactorSelected", "OobPending")


@pytest.mark.parametrize("provider", sorted(diagrams.flows()))
def test_every_provider_keeps_every_rule(provider: str) -> None:
    assert verify_flow(diagrams.flows()[provider]) == []


def test_the_command_verifies_every_provider_and_says_what_it_checked() -> None:
    out = io.StringIO()
    assert main(["verify"], stdout=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "cyberark (CyberArkFlow): 6 states, 50 rows (50 transitions), 6 handlers: ok",
        "duo (DuoFlow): 6 states, 33 rows (33 transitions), 6 handlers: ok",
        "entrust (EntrustFlow): 6 states, 34 rows (34 transitions), 6 handlers: ok",
    ]
    assert lines[3].startswith("3 flow(s) verified: every state reachable;")


def _table(
    *,
    select: dict[object, State] | None = None,
    respond: dict[object, State] | None = None,
    cancel_from: tuple[str, ...] = LIVE,
    disconnected: bool = False,
) -> type[FlowMachine]:
    """The toy provider's table with one part changed."""
    (first, second, selected, pending, completed, failed) = states()
    by_id = {"AwaitingFirstFactor": first, "AwaitingSecondFactor": second}
    by_id |= {"SecondFactorSelected": selected, "OobPending": pending}
    names = {"S": selected, "O": pending, "C": completed, "F": failed}
    select_rows = {RESPONSE_DUE: "S", OOB_PENDING: "O"} if select is None else select
    respond_rows = {COMPLETED: "C", REJECTED: "S", FAILED: "F"} if respond is None else respond
    namespace = {
        "AwaitingFirstFactor": first,
        "AwaitingSecondFactor": second,
        "SecondFactorSelected": selected,
        "OobPending": pending,
        "Completed": completed,
        "Failed": failed,
        "validate_disconnected_states": not disconnected,
        "submit_first_factor": rows(
            first, {SECOND_FACTOR_DUE: second, REJECTED: first, FAILED: failed}
        ),
        "select_second_factor": rows(second, {k: names[str(v)] for k, v in select_rows.items()}),
        "submit_response": rows(selected, {k: names[str(v)] for k, v in respond_rows.items()}),
        "poll": rows(pending, {OOB_PENDING: pending, COMPLETED: completed, FAILED: failed}),
        "cancel": rows([by_id[s] for s in cancel_from], {CANCELLED: failed}),
        "expire": rows([by_id[s] for s in LIVE], {EXPIRED: failed}),
    }
    return type("BrokenMachine", (FlowMachine,), namespace)


def _flow(machine: type[FlowMachine], name: str, **handlers: object) -> type[Flow]:
    """A toy flow over ``machine``: the toy provider's handlers, some re-declared."""
    return type(name, (ToyFlow,), {"provider": f"broken-{name}", "machine": machine, **handlers})


@pytest.fixture(autouse=True)
def own_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken flows register like any flow class: give them throw-away registries."""
    monkeypatch.setattr(Snapshot, "contexts", dict(Snapshot.contexts))


def _problems(flow: type[Flow]) -> list[tuple[str, str]]:
    return [(problem.check, problem.message) for problem in verify_flow(flow)]


def test_an_unreachable_state_is_reported() -> None:
    """No row leads into OobPending (python-statemachine's own check switched off)."""

    @on("select_second_factor", outcomes=[RESPONSE_DUE])
    def choose(self: ToyFlow, snapshot: Snapshot, now: float, factor: str) -> Outcome:
        return Outcome(RESPONSE_DUE)

    machine = _table(select={RESPONSE_DUE: "S"}, disconnected=True)
    assert _problems(_flow(machine, "Unreachable", _choose=choose)) == [
        (
            "reachable",
            "state OobPending cannot be reached from AwaitingFirstFactor: no row that a "
            "handler can take leads to it",
        )
    ]


def test_a_missing_cancel_is_reported() -> None:
    machine = _table(cancel_from=LIVE[:3])
    assert _problems(_flow(machine, "NoCancel")) == [
        (
            "cancel",
            "state OobPending has no 'cancel' row to Failed: the user's Cancel could not end "
            "the flow there",
        )
    ]


def test_an_outcome_with_no_row_is_reported() -> None:
    """The handler declares ``rejected``; the table forgot its row."""
    machine = _table(respond={COMPLETED: "C", FAILED: "F"})
    assert _problems(_flow(machine, "NoRow")) == [
        (
            "outcome-row",
            "in SecondFactorSelected, 'submit_response' may end with 'rejected' but the table "
            "has no row for it: add SecondFactorSelected: {REJECTED: <target>} to its rows",
        )
    ]


def test_a_state_with_no_way_forward_is_reported() -> None:
    """A typed answer can only be wrong or fail: the code page is a dead end."""

    @on("submit_response", outcomes=[REJECTED, FAILED])
    def verify(self: ToyFlow, snapshot: Snapshot, now: float, answer: str) -> Outcome:
        return Outcome(REJECTED)

    machine = _table(respond={REJECTED: "S", FAILED: "F"})
    assert _problems(_flow(machine, "DeadEnd", _verify=verify)) == [
        (
            "way-forward",
            "state SecondFactorSelected has no way forward: no event but cancel or expire "
            "leads from it, step by step, to Completed",
        )
    ]


def test_completed_on_anything_but_success_is_reported() -> None:
    machine = _table(respond={COMPLETED: "C", REJECTED: "C", FAILED: "F"})
    assert _problems(_flow(machine, "LaxSuccess")) == [
        (
            "completed",
            "in SecondFactorSelected, 'submit_response' enters Completed on 'rejected': only "
            "the IdP's success ('completed') may",
        )
    ]


def test_a_row_no_handler_declares_is_reported() -> None:
    machine = _table(select={RESPONSE_DUE: "S", OOB_PENDING: "O", FAILED: "F"})
    assert _problems(_flow(machine, "DeadRow")) == [
        (
            "dead-row",
            "in AwaitingSecondFactor, 'select_second_factor' has a row for 'failed' (to "
            "Failed) that no handler declares there: drop the row or declare the outcome",
        )
    ]


def test_an_unguarded_way_into_completed_is_reported() -> None:
    """A row into Completed that any outcome (or an opaque guard) could take."""

    class Machine(FlowMachine):
        first = State(initial=True)
        Completed = State(final=True)
        Failed = State(final=True)
        submit_first_factor = first.to(Completed)
        cancel = rows(first, {CANCELLED: Failed})
        expire = rows(first, {EXPIRED: Failed})

    class Unguarded(Flow):
        provider: ClassVar[str] = "broken-unguarded"
        machine = Machine
        context_type = ToyFlow.context_type
        config_type = ToyFlow.config_type
        client_type = ToyFlow.client_type

        @on("submit_first_factor", outcomes=[COMPLETED])
        def _go(self, snapshot: Snapshot, now: float) -> Outcome:
            return Outcome(COMPLETED)

        @on("cancel", outcomes=[CANCELLED])
        def _cancel(self, snapshot: Snapshot, now: float) -> Outcome:
            return Outcome(CANCELLED)

    checks = [check for check, _ in _problems(Unguarded)]
    assert "completed" in checks
    assert (
        "completed",
        "first --submit_first_factor--> Completed is not guarded by said(COMPLETED): only "
        "the IdP's success may enter it",
    ) in _problems(Unguarded)


def test_the_command_prints_each_problem_and_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit status 1, one line per problem naming the flow and the check."""
    broken = _flow(_table(cancel_from=LIVE[:3]), "NoCancelCli")
    monkeypatch.setattr("tests.toy_provider.BrokenForCli", broken, raising=False)
    out = io.StringIO()
    assert main(["verify", "tests.toy_provider:BrokenForCli"], stdout=out) == 1
    assert out.getvalue().splitlines() == [
        "NoCancelCli: [cancel] state OobPending has no 'cancel' row to Failed: the user's "
        "Cancel could not end the flow there",
        "1 problem(s) in 1 flow(s)",
    ]


def test_the_command_refuses_what_is_not_a_flow() -> None:
    out = io.StringIO()
    assert main(["verify", "tests.toy_provider:ToyIdp"], stdout=out) == 2
    assert "tests.toy_provider:ToyIdp is not a provider's mfa_fsm.Flow subclass" in out.getvalue()
    assert main(["verify", "nosuch"], stdout=out) == 2
    assert "no provider 'nosuch'" in out.getvalue()


def test_a_problem_reads_as_one_line() -> None:
    assert str(Problem("F", "cancel", "what to fix")) == "F: [cancel] what to fix"


def test_per_state_declarations_must_name_states_that_take_the_event() -> None:
    """A per-state @on declaration that names a state which does not take the event, or
    a final state, or leaves out a state which does, is reported."""

    @on(
        "select_second_factor",
        outcomes={"AwaitingFirstFactor": [RESPONSE_DUE], "Completed": [COMPLETED]},
    )
    def choose(self: ToyFlow, snapshot: Snapshot, now: float, factor: str) -> Outcome:
        return Outcome(RESPONSE_DUE)

    problems = _problems(_flow(_table(), "Misdeclared", _choose=choose))
    assert (
        "outcome-row",
        "_choose declares outcomes for state AwaitingFirstFactor, which does not take "
        "'select_second_factor'",
    ) in problems
    assert (
        "outcome-row",
        "_choose declares outcomes for state Completed, which is not a live state of BrokenMachine",
    ) in problems
    assert (
        "outcome-row",
        "_choose declares no outcome for state AwaitingSecondFactor, which takes "
        "'select_second_factor': list what it returns there in its @on(outcomes=...)",
    ) in problems


def test_a_flow_without_the_shared_final_states_is_reported() -> None:
    class Machine(FlowMachine):
        AwaitingFirstFactor = State(initial=True)
        Done = State(final=True)
        cancel = rows(AwaitingFirstFactor, {CANCELLED: Done})
        expire = rows(AwaitingFirstFactor, {EXPIRED: Done})

    class Odd(Flow):
        provider: ClassVar[str] = "broken-odd"
        machine = Machine
        context_type = ToyFlow.context_type
        config_type = ToyFlow.config_type
        client_type = ToyFlow.client_type

        @on("cancel", outcomes=[CANCELLED])
        def _cancel(self, snapshot: Snapshot, now: float) -> Outcome:
            return Outcome(CANCELLED)

    problems = _problems(Odd)
    assert ("states", "has no Completed state; use core.flow.states()") in problems
    assert ("states", "has no Failed state; use core.flow.states()") in problems
    assert ("cancel", "in AwaitingFirstFactor, 'cancel' leads to Done, not only to Failed") in (
        problems
    )


@pytest.mark.parametrize(
    ("name", "said"),
    [
        (":Foo", "name a flow class as module:Class"),
        ("..x:Y", "cannot load ..x:Y: TypeError"),
        ("mfa_fsm:Flow", "is not a provider's mfa_fsm.Flow subclass (it has no machine)"),
    ],
)
def test_a_malformed_flow_name_is_a_usage_error_not_a_crash(name: str, said: str) -> None:
    """Exit 2 (the command was misused), never a traceback or 1 (problems found)."""
    out = io.StringIO()
    assert main(["verify", name], stdout=out) == 2
    assert said in out.getvalue()
