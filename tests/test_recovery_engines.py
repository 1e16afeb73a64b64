"""The recovery paths through the engines (a stored flow, a sealed one), over real HTTP to
the Entrust emulator: ``resend`` with its cooldown, and "try another way" from a running
challenge, each leaving the stored or sealed flow exactly as it was when refused."""

from __future__ import annotations

import time

import pytest

from mfa_fsm import (
    Engine,
    EntrustConfig,
    MemoryStore,
    ResendTooSoon,
    SealedEngine,
    SealedState,
    StoreLedger,
    VerifiedUser,
)
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def config(emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
    )


def test_stored_flow_resend_then_another_way(entrust_emulator: EntrustEmulator) -> None:
    clock = Clock()
    engine = Engine(MemoryStore(), [config(entrust_emulator)], clock=clock)
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    engine.send(flow_id, "select_second_factor", factor="OTP", delivery="SMS")
    before = engine.view(flow_id)
    with pytest.raises(ResendTooSoon):
        engine.send(flow_id, "resend")
    assert engine.view(flow_id) == before
    clock.now += 30
    first = entrust_emulator.last_otp("jsmith")
    view = engine.send(flow_id, "resend")
    assert view.version == before.version + 1
    assert entrust_emulator.last_otp("jsmith") != first
    view = engine.send(flow_id, "select_second_factor", factor="TOKEN")
    assert view.state == "SecondFactorSelected"
    assert engine.send(flow_id, "submit_response", answer=DEMO_TOKEN_CODE).state == "Completed"


def test_sealed_flow_resend_keeps_the_token_when_refused(
    entrust_emulator: EntrustEmulator,
) -> None:
    clock = Clock()
    sealed = SealedState({"k": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore()))
    engine = SealedEngine(sealed, [config(entrust_emulator)], clock=clock)
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    flow_id = view.flow_id
    view, token = engine.send(token, flow_id, "submit_first_factor")
    view, token = engine.send(token, flow_id, "select_second_factor", factor="TOKENPUSH")
    with pytest.raises(ResendTooSoon):
        engine.send(token, flow_id, "resend")
    clock.now += 30
    view, token = engine.send(token, flow_id, "resend")  # the same token still opens
    assert view.state == "OobPending"
    entrust_emulator.approve_push("jsmith")
    view, token = engine.send(token, flow_id, "poll")
    assert view.state == "Completed"
