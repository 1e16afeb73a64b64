"""Entrust recovery paths over real HTTP to the emulator: ``resend`` (the select re-issued
with the current token) with its cooldown, the throttle and IDaaS's refusal, and local
code-format checks (issue 11, item 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from mfa_fsm import (
    EntrustConfig,
    EntrustFlow,
    IdpError,
    InvalidInput,
    ResendTooSoon,
    Throttle,
    Throttled,
    VerifiedUser,
)
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.support.cyberark import Clock
from tests.support.stateless import Driver

SELECT = "/authenticate/"


@pytest.fixture
def clock() -> Clock:
    # IDaaS's token expiry is the emulator's real time: the flow's clock starts there.
    return Clock(float(int(time.time())))


def config_for(emulator: EntrustEmulator, **overrides: Any) -> EntrustConfig:
    settings: dict[str, Any] = {
        "base_url": emulator.base_url,
        "application_id": emulator.application_id,
        "poll_interval": 0.0,
    }
    return EntrustConfig(**(settings | overrides))


def started(emulator: EntrustEmulator, clock: Clock, factor: str, **options: Any) -> EntrustFlow:
    config = config_for(emulator, **options.pop("config", {}))
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), clock=clock, **options
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor=factor)
    return flow


def selects(emulator: EntrustEmulator) -> int:
    return sum(1 for call in emulator.calls if call.path.endswith(("/OTP", "/TOKENPUSH")))


@pytest.fixture
def refusing() -> Iterator[EntrustEmulator]:
    with EntrustEmulator(reselect=False) as emulator:
        yield emulator


def test_resend_sends_a_new_otp_that_completes(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    flow = started(entrust_emulator, clock, "OTP")
    assert flow.state == "SecondFactorSelected"
    challenge = flow.view().challenge
    assert challenge is not None and challenge.resend_at == clock.now + 30.0
    first = entrust_emulator.last_otp("jsmith")
    clock.advance(30.0)
    view = flow.send("resend")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None and view.challenge.resend_at == clock.now + 30.0
    assert view.challenge.delivery == challenge.delivery
    second = entrust_emulator.last_otp("jsmith")
    assert second is not None and second != first
    assert flow.send("submit_response", answer=second).state == "Completed"


def test_resend_of_a_push_sends_a_new_one(entrust_emulator: EntrustEmulator, clock: Clock) -> None:
    flow = started(entrust_emulator, clock, "TOKENPUSH")
    assert flow.state == "OobPending"
    calls = selects(entrust_emulator)
    clock.advance(30.0)
    view = flow.send("resend")
    assert view.state == "OobPending"
    assert selects(entrust_emulator) == calls + 1
    entrust_emulator.approve_push("jsmith")
    assert flow.send("poll").state == "Completed"


def test_resend_inside_the_cooldown_is_refused_before_idaas(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    flow = started(entrust_emulator, clock, "OTP")
    before, calls = flow.snapshot(), len(entrust_emulator.calls)
    clock.advance(29.0)
    with pytest.raises(ResendTooSoon) as caught:
        flow.send("resend")
    assert caught.value.retry_after == pytest.approx(1.0)
    assert flow.snapshot() == before
    assert len(entrust_emulator.calls) == calls


def test_a_token_code_offers_no_resend(entrust_emulator: EntrustEmulator, clock: Clock) -> None:
    flow = started(entrust_emulator, clock, "TOKEN")
    challenge = flow.view().challenge
    assert challenge is not None and challenge.resend_at is None


def test_idaas_refusing_the_resend_says_so_and_keeps_the_code(
    refusing: EntrustEmulator, clock: Clock
) -> None:
    """A tenant that refuses the re-select (401 invalid_token here): the step raises an
    IdpError that says IDaaS refused to send again, the flow is unchanged (not ended as
    gone), and the code already sent still completes."""
    flow = started(refusing, clock, "OTP")
    before = flow.snapshot()
    clock.advance(30.0)
    with pytest.raises(IdpError, match="refused to send a new code or push") as caught:
        flow.send("resend")
    assert not caught.value.gone
    assert flow.snapshot() == before
    code = refusing.last_otp("jsmith")
    assert flow.send("submit_response", answer=code).state == "Completed"


def test_the_throttle_counts_a_resend_as_a_send(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    throttle = Throttle(sends_per_user="2/hour", send_cooldown="100/second")
    flow = started(entrust_emulator, clock, "OTP", throttle=throttle)
    clock.advance(30.0)
    flow.send("resend")
    clock.advance(30.0)
    calls = len(entrust_emulator.calls)
    with pytest.raises(Throttled) as caught:
        flow.send("resend")
    assert caught.value.action == "send" and not isinstance(caught.value, ResendTooSoon)
    assert len(entrust_emulator.calls) == calls


@pytest.mark.parametrize(
    ("factor", "typed", "says"),
    [
        ("TOKEN", "12345", "6 to 8 digits"),
        ("TOKEN", "123456789", "6 to 8 digits"),
        ("TOKEN", "12345a", "6 to 8 digits"),
        ("OTP", "1234567", "8 digits"),
        ("OTP", "1234567x", "8 digits"),
    ],
)
def test_a_malformed_code_costs_no_attempt(
    entrust_emulator: EntrustEmulator, clock: Clock, factor: str, typed: str, says: str
) -> None:
    """A TOKEN code must be 6 to 8 digits (RFC 4226); an OTP the tenant's ``otpLength``
    (8 here). Refused locally: IDaaS sees no complete, the remaining attempts do not drop,
    and the right code still completes."""
    flow = started(entrust_emulator, clock, factor, config={"otp_length": 8})
    before, calls = flow.snapshot(), len(entrust_emulator.calls)
    attempts = entrust_emulator.remaining_attempts("jsmith", factor)
    with pytest.raises(InvalidInput, match=says) as caught:
        flow.send("submit_response", answer=typed)
    assert typed not in str(caught.value)
    assert flow.snapshot() == before
    assert len(entrust_emulator.calls) == calls
    assert entrust_emulator.remaining_attempts("jsmith", factor) == attempts
    right = DEMO_TOKEN_CODE if factor == "TOKEN" else entrust_emulator.last_otp("jsmith")
    assert flow.send("submit_response", answer=right).state == "Completed"


# -- try another way ----------------------------------------------------------------------


def test_another_way_from_a_code_to_an_sms(entrust_emulator: EntrustEmulator, clock: Clock) -> None:
    """From a TOKEN challenge, the choices are still offered and picking the OTP by SMS
    re-selects with the current token: the SMS code completes the login."""
    flow = started(entrust_emulator, clock, "TOKEN")
    assert {choice.id for choice in flow.view().choices} >= {"OTP", "TOKENPUSH"}
    view = flow.send("select_second_factor", factor="OTP", delivery="SMS")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None and view.challenge.factor == "OTP"
    code = entrust_emulator.last_otp("jsmith")
    assert flow.send("submit_response", answer=code).state == "Completed"


def test_another_way_from_a_pending_push_to_the_token_code(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    """On a pending push, a user who has TOKEN types its code instead: the select of TOKEN
    ends the push at IDaaS and the code completes."""
    flow = started(entrust_emulator, clock, "TOKENPUSH")
    assert flow.state == "OobPending"
    view = flow.send("select_second_factor", factor="TOKEN")
    assert view.state == "SecondFactorSelected"
    assert flow.send("submit_response", answer=DEMO_TOKEN_CODE).state == "Completed"


def test_a_tenant_refusing_another_way_says_so(refusing: EntrustEmulator, clock: Clock) -> None:
    flow = started(refusing, clock, "TOKENPUSH")
    before = flow.snapshot()
    with pytest.raises(IdpError, match="refused to switch to another method") as caught:
        flow.send("select_second_factor", factor="TOKEN")
    assert not caught.value.gone
    assert flow.snapshot() == before
    refusing.approve_push("jsmith")
    assert flow.send("poll").state == "Completed"


# -- no state without a way forward ---------------------------------------------------------


def test_only_a_security_key_ends_failed_saying_why(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    """A user whose only second factor is FIDO (a security key or passkey, which needs the
    browser's WebAuthn): the first factor ends the flow Failed(unavailable) naming why, and
    the IDaaS session is logged out, instead of an empty picker with only Cancel."""
    entrust_emulator.add_user("kim", authenticators=("FIDO",))
    flow = EntrustFlow.start(
        config=config_for(entrust_emulator), verified_user=VerifiedUser("kim"), clock=clock
    )
    (fido,) = flow.view().choices
    assert not fido.supported and fido.detail is not None and "security key" in fido.detail
    view = flow.send("submit_first_factor")
    assert (view.state, view.failure) == ("Failed", "unavailable")
    assert view.failure_detail is not None and "security key" in view.failure_detail
    assert entrust_emulator.calls[-1].path.endswith("/logout")


def test_a_security_key_beside_a_token_is_offered_as_unavailable(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    entrust_emulator.add_user("lee", authenticators=("FIDO", "TOKEN"))
    flow = EntrustFlow.start(
        config=config_for(entrust_emulator), verified_user=VerifiedUser("lee"), clock=clock
    )
    view = flow.send("submit_first_factor")
    assert view.state == "AwaitingSecondFactor"
    assert {c.id: c.supported for c in view.choices} == {"FIDO": False, "TOKEN": True}


def test_resend_and_another_way_over_both_drivers(
    entrust_emulator: EntrustEmulator, clock: Clock, driver: Driver
) -> None:
    """The re-select (resend, then another authenticator) over the sync and async drivers."""
    config = config_for(entrust_emulator)
    flow = driver.start(
        EntrustFlow,
        config=config,
        verified_user=VerifiedUser("jsmith"),
        clock=clock,
        transport=driver.recorder(),
    )
    driver.send(flow, "submit_first_factor")
    driver.send(flow, "select_second_factor", factor="TOKENPUSH")
    clock.advance(30.0)
    assert driver.send(flow, "resend").state == "OobPending"
    assert driver.send(flow, "select_second_factor", factor="TOKEN").state == (
        "SecondFactorSelected"
    )
    view = driver.send(flow, "submit_response", answer=DEMO_TOKEN_CODE)
    assert view.state == "Completed"


def test_another_channel_or_factor_is_sent_at_once(
    entrust_emulator: EntrustEmulator, clock: Clock
) -> None:
    """The resend cooldown holds back only the same factor over the same channel: the OTP
    by e-mail right after it went by SMS, then a push, are different requests, sent at once
    (each a new IDaaS select), with the default throttle counting them."""
    flow = started(entrust_emulator, clock, "OTP", throttle=Throttle())
    first = flow.view().challenge
    assert first is not None and first.delivery == "SMS"
    sent = selects(entrust_emulator)
    with pytest.raises(ResendTooSoon):  # SMS again, named: held back
        flow.send("select_second_factor", factor="OTP", delivery="sms")
    clock.advance(1.0)
    view = flow.send("select_second_factor", factor="OTP", delivery="EMAIL")
    assert view.challenge is not None and view.challenge.delivery == "EMAIL"
    clock.advance(1.0)
    view = flow.send("select_second_factor", factor="TOKENPUSH")
    assert view.state == "OobPending"
    assert selects(entrust_emulator) == sent + 2
    with pytest.raises(ResendTooSoon):  # the same channel again is still held back
        flow.send("select_second_factor", factor="TOKENPUSH")


@pytest.mark.parametrize("factor", ["OTP", "TOKENPUSH"])
def test_picking_the_running_factor_again_keeps_the_cooldown(
    entrust_emulator: EntrustEmulator, clock: Clock, factor: str
) -> None:
    """Selecting the factor already running re-sends it: held to the resend cooldown before
    any IDaaS call; once the cooldown has passed it is allowed, like resend."""
    flow = started(entrust_emulator, clock, factor)
    before, calls = flow.snapshot(), len(entrust_emulator.calls)
    clock.advance(10.0)
    with pytest.raises(ResendTooSoon) as caught:
        flow.send("select_second_factor", factor=factor)
    assert caught.value.retry_after == pytest.approx(20.0)
    assert flow.snapshot() == before and len(entrust_emulator.calls) == calls
    clock.advance(20.0)
    assert flow.send("select_second_factor", factor=factor).version == before.version + 1
