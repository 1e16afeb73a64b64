"""Cancel ends the IDaaS transaction in every state; a token saved before it cannot complete."""

from __future__ import annotations

from typing import Any

import pytest

from mfa_fsm import (
    Engine,
    EntrustConfig,
    EventNotAllowed,
    IdpError,
    MemoryStore,
    SealedEngine,
    VerifiedUser,
)
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE

Steps = list[tuple[str, dict[str, Any]]]
#: state -> (the steps that reach it, the IdP path the cancel calls, the step that would
#: complete the login from there)
STATES: dict[str, tuple[Steps, str, Steps]] = {
    "AwaitingFirstFactor": (
        [],
        "/authenticate/EXTERNAL/complete",
        [
            ("submit_first_factor", {}),
            ("select_second_factor", {"factor": "TOKEN"}),
            ("submit_response", {"answer": DEMO_TOKEN_CODE}),
        ],
    ),
    "AwaitingSecondFactor": (
        [("submit_first_factor", {})],
        "/authentication/logout",
        [
            ("select_second_factor", {"factor": "TOKEN"}),
            ("submit_response", {"answer": DEMO_TOKEN_CODE}),
        ],
    ),
    "SecondFactorSelected": (
        [("submit_first_factor", {}), ("select_second_factor", {"factor": "TOKEN"})],
        "/authenticate/TOKEN/complete",
        [("submit_response", {"answer": DEMO_TOKEN_CODE})],
    ),
    "OobPending": (
        [("submit_first_factor", {}), ("select_second_factor", {"factor": "TOKENPUSH"})],
        "/authenticate/TOKENPUSH/complete",
        [("poll", {})],
    ),
}


def config_for(emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
    )


@pytest.mark.parametrize("state", list(STATES))
def test_cancel_tells_idaas_and_a_replayed_token_cannot_complete(
    state: str, entrust_emulator: EntrustEmulator
) -> None:
    """Sealed state without a ledger (the weakest store): a token saved before the cancel
    replays that state, but IDaaS has ended the transaction, so the login never completes."""
    reach, cancel_path, finish = STATES[state]
    engine = SealedEngine(
        SealedState({"k": SealedState.generate_key()}), [config_for(entrust_emulator)]
    )
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    for event, data in reach:
        view, token = engine.send(token, view.flow_id, event, **data)
    assert view.state == state
    saved = token
    calls = len(entrust_emulator.calls)
    cancelled, _ = engine.send(token, view.flow_id, "cancel")
    assert (cancelled.state, cancelled.failure) == ("Failed", "cancelled")
    (cancel_call,) = entrust_emulator.calls[calls:]
    assert cancel_call.path.endswith(cancel_path)
    assert cancel_call.status == 200
    if state == "OobPending":
        with pytest.raises(LookupError):
            entrust_emulator.approve_push("jsmith")  # the push is gone at IDaaS
    replayed = _replay(engine, saved, view.flow_id, finish)
    assert replayed != "Completed"


def _replay(engine: SealedEngine, token: str, flow_id: str, steps: Steps) -> str:
    state = "?"
    for event, data in steps:
        try:
            view, token = engine.send(token, flow_id, event, **data)
        except IdpError:
            return "refused by IDaaS"
        state = view.state
        if state == "Failed":
            # IDaaS answered the dead token invalid_token: the replay ends expired.
            assert view.failure == "expired"
            return state
    return state


def test_stored_flow_cannot_be_replayed_after_cancel(entrust_emulator: EntrustEmulator) -> None:
    """With a store the flow id names the stored, cancelled flow: every later step is refused."""
    engine = Engine(MemoryStore(), [config_for(entrust_emulator)])
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    engine.send(flow_id, "select_second_factor", factor="TOKEN")
    engine.send(flow_id, "cancel")
    calls = len(entrust_emulator.calls)
    with pytest.raises(EventNotAllowed, match="flow has ended"):
        engine.send(flow_id, "submit_response", answer=DEMO_TOKEN_CODE)
    assert len(entrust_emulator.calls) == calls


def test_cancel_is_best_effort(entrust_emulator: EntrustEmulator) -> None:
    """An IdP failure on the cancel call still ends the flow Failed(cancelled)."""
    engine = Engine(MemoryStore(), [config_for(entrust_emulator)])
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    entrust_emulator.faults.inject("status", status=503, path="logout")
    view = engine.send(flow_id, "cancel")
    assert (view.state, view.failure) == ("Failed", "cancelled")
