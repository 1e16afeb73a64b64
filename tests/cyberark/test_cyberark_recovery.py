"""CyberArk recovery paths and dead ends, over real HTTP to the emulator: ``resend``
(RetryOOB) with its cooldown and the throttle, local code-format checks, and challenges
whose mechanisms cannot be used here (issue 11, items 5 and 6)."""

from __future__ import annotations

import pytest

from mfa_fsm import (
    Choice,
    CyberArkFlow,
    FlowView,
    InvalidInput,
    ResendTooSoon,
    Throttle,
    Throttled,
    UsageError,
)
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.cyberark import UserMechanism
from mfa_fsm.testing.leaks import SecretRecorder
from mfa_fsm.verify import usable_events, view_problems
from tests.cyberark.conftest import Login
from tests.support.cyberark import Clock, config_for, pick
from tests.support.stateless import Driver, StatelessClient

ADVANCE = "/Security/AdvanceAuthentication"
#: CyberArk's one generic failure envelope (vendor spec "Failures").
GENERIC_FAILURE = {
    "success": False,
    "Result": {},
    "Message": "Authentication (login or challenge) has failed. Please try again or contact "
    "your system administrator.",
    "MessageID": None,
    "Exception": None,
    "ErrorID": None,
    "ErrorCode": None,
    "IsSoftError": False,
    "InnerExceptions": None,
}


def actions(emulator: CyberArkEmulator) -> list[str]:
    return [call.body["Action"] for call in emulator.calls_to(ADVANCE)]


def sms_pending(login: Login) -> StatelessClient:
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    view = client.send("select_second_factor", factor=pick(client.view, "SMS"))
    assert view.state == "OobPending"
    return client


# -- resend ------------------------------------------------------------------------------


def test_resend_sends_a_new_code_after_the_cooldown(
    login: Login, cyberark_emulator: CyberArkEmulator, clock: Clock
) -> None:
    """RetryOOB after the 30 s cooldown: a new code is sent, the old one no longer works
    at the emulator, and the new one completes the login."""
    client = sms_pending(login)
    challenge = client.view.challenge
    assert challenge is not None and challenge.resend_at == clock.now + 30.0
    first_code = cyberark_emulator.last_code("alice")
    clock.advance(30.0)
    view = client.send("resend")
    assert view.state == "OobPending"
    assert view.challenge is not None and view.challenge.resend_at == clock.now + 30.0
    assert actions(cyberark_emulator) == ["Answer", "StartOOB", "RetryOOB"]
    new_code = cyberark_emulator.last_code("alice")
    assert new_code is not None and new_code != first_code
    view = client.send("submit_response", answer=new_code)
    assert view.state == "Completed"


def test_resend_inside_the_cooldown_is_refused_before_cyberark(
    login: Login, cyberark_emulator: CyberArkEmulator, clock: Clock
) -> None:
    client = sms_pending(login)
    before = client.saved
    clock.advance(12.0)
    with pytest.raises(ResendTooSoon) as caught:
        client.send("resend")
    assert caught.value.retry_after == pytest.approx(18.0)
    assert isinstance(caught.value, Throttled)
    assert "wait 18 s" in str(caught.value)
    assert client.saved == before
    assert actions(cyberark_emulator) == ["Answer", "StartOOB"]


def test_picking_the_running_mechanism_again_keeps_the_cooldown(
    login: Login, cyberark_emulator: CyberArkEmulator, clock: Clock
) -> None:
    """Selecting the running SMS mechanism again would StartOOB again: held to the resend
    cooldown, no CyberArk call; after it, allowed."""
    client = sms_pending(login)
    before = client.saved
    sms = pick(client.view, "SMS")
    clock.advance(12.0)
    with pytest.raises(ResendTooSoon):
        client.send("select_second_factor", factor=sms)
    assert client.saved == before
    assert actions(cyberark_emulator) == ["Answer", "StartOOB"]
    clock.advance(18.0)
    assert client.send("select_second_factor", factor=sms).state == "OobPending"
    assert actions(cyberark_emulator) == ["Answer", "StartOOB", "StartOOB"]


