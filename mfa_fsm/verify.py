"""``mfa-fsm verify``: check a flow's table against its handlers, without an IdP.

A flow is a python-statemachine machine (the table: (state, event, outcome) -> target) plus
one :func:`~mfa_fsm.core.flow.on` handler per event that declares the outcomes it may return.
:func:`verify_flow` reads both and reports every rule of the shared design that the flow
breaks, as :class:`Problem` values:

``outcome-row``
    every outcome a handler declares, in every state that takes its event, has a row (else
    the engine raises :class:`~mfa_fsm.core.errors.UnmodelledOutcome` at run time), and the
    engine's own ``expire`` outcome has one in every live state;
``dead-row``
    every row takes an outcome some handler declares for that state (else the row is never
    used, or the declaration is incomplete);
``reachable``
    every state can be reached from the initial one through rows that can fire;
``cancel`` / ``expire``
    every live (non-final) state has ``cancel`` and ``expire``, and both lead to ``Failed``;
``completed``
    ``Completed`` is entered only on the IdP's success, the ``completed`` outcome;
``way-forward``
    from every live state some event other than ``cancel`` and ``expire`` leads, step by
    step, to ``Completed``: no page is a dead end.

The table can have a way forward while one real page has none (a challenge whose only
mechanism cannot be used: no choice to pick, nothing to type). :func:`view_problems` checks
one :class:`~mfa_fsm.core.snapshot.FlowView` against its flow (rule ``view-way-forward``):
every live view offers at least one event the page can send with what the view shows. The
test suite runs it on every view every provider's flow produces.

A third-party provider runs it on its own flow class, in its tests or from the shell::

    assert verify_flow(MyFlow) == []
    mfa-fsm verify mypackage.flow:MyFlow

The machine is asked the way the engine asks it (an event with an outcome, from a state), so
rows guarded by any callable are checked; a machine that declares actions (``on_enter_...``)
has them run once per question, on a throw-away model.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from statemachine.exceptions import TransitionNotAllowed

from mfa_fsm.core.flow import Flow, Outcome, _Model, said_kinds
from mfa_fsm.core.outcomes import OutcomeKind
from mfa_fsm.core.snapshot import FlowView

#: The shared vocabulary's state ids that every flow must have.
COMPLETED = "Completed"
FAILED = "Failed"
#: Events every live state must take, both leading to ``Failed``.
ENDING_EVENTS = ("cancel", "expire")


@attrs.frozen
class Problem:
    """One rule a flow breaks: which flow (its class name), which check, and what to fix."""

    flow: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.flow}: [{self.check}] {self.message}"


@attrs.frozen
class Row:
    """One row of a flow's table, as the machine answers it: in ``state``, ``event`` with
    ``outcome`` leads to ``target``."""

    state: str
    event: str
    outcome: OutcomeKind
    target: str


def table(flow: type[Flow]) -> list[Row]:
    """Every (state, event, outcome) the machine has a row for, with its target.

    Asks the machine each outcome of the vocabulary for every event every live state takes,
    exactly as the engine does; the order is the machine's states, then events, then the
    vocabulary's order.
    """
    found: list[Row] = []
    for state in flow.machine.states:
        for event in _events_of(flow, state.id):
            for outcome in OutcomeKind:
                target = _ask(flow, state.id, event, outcome)
                if target is not None:
                    found.append(Row(state.id, event, outcome, target))
    return found


def verify_flow(flow: type[Flow]) -> list[Problem]:
    """Every problem of ``flow``'s table and handlers (see the module docstring); ``[]`` when
    the flow keeps every rule. Makes no IdP call and changes nothing."""
    name = flow.__name__
    problems: list[Problem] = []
    ids = [state.id for state in flow.machine.states]
    live = [state.id for state in flow.machine.states if not state.final]
    for needed in (COMPLETED, FAILED):
        if needed not in ids:
            problems.append(
                Problem(name, "states", f"has no {needed} state; use core.flow.states()")
            )
    rows = table(flow)
    declared = _declared(flow, rows)
    problems += _outcome_rows(flow, live, rows, declared)
    problems += _dead_rows(name, rows, declared)
    firing = [row for row in rows if row.outcome in declared.get((row.state, row.event), ())]
    problems += _reachability(flow, firing)
    problems += _ending_events(name, live, rows)
    problems += _completed_only_on_success(flow, rows)
    problems += _ways_forward(name, live, firing)
    return problems


def summary(flow: type[Flow]) -> str:
    """One line about a flow that passed: its states, rows and handlers."""
    rows = table(flow)
    edges = sum(len(state.transitions) for state in flow.machine.states)
    return (
        f"{flow.provider} ({flow.__name__}): {len(flow.machine.states)} states, "
        f"{len(rows)} rows ({edges} transitions), {len(flow.handlers)} handlers: ok"
    )


# -- the checks --------------------------------------------------------------------------


def _declared(flow: type[Flow], rows: list[Row]) -> dict[tuple[str, str], frozenset[OutcomeKind]]:
    """(state, event) -> the outcomes that can happen there: a handler's declaration, or the
    engine's own ``expired`` for ``expire``."""
    declared: dict[tuple[str, str], frozenset[OutcomeKind]] = {}
    for state in flow.machine.states:
        for event in _events_of(flow, state.id):
            handler = flow.handlers.get(event)
            if handler is not None:
                declared[(state.id, event)] = handler.outcomes_in(state.id)
            elif event == "expire":
                declared[(state.id, event)] = frozenset({OutcomeKind.EXPIRED})
    return declared


