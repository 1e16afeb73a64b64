"""The fault matrix for CyberArk: every fault the emulator injects, at every IdP call the flow
makes, over real HTTP.

For each (fault, transition): the step either moves the flow to a defined outcome or raises a
typed mfa_fsm error; after an error the snapshot is unchanged and no secret is in the error;
sending the same event again once the fault has cleared continues the flow to where a
fault-free step goes. Where it cannot, the test names the reason, and the run's summary counts
those cases (see ``honest_ending``). Log lines are checked by the suite's leak guard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from mfa_fsm import CyberArkFlow, FlowView, MfaError, RequestsTransport
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.testing import CyberArkEmulator, SecretRecorder
from tests.support.cyberark import config_for, pick
from tests.support.fault_matrix import (
    BASE_FAULTS,
    COVERED,
    HONEST,
    PATIENT,
    SIZES,
    TIMEOUT,
    ArmedTransport,
    assert_no_secret,
    let_next_poll_pass,
    wait_for_slow_call,
)

FAULTS: dict[str, dict[str, Any]] = {
    **BASE_FAULTS,
    # A valid LoginSuccess of another user's finished session, replayed by a proxy or cache.
    "replayed LoginSuccess": {"kind": "replay_success"},
}
DONOR = "donor"

Reach = Callable[[CyberArkFlow, CyberArkEmulator], None]
Data = Callable[[CyberArkFlow, CyberArkEmulator], dict[str, Any]]


@attrs.frozen
class Transition:
    """One step of a flow, the IdP call in it that gets the fault, and where it should land."""

    user: str
    reach: Reach
    event: str  # "start" is StartAuthentication, through CyberArkFlow.start
    data: Data
    then: tuple[str, str | None]  # the (state, failure) a fault-free step reaches
    call: str  # the action of the faulted call: start, Answer, StartOOB or Poll
    at_call: int = 1  # which IdP call of the step gets the fault


def nothing(flow: CyberArkFlow, emulator: CyberArkEmulator) -> None:
    pass


def password(flow: CyberArkFlow, emulator: CyberArkEmulator) -> None:
    flow.send("submit_first_factor", answer=f"{flow.snapshot().user_id}-password")


def choosing(label: str) -> Reach:
    def reach(flow: CyberArkFlow, emulator: CyberArkEmulator) -> None:
        password(flow, emulator)
        flow.send("select_second_factor", factor=pick(flow.view(), label))

    return reach


def push_then(decide: str) -> Reach:
    def reach(flow: CyberArkFlow, emulator: CyberArkEmulator) -> None:
        choosing("Mobile Authenticator")(flow, emulator)
        getattr(emulator, decide)(flow.snapshot().user_id)

    return reach


def no_data(flow: CyberArkFlow, emulator: CyberArkEmulator) -> dict[str, Any]:
    return {}


def the_password(flow: CyberArkFlow, emulator: CyberArkEmulator) -> dict[str, Any]:
    return {"answer": f"{flow.snapshot().user_id}-password"}


def fixed(**data: Any) -> Data:
    return lambda flow, emulator: data


def chosen(label: str) -> Data:
    return lambda flow, emulator: {"factor": pick(flow.view(), label)}


def sms_code(flow: CyberArkFlow, emulator: CyberArkEmulator) -> dict[str, Any]:
    return {"answer": emulator.last_code(flow.snapshot().user_id)}


PENDING = ("OobPending", None)
DONE = ("Completed", None)
TRANSITIONS: dict[str, Transition] = {
    "start": Transition("alice", nothing, "start", no_data, ("AwaitingFirstFactor", None), "start"),
    "start at the user's pod": Transition(
        "frank", nothing, "start", no_data, ("AwaitingFirstFactor", None), "start", at_call=2
    ),
    "password": Transition(
        "alice",
        nothing,
        "submit_first_factor",
        the_password,
        ("AwaitingSecondFactor", None),
        "Answer",
    ),
    "wrong password": Transition(
        "alice",
        nothing,
        "submit_first_factor",
        fixed(answer="not-it"),
        ("Failed", "rejected"),
        "Answer",
    ),
    "password bringing a NewPackage": Transition(
        "erin",
        nothing,
        "submit_first_factor",
        the_password,
        ("AwaitingFirstFactor", None),
        "Answer",
    ),
    "password before an automatic StartOOB": Transition(
        "frank", nothing, "submit_first_factor", the_password, PENDING, "Answer"
    ),
    "automatic StartOOB after the password": Transition(
        "frank", nothing, "submit_first_factor", the_password, PENDING, "StartOOB", at_call=2
    ),
    "passwordless push": Transition(
        "bob", nothing, "submit_first_factor", no_data, PENDING, "StartOOB"
    ),
    "select push": Transition(
        "alice",
        password,
        "select_second_factor",
        chosen("Mobile Authenticator"),
        PENDING,
        "StartOOB",
    ),
    "select phone call": Transition(
        "grace", password, "select_second_factor", chosen("Phone Call"), PENDING, "StartOOB"
    ),
    "switch to SMS while the push runs": Transition(
        "alice",
        choosing("Mobile Authenticator"),
        "select_second_factor",
        chosen("SMS"),
        PENDING,
        "StartOOB",
    ),
    "poll pending": Transition(
        "alice", choosing("Mobile Authenticator"), "poll", no_data, PENDING, "Poll"
    ),
    "poll approved": Transition("alice", push_then("approve"), "poll", no_data, DONE, "Poll"),
    "poll denied": Transition(
        "alice", push_then("deny"), "poll", no_data, ("Failed", "expired"), "Poll"
    ),
    "SMS code typed while polled": Transition(
        "alice", choosing("SMS"), "submit_response", sms_code, DONE, "Answer"
    ),
    "security question": Transition(
        "alice",
        choosing("Security Question"),
        "submit_response",
        fixed(answer="Smokey"),
        DONE,
        "Answer",
    ),
    "two security questions": Transition(
        "carol", password, "submit_response", fixed(answers=["Beetle", "Teal"]), DONE, "Answer"
    ),
}


def honest_ending(kind: str, transition: Transition, got: tuple[str, str | None]) -> str | None:
    """Why a case may end elsewhere than a fault-free step, or None if it may not.

    These are the cases where the flow, correctly, cannot simply carry on:

    * CyberArk had already taken the answer when its reply was lost (``slow``): the answer
      sent again is for a challenge that has passed, and CyberArk ends the package. The flow
      cannot know the first one arrived; the user starts again.
    * CyberArk answered an Answer or Poll with an unknown ``Summary``: the flow ends
      ``Failed(idp_error)`` rather than guess (the request was applied, so it cannot be
      undone either).
    * The automatic StartOOB of the next challenge failed after CyberArk took the previous
      answer: the step lands offering that mechanism, as designed, and selecting it goes on.
    """
    after_answer = transition.at_call == 2 and transition.call == "StartOOB"
    if after_answer and got == ("AwaitingSecondFactor", None):
        return "offered the mechanism again after a failed automatic StartOOB"
    lost = kind in ("slow", "lost_reply")
    if lost and transition.call == "Answer" and got == ("Failed", "rejected"):
        return "ended Failed(rejected): the answer was taken but its reply lost"
    if kind == "lost_reply" and transition.call == "Poll" and got == ("Failed", "expired"):
        # CyberArk spent the package on the LoginSuccess whose reply was lost; the next
        # Poll gets its generic failure: the flow ends expired ("start again"), not stuck.
        return "ended Failed(expired): the package was spent with the lost reply"
    applied = transition.call in ("Answer", "Poll")
    if kind == "unknown_enum" and applied and got == ("Failed", "idp_error"):
        return "ended Failed(idp_error) on an unknown Summary"
    return None


@pytest.fixture(scope="module")
def emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        emulator.add_user(DONOR, password="donor-password")
        SIZES["cyberark"] = (len(FAULTS), len(TRANSITIONS))
        yield emulator


def donor_login(emulator: CyberArkEmulator) -> None:
    """Sign in another user, so the emulator's last LoginSuccess is someone else's."""
    flow = CyberArkFlow.start(config=config_for(emulator), user=DONOR)
    assert flow.send("submit_first_factor", answer="donor-password").state == "Completed"


def step(
    flow: CyberArkFlow | None, transition: Transition, emulator: CyberArkEmulator, **settings: Any
) -> CyberArkFlow:
    """Send the transition's event (or start the flow); return the flow."""
    if flow is None:
        return CyberArkFlow.start(user=transition.user, **settings)
    flow.send(transition.event, **transition.data(flow, emulator))
    return flow