def test_resend_of_a_push_and_number_matching(
    login: Login, cyberark_emulator: CyberArkEmulator, clock: Clock
) -> None:
    """A push is sent again too (bob: passwordless push with number matching), with the new
    number to match."""
    client = login("bob")
    view = client.send("submit_first_factor")
    assert view.state == "OobPending"
    assert view.challenge is not None and view.challenge.resend_at is not None
    clock.advance(31.0)
    view = client.send("resend")
    assert view.state == "OobPending" and view.challenge is not None
    number = view.challenge.number_to_match
    assert number is not None
    cyberark_emulator.approve("bob", number=number)
    assert client.send("poll").state == "Completed"


def test_a_qr_code_or_authenticator_app_offers_no_resend(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """Nothing was sent to the user for OATH (an authenticator app) or QR: no resend offered,
    and one sent anyway is refused without a call."""
    client = login("grace")
    client.send("submit_first_factor", answer="grace-password")
    view = client.send("select_second_factor", factor="token")
    assert view.state == "OobPending"
    assert view.challenge is not None and view.challenge.resend_at is None
    assert "resend" not in usable_events(CyberArkFlow, view)
    calls = len(cyberark_emulator.calls_to(ADVANCE))
    with pytest.raises(UsageError, match="sent nothing that can be sent again"):
        client.send("resend")
    assert len(cyberark_emulator.calls_to(ADVANCE)) == calls


def test_the_throttle_counts_a_resend_as_a_send(
    cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, clock: Clock
) -> None:
    """With two sends an hour for the user, StartOOB and one resend pass; the next resend
    is Throttled before CyberArk is asked."""
    throttle = Throttle(sends_per_user="2/hour", send_cooldown="100/second")
    config = config_for(cyberark_emulator)
    flow = CyberArkFlow.start(
        config=config, user="alice", transport=recorder, clock=clock, throttle=throttle
    )
    flow.send("submit_first_factor", answer="alice-password")
    flow.send("select_second_factor", factor="sms")
    clock.advance(30.0)
    flow.send("resend")
    clock.advance(30.0)
    with pytest.raises(Throttled) as caught:
        flow.send("resend")
    assert not isinstance(caught.value, ResendTooSoon)
    assert caught.value.action == "send"
    assert actions(cyberark_emulator) == ["Answer", "StartOOB", "RetryOOB"]


def test_resend_refused_by_cyberark_ends_the_package(
    login: Login, cyberark_emulator: CyberArkEmulator, clock: Clock
) -> None:
    """A RetryOOB CyberArk answers with its generic failure ends Failed(rejected) with a
    detail that says to start again, as any failed send does (the package is dead)."""
    client = sms_pending(login)
    cyberark_emulator.faults.inject("wrong_shape", path=ADVANCE, body=GENERIC_FAILURE)
    clock.advance(30.0)
    view = client.send("resend")
    assert view.state == "Failed"
    assert view.failure == "rejected"
    assert view.failure_detail is not None and "Start again" in view.failure_detail


# -- local code-format checks -------------------------------------------------------------


@pytest.mark.parametrize("typed", ["12345", "123456789", "12a456", "١٢٣٤٥٦"])
def test_a_malformed_oath_code_costs_no_attempt(
    login: Login, cyberark_emulator: CyberArkEmulator, typed: str
) -> None:
    """An OATH code must be 6 to 8 digits (RFC 4226 section 5.3): a wrong length, a letter
    or non-ASCII digits are refused locally; CyberArk sees no Answer and the package lives
    on, so the right code still completes."""
    client = login("grace")
    client.send("submit_first_factor", answer="grace-password")
    client.send("select_second_factor", factor="token")
    before = client.saved
    calls = len(cyberark_emulator.calls_to(ADVANCE))
    with pytest.raises(InvalidInput, match="6 to 8 digits") as caught:
        client.send("submit_response", answer=typed)
    assert typed not in str(caught.value)
    assert "nothing was sent" in str(caught.value)
    assert client.saved == before
    assert len(cyberark_emulator.calls_to(ADVANCE)) == calls
    code = cyberark_emulator.last_code("grace")
    assert client.send("submit_response", answer=code).state == "Completed"


# -- no state without a way forward --------------------------------------------------------


@pytest.mark.parametrize(
    ("mechanisms", "says"),
    [
        ([UserMechanism("U2F")], "security key"),
        ([UserMechanism("SMS", enrolled=False)], "not enrolled"),
        ([UserMechanism("U2F"), UserMechanism("EMAIL", enrolled=False)], "not enrolled"),
    ],
)
def test_a_second_challenge_with_nothing_usable_ends_failed_saying_why(
    login: Login,
    cyberark_emulator: CyberArkEmulator,
    mechanisms: list[UserMechanism],
    says: str,
) -> None:
    """After the password, a challenge of only a U2F key and/or unenrolled mechanisms ends
    Failed(unavailable) with a detail naming why: no AwaitingSecondFactor with an empty list
    and only Cancel."""
    cyberark_emulator.add_user("ivan", password="ivan-password", challenges=[["UP"], mechanisms])
    client = login("ivan")
    view = client.send("submit_first_factor", answer="ivan-password")
    assert view.state == "Failed"
    assert view.failure == "unavailable"
    assert view.failure_detail is not None and says in view.failure_detail
    assert "administrator" in view.failure_detail
    assert actions(cyberark_emulator) == ["Answer"]


def test_a_first_challenge_of_only_a_security_key_ends_at_the_start(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """A first challenge with only a U2F key used to land on a page whose "Send the
    request" reloaded it; now the flow starts ended, saying why, and nothing else is sent."""
    cyberark_emulator.add_user("judy", challenges=[[UserMechanism("U2F")]])
    client = login("judy")
    view = client.view
    assert view.state == "Failed"
    assert view.failure == "unavailable"
    assert view.failure_detail is not None and "security key" in view.failure_detail
    assert actions(cyberark_emulator) == []


def test_an_unusable_mechanism_beside_a_usable_one_is_offered_as_unavailable(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    cyberark_emulator.add_user(
        "kate",
        password="kate-password",
        challenges=[["UP"], [UserMechanism("U2F"), UserMechanism("EMAIL", enrolled=False), "SMS"]],
    )
    client = login("kate")
    view = client.send("submit_first_factor", answer="kate-password")
    assert view.state == "AwaitingSecondFactor"
    by_kind = {choice.kind: choice for choice in view.choices}
    assert not by_kind["security_key"].supported
    assert by_kind["security_key"].detail is not None
    assert "security key" in by_kind["security_key"].detail
    email = next(c for c in view.choices if c.label.startswith("Email"))
    assert not email.supported and email.detail is not None and "not enrolled" in email.detail
    assert usable_events(CyberArkFlow, view) == ("select_second_factor",)


@pytest.mark.allow_dead_end_views
def test_the_view_check_finds_a_page_with_only_cancel() -> None:
    """The check the suite runs on every view: the old dead end (AwaitingSecondFactor, an
    empty or all-unsupported list, no challenge) is a problem; a page with a choice is not."""
    dead = FlowView(
        flow_id="f",
        provider="cyberark",
        state="AwaitingSecondFactor",
        version=1,
        deadline=0.0,
        choices=(Choice(id="u2f", kind="security_key", label="Key", supported=False),),
    )
    problems = view_problems(CyberArkFlow, dead)
    assert [p.check for p in problems] == ["view-way-forward"]
    alive = FlowView(
        flow_id="f",
        provider="cyberark",
        state="AwaitingSecondFactor",
        version=1,
        deadline=0.0,
        choices=(Choice(id="sms", kind="otp", label="SMS"),),
    )
    assert view_problems(CyberArkFlow, alive) == []


def test_resend_over_both_drivers(
    cyberark_emulator: CyberArkEmulator, clock: Clock, driver: Driver
) -> None:
    """The same RetryOOB step over the sync driver (requests) and the async one (httpx)."""
    config = config_for(cyberark_emulator)
    transport = driver.recorder()
    flow = driver.start(CyberArkFlow, config=config, user="alice", transport=transport, clock=clock)
    driver.send(flow, "submit_first_factor", answer="alice-password")
    driver.send(flow, "select_second_factor", factor="sms")
    clock.advance(30.0)
    assert driver.send(flow, "resend").state == "OobPending"
    assert actions(cyberark_emulator)[-1] == "RetryOOB"
    code = cyberark_emulator.last_code("alice")
    assert driver.send(flow, "submit_response", answer=code).state == "Completed"