def _outcome_rows(
    flow: type[Flow],
    live: list[str],
    rows: list[Row],
    declared: dict[tuple[str, str], frozenset[OutcomeKind]],
) -> Iterable[Problem]:
    name = flow.__name__
    have = {(row.state, row.event, row.outcome) for row in rows}
    for event, handler in sorted(flow.handlers.items()):
        for state in handler.outcomes:
            if state is not None and state not in live:
                yield Problem(
                    name,
                    "outcome-row",
                    f"{handler.name} declares outcomes for state {state}, which is not a live "
                    f"state of {flow.machine.__name__}",
                )
            elif state is not None and event not in _events_of(flow, state):
                yield Problem(
                    name,
                    "outcome-row",
                    f"{handler.name} declares outcomes for state {state}, which does not take "
                    f"{event!r}",
                )
    for (state, event), outcomes in declared.items():
        if not outcomes:
            handler_name = flow.handlers[event].name
            yield Problem(
                name,
                "outcome-row",
                f"{handler_name} declares no outcome for state {state}, which takes {event!r}: "
                "list what it returns there in its @on(outcomes=...)",
            )
        for outcome in sorted(outcomes):
            if (state, event, outcome) not in have:
                yield Problem(
                    name,
                    "outcome-row",
                    f"in {state}, {event!r} may end with {outcome.value!r} but the table has "
                    f"no row for it: add {state}: {{{outcome.name}: <target>}} to its rows",
                )


def _dead_rows(
    name: str, rows: list[Row], declared: dict[tuple[str, str], frozenset[OutcomeKind]]
) -> Iterable[Problem]:
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        if row.outcome in declared.get((row.state, row.event), frozenset()):
            continue
        if (row.state, row.event, row.target) in seen:
            continue  # an unguarded row takes every outcome: report it once
        seen.add((row.state, row.event, row.target))
        yield Problem(
            name,
            "dead-row",
            f"in {row.state}, {row.event!r} has a row for {row.outcome.value!r} (to "
            f"{row.target}) that no handler declares there: drop the row or declare the outcome",
        )


def _reachability(flow: type[Flow], firing: list[Row]) -> Iterable[Problem]:
    initial = next(state.id for state in flow.machine.states if state.initial)
    reached = _closure(initial, firing)
    for state in flow.machine.states:
        if state.id not in reached:
            yield Problem(
                flow.__name__,
                "reachable",
                f"state {state.id} cannot be reached from {initial}: no row that a handler "
                "can take leads to it",
            )


def _ending_events(name: str, live: list[str], rows: list[Row]) -> Iterable[Problem]:
    for state in live:
        for event in ENDING_EVENTS:
            targets = {row.target for row in rows if row.state == state and row.event == event}
            if not targets:
                what = "the user's Cancel" if event == "cancel" else "a passed deadline"
                yield Problem(
                    name,
                    event,
                    f"state {state} has no {event!r} row to {FAILED}: {what} could not end "
                    "the flow there",
                )
            elif targets != {FAILED}:
                yield Problem(
                    name,
                    event,
                    f"in {state}, {event!r} leads to {', '.join(sorted(targets - {FAILED}))}, "
                    f"not only to {FAILED}",
                )


