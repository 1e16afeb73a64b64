"""When IDaaS says the token or transaction is gone, the flow ends Failed(expired), in every
state, over real HTTP to the emulator: never "identity provider unavailable" on every retry.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mfa_fsm import Engine, EntrustConfig, MemoryStore, TransportError, VerifiedUser
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE

Steps = list[tuple[str, dict[str, Any]]]
#: state -> (the steps that reach it, the next step from there)
STATES: dict[str, tuple[Steps, tuple[str, dict[str, Any]]]] = {
    "AwaitingFirstFactor": ([], ("submit_first_factor", {})),
    "AwaitingSecondFactor": (
        [("submit_first_factor", {})],
        ("select_second_factor", {"factor": "TOKEN"}),
    ),
    "SecondFactorSelected": (
        [("submit_first_factor", {}), ("select_second_factor", {"factor": "TOKEN"})],
        ("submit_response", {"answer": DEMO_TOKEN_CODE}),
    ),
    "OobPending": (
        [("submit_first_factor", {}), ("select_second_factor", {"factor": "TOKENPUSH"})],
        ("poll", {}),
    ),
}


def engine_for(emulator: EntrustEmulator) -> Engine:
    config = EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
    )
    return Engine(MemoryStore(), [config])


def reach(engine: Engine, steps: Steps) -> str:
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    for event, data in steps:
        engine.send(flow_id, event, **data)
    return flow_id


def test_code_resubmitted_after_its_reply_was_lost_ends_expired(
    entrust_emulator: EntrustEmulator,
) -> None:
    """The issue's case: the right code is accepted by IDaaS but its reply is lost; the
    retry gets HTTP 401 invalid_token (the token rotated) and the flow ends Failed(expired)
    with "start again", instead of raising "IdP unavailable" until the token dies."""
    engine = engine_for(entrust_emulator)
    steps, (event, data) = STATES["SecondFactorSelected"]
    flow_id = reach(engine, steps)
    entrust_emulator.faults.inject("lost_reply", path="/complete", times=1)
    with pytest.raises(TransportError):
        engine.send(flow_id, event, **data)
    assert engine.view(flow_id).state == "SecondFactorSelected"  # unchanged after the error
    calls = len(entrust_emulator.calls)
    view = engine.send(flow_id, event, **data)
    assert (view.state, view.failure) == ("Failed", "expired")
    assert "start again" in (view.failure_detail or "")
    (retry,) = entrust_emulator.calls[calls:]
    assert (retry.status, retry.fault) == (401, None)


@pytest.mark.parametrize("state", [s for s in STATES if s != "OobPending"])
def test_step_retried_after_a_lost_reply_ends_expired(
    state: str, entrust_emulator: EntrustEmulator
) -> None:
    """Every step that rotates the token: lost reply, then the retry ends Failed(expired)."""
    engine = engine_for(entrust_emulator)
    steps, (event, data) = STATES[state]
    flow_id = reach(engine, steps)
    entrust_emulator.faults.inject("lost_reply", times=1)
    with pytest.raises(TransportError):
        engine.send(flow_id, event, **data)
    view = engine.send(flow_id, event, **data)
    assert (view.state, view.failure) == ("Failed", "expired")
    assert entrust_emulator.calls[-1].status == 401


@pytest.mark.parametrize("state", list(STATES))
def test_token_expired_at_idaas_ends_expired_in_every_state(
    state: str, entrust_emulator: EntrustEmulator
) -> None:
    """IDaaS's clock passes the token's expiry before the flow's deadline (an IdP-side
    session ending early): the next step, including a poll of a pending push, gets HTTP 401
    token_expired and ends Failed(expired); no working token is kept."""
    engine = engine_for(entrust_emulator)
    steps, (event, data) = STATES[state]
    flow_id = reach(engine, steps)
    entrust_emulator.clock = lambda: time.time() + 3600
    view = engine.send(flow_id, event, **data)
    assert (view.state, view.failure) == ("Failed", "expired")
    assert "start again" in (view.failure_detail or "")
    assert entrust_emulator.calls[-1].status == 401
    assert engine.store.load(flow_id).context.token is None
