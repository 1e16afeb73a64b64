"""The fault matrix for Entrust: every fault the emulator injects, at every transition.

For each (fault, transition) over real HTTP: the step either moves the flow to a defined
outcome or raises a typed mfa_fsm error; after an error the snapshot is unchanged; sending the
same event again once the fault has cleared continues the flow; and no secret appears in any
error message (log lines are checked by the suite's leak guard).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mfa_fsm import EntrustConfig, EntrustFlow, MfaError, RequestsTransport, TransportError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
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

#: fault name -> inject() keyword arguments
FAULTS: dict[str, dict[str, Any]] = {
    **BASE_FAULTS,
    "stale success": {"kind": "stale_success"},
}


def external(flow: EntrustFlow, emulator: EntrustEmulator) -> None:
    flow.send("submit_first_factor")


def otp_selected(flow: EntrustFlow, emulator: EntrustEmulator) -> None:
    external(flow, emulator)
    flow.send("select_second_factor", factor="OTP")


def push_selected(flow: EntrustFlow, emulator: EntrustEmulator) -> None:
    external(flow, emulator)
    flow.send("select_second_factor", factor="TOKENPUSH")


def password(flow: EntrustFlow, emulator: EntrustEmulator) -> None:
    pass


def push_approved(flow: EntrustFlow, emulator: EntrustEmulator) -> None:
    push_selected(flow, emulator)
    emulator.approve_push("jsmith")


def answer(emulator: EntrustEmulator) -> dict[str, Any]:
    return {"answer": emulator.last_otp("jsmith")}


#: name -> (user, how to reach the state, event, how to build its data)
Setup = Callable[[EntrustFlow, EntrustEmulator], None]
TRANSITIONS: dict[str, tuple[str, Setup, str, Callable[[EntrustEmulator], dict[str, Any]]]] = {
    "EXTERNAL first factor": ("jsmith", password, "submit_first_factor", lambda e: {}),
    "password first factor": (
        "pwuser",
        password,
        "submit_first_factor",
        lambda e: {"answer": "Passw0rd!"},
    ),
    "select OTP": ("jsmith", external, "select_second_factor", lambda e: {"factor": "OTP"}),
    "select push": ("jsmith", external, "select_second_factor", lambda e: {"factor": "TOKENPUSH"}),
    "submit OTP": ("jsmith", otp_selected, "submit_response", answer),
    "poll pending": ("jsmith", push_selected, "poll", lambda e: {}),
    "poll approved": ("jsmith", push_approved, "poll", lambda e: {}),
}


@pytest.fixture(scope="module")
def emulator() -> Any:
    with EntrustEmulator() as emulator:
        SIZES["entrust"] = (len(FAULTS), len(TRANSITIONS))
        yield emulator


@pytest.mark.parametrize("transition", TRANSITIONS)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_transition(emulator: EntrustEmulator, fault: str, transition: str) -> None:
    """A fault ends in a typed error with the flow unchanged, or in a defined outcome; a
    retry once it clears continues the flow."""
    user, reach, event, data_for = TRANSITIONS[transition]
    emulator.faults.clear()
    emulator.unlock(user)
    armed = ArmedTransport(
        RequestsTransport(timeout=TIMEOUT),
        emulator,
        patient=RequestsTransport(timeout=PATIENT),
    )
    recorder = SecretRecorder(armed)
    recorder.add("Passw0rd!")
    config = EntrustConfig(
        base_url=emulator.base_url,
        application_id=emulator.application_id,
        poll_interval=0.0,
        retry=RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0, budget=2.0),
    )
    flow = EntrustFlow.start(config=config, verified_user=VerifiedUser(user), transport=recorder)
    reach(flow, emulator)
    let_next_poll_pass(flow)
    data = data_for(emulator)
    if "answer" in data:
        recorder.add(data["answer"])
    before = flow.snapshot()
    armed.arm(FAULTS[fault])
    try:
        view = flow.send(event, **data)
    except MfaError as error:
        assert flow.snapshot() == before, "a failed step changed the flow"
        assert_no_secret(error, recorder.secrets)
        if armed.faulted is not None and FAULTS[fault]["kind"] == "slow":
            wait_for_slow_call(emulator, armed.faulted.json)
        emulator.faults.clear()
        view = flow.send(event, **data_for(emulator))
        if view.failure == "expired" and before.state != "OobPending":
            # The one honest exception: a reply lost after IDaaS applied a select or an
            # answer has rotated the token, so IDaaS answers the retry invalid_token and the
            # flow ends Failed(expired) ("start again"), never "IdP unavailable" forever.
            kind = FAULTS[fault]["kind"]
            # On a loaded machine any faulted call may outlast the matrix's 0.2 s read
            # timeout after IDaaS applied it: that too is a lost reply.
            timed_out = isinstance(error, TransportError) and "in time" in str(error)
            assert kind in ("slow", "lost_reply") or timed_out, (
                f"{fault}: retry ended {view.failure_detail}"
            )
            assert "start again" in (view.failure_detail or "")
            HONEST["entrust"]["ended expired on retry: the token rotated with the lost reply"] += 1
            COVERED["entrust"].add((fault, transition))
            return
    if armed.faulted is not None and FAULTS[fault]["kind"] == "slow":
        wait_for_slow_call(emulator, armed.faulted.json)
    assert flow.version == before.version + 1
    assert view.state in {
        "AwaitingSecondFactor",
        "SecondFactorSelected",
        "OobPending",
        "Completed",
        "Failed",
    }
    COVERED["entrust"].add((fault, transition))