@pytest.mark.parametrize("transition_name", TRANSITIONS)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_transition(emulator: CyberArkEmulator, fault: str, transition_name: str) -> None:
    """A fault ends in a typed error with the flow unchanged and no secret shown, or in a
    defined outcome; once it clears, the same event continues the flow (or the case is one
    ``honest_ending`` names)."""
    transition = TRANSITIONS[transition_name]
    spec = FAULTS[fault]
    emulator.faults.clear()
    armed = ArmedTransport(
        RequestsTransport(timeout=TIMEOUT),
        emulator,
        patient=RequestsTransport(timeout=PATIENT),
    )
    recorder = SecretRecorder(armed)
    recorder.add(f"{transition.user}-password", "Smokey", "Beetle")
    # Safe calls (StartAuthentication, Poll) get one quick retry within the step, as in
    # production; a Retry-After of 1 s does not fit its budget, so that error surfaces.
    retry = RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0, budget=0.5)
    settings: dict[str, Any] = {
        "config": config_for(emulator, retry=retry),
        "transport": recorder,
    }
    flow: CyberArkFlow | None = None
    if transition.event != "start":
        flow = CyberArkFlow.start(user=transition.user, **settings)
        transition.reach(flow, emulator)
        let_next_poll_pass(flow)
    before = flow.snapshot() if flow is not None else None
    if spec["kind"] == "replay_success":
        donor_login(emulator)
    armed.arm(spec, at_call=transition.at_call)
    try:
        flow = step(flow, transition, emulator, **settings)
    except MfaError as error:
        assert_no_secret(error, recorder.secrets)
        if flow is not None:
            assert flow.snapshot() == before, "a failed step changed the flow"
        if spec["kind"] == "slow" and armed.faulted is not None:
            wait_for_slow_call(emulator, armed.faulted.json)
        emulator.faults.clear()
        flow = step(flow, transition, emulator, **settings)
    if spec["kind"] == "slow" and armed.faulted is not None:
        wait_for_slow_call(emulator, armed.faulted.json)
    if before is not None:
        assert flow.version == before.version + 1
    view: FlowView = flow.view()
    got = (view.state, view.failure)
    if got != transition.then:
        why = honest_ending(spec["kind"], transition, got)
        assert why is not None, f"{fault} at {transition_name} ended {got}, not {transition.then}"
        HONEST["cyberark"][why] += 1
        if view.state == "AwaitingSecondFactor":  # the offered mechanism starts again
            (choice,) = view.choices
            assert flow.send("select_second_factor", factor=choice.id).state == "OobPending"
    COVERED["cyberark"].add((fault, transition_name))
