"""Duo recovery paths over real HTTP to the emulator: ``resend`` (a new SMS batch, a new
push) with its cooldown, "try another way" from a running challenge, and the view check
(issue 11, items 5 and 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mfa_fsm import ResendTooSoon, VerifiedUser
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing.duo import DuoEmulator

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
