"""The fault matrix for Duo: every fault the emulator injects, at every transition.

For each (fault, transition) over real HTTP: the step either moves the flow to a defined
outcome or raises a typed mfa_fsm error; after an error the snapshot is unchanged; sending the
same event again once the fault has cleared continues the flow; and no secret appears in any
error message (log lines are checked by the suite's leak guard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mfa_fsm import MfaError, RequestsTransport
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.duo import DuoConfig, DuoFlow
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.fault_matrix import (
    BASE_FAULTS,
    COVERED,
    PATIENT,
    SIZES,
    TIMEOUT,
    ArmedTransport,
    assert_no_secret,
    let_next_poll_pass,
    wait_for_slow_call,
)

PHONE = "DPFZRS9FB0D46QFTM899"
LANDLINE = "DPL4NDL1NE0000000001"
CLIENT_IP = "192.0.2.10"

#: fault name -> inject() keyword arguments
FAULTS: dict[str, dict[str, Any]] = {
    **BASE_FAULTS,
    "Duo's 429 body with Retry-After": {"kind": "throttled", "retry_after": 1},
    "Duo's 429 body without Retry-After": {"kind": "throttled"},
}

Setup = Callable[[DuoFlow, DuoEmulator], None]


def nothing(flow: DuoFlow, emulator: DuoEmulator) -> None:
    pass


def picker(flow: DuoFlow, emulator: DuoEmulator) -> None:
    flow.send("submit_first_factor")


def sms_sent(flow: DuoFlow, emulator: DuoEmulator) -> None:
    picker(flow, emulator)
    flow.send("select_second_factor", factor=f"sms:{PHONE}")


def passcode_chosen(flow: DuoFlow, emulator: DuoEmulator) -> None:
    picker(flow, emulator)
    flow.send("select_second_factor", factor="passcode")


def push_running(flow: DuoFlow, emulator: DuoEmulator) -> None:
    picker(flow, emulator)
    flow.send("select_second_factor", factor=f"push:{PHONE}")


def push_approved(flow: DuoFlow, emulator: DuoEmulator) -> None:
    push_running(flow, emulator)
    emulator.answer("jsmith", "approve")


def call_running(flow: DuoFlow, emulator: DuoEmulator) -> None:
    picker(flow, emulator)
    flow.send("select_second_factor", factor=f"phone:{LANDLINE}")


def sms_code(emulator: DuoEmulator) -> dict[str, Any]:
    return {"answer": emulator.sms_passcodes("jsmith")[0]}


#: name -> (user, how to reach the state, event, how to build its data)
TRANSITIONS: dict[str, tuple[str, Setup, str, Callable[[DuoEmulator], dict[str, Any]]]] = {
    "preauth": ("jsmith", nothing, "submit_first_factor", lambda e: {}),
    "select push": (
        "jsmith",
        picker,
        "select_second_factor",
        lambda e: {"factor": f"push:{PHONE}"},
    ),
    "select phone call": (
        "callme",
        picker,
        "select_second_factor",
        lambda e: {"factor": f"phone:{LANDLINE}"},
    ),
    "select SMS": ("jsmith", picker, "select_second_factor", lambda e: {"factor": f"sms:{PHONE}"}),
    "submit SMS passcode": ("jsmith", sms_sent, "submit_response", sms_code),
    "submit token passcode": (
        "jsmith",
        passcode_chosen,
        "submit_response",
        lambda e: {"answer": DEMO_PASSCODE},
    ),
    "poll pending push": ("jsmith", push_running, "poll", lambda e: {}),
    "poll approved push": ("jsmith", push_approved, "poll", lambda e: {}),
    "poll phone call": ("callme", call_running, "poll", lambda e: {}),
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as emulator:
        SIZES["duo"] = (len(FAULTS), len(TRANSITIONS))
        yield emulator


@pytest.mark.parametrize("transition", TRANSITIONS)
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_transition(emulator: DuoEmulator, fault: str, transition: str) -> None:
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
    config = DuoConfig(
        emulator.credentials,
        base_url=emulator.base_url,
        poll_interval=0.0,
        retry=RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0, budget=2.0),
    )
    flow = DuoFlow.start(
        config=config, verified_user=VerifiedUser(user), client_ip=CLIENT_IP, transport=recorder
    )
    reach(flow, emulator)
    let_next_poll_pass(flow)
    data = data_for(emulator)
    recorder.add(*data.values())
    before = flow.snapshot()
    armed.arm(FAULTS[fault])
    try:
        view = flow.send(event, client_ip=CLIENT_IP, **data)
    except MfaError as error:
        assert flow.snapshot() == before, "a failed step changed the flow"
        assert_no_secret(error, recorder.secrets)
        if armed.faulted is not None and FAULTS[fault]["kind"] == "slow":
            wait_for_slow_call(emulator, armed.faulted.json)
        emulator.faults.clear()
        view = flow.send(event, client_ip=CLIENT_IP, **data_for(emulator))
    if armed.faulted is not None and FAULTS[fault]["kind"] == "slow":
        wait_for_slow_call(emulator, armed.faulted.json)
    assert flow.version == before.version + 1
    assert view.state in {"AwaitingSecondFactor", "SecondFactorSelected", "OobPending", "Completed"}
    COVERED["duo"].add((fault, transition))
