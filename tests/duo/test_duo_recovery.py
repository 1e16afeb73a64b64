"""Duo recovery paths over real HTTP to the emulator: ``resend`` (a new SMS batch, a new
push) with its cooldown, "try another way" from a running challenge, and the view check
(issue 11, items 5 and 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mfa_fsm import (
    Engine,
    InvalidInput,
    MemoryStore,
    ResendTooSoon,
    SealedEngine,
    SealedState,
    StoreLedger,
    VerifiedUser,
)
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator

PHONE = "DPFZRS9FB0D46QFTM891"


class Clock:
    """Starts at the emulator's real time (it checks signed Dates); moved by hand."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def duo_emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as emulator:
        yield emulator


def picker(emulator: DuoEmulator, clock: Clock, **overrides: object) -> DuoFlow:
    creds = emulator.credentials
    config = DuoConfig(
        credentials=DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
        base_url=emulator.base_url,
        poll_interval=0.0,
        **overrides,  # type: ignore[arg-type]
    )
    flow = DuoFlow.start(
        config=config, verified_user=VerifiedUser("jsmith", checked_by="a test"), clock=clock
    )
    flow.send("submit_first_factor")
    return flow


def test_resend_sends_a_new_sms_batch_that_completes(duo_emulator: DuoEmulator) -> None:
    clock = Clock()
    flow = picker(duo_emulator, clock)
    view = flow.send("select_second_factor", factor="sms")
    assert view.challenge is not None and view.challenge.resend_at == clock.now + 30
    first = duo_emulator.sms_passcodes("jsmith")
    clock.now += 30
    view = flow.send("resend")
    assert view.state == "SecondFactorSelected"
    assert duo_emulator.sms_count("jsmith") == 2
    second = duo_emulator.sms_passcodes("jsmith")
    assert second != first
    assert flow.send("submit_response", answer=second[0]).state == "Completed"


def test_resend_inside_the_cooldown_is_refused_before_duo(duo_emulator: DuoEmulator) -> None:
    clock = Clock()
    flow = picker(duo_emulator, clock)
    flow.send("select_second_factor", factor="push")
    before, calls = flow.snapshot(), len(duo_emulator.calls)
    clock.now += 10
    with pytest.raises(ResendTooSoon) as caught:
        flow.send("resend")
    assert caught.value.retry_after == pytest.approx(20)
    assert flow.snapshot() == before and len(duo_emulator.calls) == calls


def test_resend_of_a_push_gets_a_new_transaction(duo_emulator: DuoEmulator) -> None:
    clock = Clock()
    flow = picker(duo_emulator, clock)
    flow.send("select_second_factor", factor="push")
    auths = len(duo_emulator.calls_to("/auth"))
    clock.now += 30
    assert flow.send("resend").state == "OobPending"
    assert len(duo_emulator.calls_to("/auth")) == auths + 1
    duo_emulator.answer("jsmith", "approve")  # the latest push: the one sent again
    clock.now += 5  # past next_poll_at
    assert flow.send("poll").state == "Completed"


def test_another_way_from_a_pending_push_to_a_passcode(duo_emulator: DuoEmulator) -> None:
    """While a push is pending, the choices are still offered: picking the passcode and
    typing Duo Mobile's code completes."""
    clock = Clock()
    flow = picker(duo_emulator, clock)
    flow.send("select_second_factor", factor="push")
    view = flow.send("select_second_factor", factor="passcode")
    assert view.state == "SecondFactorSelected"
    code = duo_emulator.passcode("jsmith")
    assert flow.send("submit_response", answer=code).state == "Completed"


@pytest.mark.parametrize("factor", ["sms", "push"])
def test_picking_the_running_factor_again_keeps_the_cooldown(
    duo_emulator: DuoEmulator, factor: str
) -> None:
    """select_second_factor naming the factor already running sends again: it is held to
    the resend cooldown (ResendTooSoon, no Duo call); another factor is still allowed."""
    clock = Clock()
    flow = picker(duo_emulator, clock)
    view = flow.send("select_second_factor", factor=factor)
    assert view.challenge is not None
    running = view.challenge.factor
    before, calls = flow.snapshot(), len(duo_emulator.calls)
    clock.now += 10
    for named in (factor, running):  # by kind, and by the choice's own id
        with pytest.raises(ResendTooSoon):
            flow.send("select_second_factor", factor=named)
    assert flow.snapshot() == before and len(duo_emulator.calls) == calls
    clock.now += 20
    assert flow.send("select_second_factor", factor=factor).version == before.version + 1


# -- a malformed passcode costs no attempt, on every entry point -----------------------------

#: Not a passcode Duo issues: too short, too long, not ASCII digits (see duo.flow.PASSCODE_LENGTHS).
MALFORMED = ["12345", "1234567890", "12a456", "\uff11\uff12\uff13\uff14\uff15\uff16"]


def duo_config(emulator: DuoEmulator) -> DuoConfig:
    creds = emulator.credentials
    return DuoConfig(
        credentials=DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
        base_url=emulator.base_url,
        poll_interval=0.0,
    )


@pytest.mark.parametrize("typed", MALFORMED)
def test_a_malformed_passcode_is_refused_before_duo_by_the_engines(
    duo_emulator: DuoEmulator, typed: str
) -> None:
    """Engine and SealedEngine: InvalidInput naming the rule, Duo's request count unchanged,
    the stored (or sealed) flow as it was; the right passcode then signs in."""
    user = VerifiedUser("jsmith", checked_by="a test")
    engine = Engine(MemoryStore(), [duo_config(duo_emulator)])
    flow_id = engine.start("duo", verified_user=user).flow_id
    engine.send(flow_id, "submit_first_factor")
    before = engine.send(flow_id, "select_second_factor", factor="passcode")
    calls = len(duo_emulator.calls)
    with pytest.raises(InvalidInput, match="6 to 9 digits") as caught:
        engine.send(flow_id, "submit_response", answer=typed)
    assert caught.value.field == "answer" and typed not in str(caught.value)
    assert len(duo_emulator.calls) == calls
    assert engine.view(flow_id) == before

    sealed = SealedEngine(
        SealedState({"k": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore())),
        [duo_config(duo_emulator)],
    )
    view, token = sealed.start("duo", verified_user=user)
    view, token = sealed.send(token, view.flow_id, "submit_first_factor")
    view, token = sealed.send(token, view.flow_id, "select_second_factor", factor="passcode")
    calls = len(duo_emulator.calls)
    with pytest.raises(InvalidInput, match="6 to 9 digits"):
        sealed.send(token, view.flow_id, "submit_response", answer=typed)
    assert len(duo_emulator.calls) == calls
    done, _ = sealed.send(token, view.flow_id, "submit_response", answer=DEMO_PASSCODE)
    assert done.state == "Completed"


def test_a_malformed_passcode_is_refused_before_duo_by_the_flow(
    duo_emulator: DuoEmulator,
) -> None:
    """Flow API: each malformed passcode is refused with no Duo call and no attempt spent
    towards ``locked_out``; a seven-digit SMS passcode is still taken."""
    clock = Clock()
    flow = picker(duo_emulator, clock)
    flow.send("select_second_factor", factor="sms")
    before, calls = flow.snapshot(), len(duo_emulator.calls)
    for typed in MALFORMED:
        with pytest.raises(InvalidInput):
            flow.send("submit_response", answer=typed)
    assert flow.snapshot() == before and len(duo_emulator.calls) == calls
    sms = duo_emulator.sms_passcodes("jsmith")[0]
    assert len(sms) == 7
    assert flow.send("submit_response", answer=sms).state == "Completed"