def _completed_only_on_success(flow: type[Flow], rows: list[Row]) -> Iterable[Problem]:
    for row in rows:
        if row.target == COMPLETED and row.outcome is not OutcomeKind.COMPLETED:
            yield Problem(
                flow.__name__,
                "completed",
                f"in {row.state}, {row.event!r} enters {COMPLETED} on {row.outcome.value!r}: "
                "only the IdP's success ('completed') may",
            )
    for state in flow.machine.states:
        for transition in state.transitions:
            if transition.target.id != COMPLETED:
                continue
            guards = [spec.func for spec in transition._specs if spec.group.name == "COND"]
            kinds = [said_kinds(guard) for guard in guards]
            # A row guarded by said() is judged by its outcomes above; any other guard (or
            # none) could let some other answer in, whatever the handlers return today.
            if not guards or any(kind is None for kind in kinds):
                yield Problem(
                    flow.__name__,
                    "completed",
                    f"{state.id} --{transition.event}--> {COMPLETED} is not guarded by "
                    "said(COMPLETED): only the IdP's success may enter it",
                )


def _ways_forward(name: str, live: list[str], firing: list[Row]) -> Iterable[Problem]:
    onward = [row for row in firing if row.event not in ENDING_EVENTS]
    for state in live:
        if COMPLETED not in _closure(state, onward):
            yield Problem(
                name,
                "way-forward",
                f"state {state} has no way forward: no event but cancel or expire leads from "
                f"it, step by step, to {COMPLETED}",
            )


def usable_events(flow: type[Flow], view: FlowView) -> tuple[str, ...]:
    """The events of ``view``'s state that can move the flow on with what the view shows,
    sorted; empty for an ended flow.

    ``select_second_factor`` needs a supported choice; ``submit_first_factor`` and
    ``submit_response`` a challenge (``submit_response`` one that takes a code, or runs
    where a typed answer is due); ``poll`` a ``next_poll_at``; ``resend`` a
    ``Challenge.resend_at``. ``cancel`` and ``expire`` end the flow: never forward. Any other
    event (a provider's own) counts as usable: this check cannot judge it.
    """
    if view.is_final:
        return ()
    challenge = view.challenge
    usable: list[str] = []
    for event in flow._events_by_state.get(view.state, frozenset()):
        if event in ENDING_EVENTS or event in flow.internal_events:
            continue
        if event == "select_second_factor":
            ok = any(choice.supported for choice in view.choices)
        elif event == "submit_first_factor":
            ok = challenge is not None
        elif event == "submit_response":
            ok = challenge is not None and (
                challenge.accepts_code or view.state == "SecondFactorSelected"
            )
        elif event == "poll":
            ok = view.next_poll_at is not None
        elif event == "resend":
            ok = challenge is not None and challenge.resend_at is not None
        else:
            ok = True
        if ok:
            usable.append(event)
    return tuple(sorted(usable))


def view_problems(flow: type[Flow], view: FlowView) -> list[Problem]:
    """``[]`` when ``view`` is ended or offers a way forward (:func:`usable_events`), else
    the ``view-way-forward`` problem: a page that could only be cancelled."""
    if view.is_final or usable_events(flow, view):
        return []
    return [
        Problem(
            flow.__name__,
            "view-way-forward",
            f"a {view.state} view offers no event that can move it forward (choices: "
            f"{[c.id for c in view.choices if c.supported]}, challenge: "
            f"{None if view.challenge is None else view.challenge.kind}): end the flow "
            "Failed with a reason, or offer something the user can do",
        )
    ]


# -- asking the machine ------------------------------------------------------------------


def _events_of(flow: type[Flow], state: str) -> list[str]:
    for candidate in flow.machine.states:
        if candidate.id == state:
            return sorted(str(event.id) for event in candidate.transitions.unique_events)
    return []


def _ask(flow: type[Flow], state: str, event: str, outcome: OutcomeKind) -> str | None:
    model = _Model(state)
    try:
        flow.machine(model=model).send(event, outcome=Outcome(outcome))
    except TransitionNotAllowed:
        return None
    return model.state


def _closure(start: str, rows: list[Row]) -> set[str]:
    reached = {start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for row in rows:
            if row.state == state and row.target not in reached:
                reached.add(row.target)
                frontier.append(row.target)
    return reached


__all__ = [
    "Problem",
    "Row",
    "summary",
    "table",
    "usable_events",
    "verify_flow",
    "view_problems",
]
