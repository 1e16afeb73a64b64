"""The Entrust flow end to end, over real HTTP to the emulator, one fresh context per step.

Every test runs twice (the ``driver`` fixture): over the sync driver (requests) and over the
async one (httpx)."""

from __future__ import annotations

import threading
import time

import pytest

from mfa_fsm import EntrustConfig, EntrustFlow, EventNotAllowed, InvalidInput
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.testing.entrust import DEMO_KBA, DEMO_TEMP_ACCESS_CODE, EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.stateless import Driver, StatelessClient

CLIENT_IP = "198.51.100.7"


def config_for(emulator: EntrustEmulator, **overrides: object) -> EntrustConfig:
    settings: dict[str, object] = {
        "base_url": emulator.base_url,
        "application_id": emulator.application_id,
        "client_ip": CLIENT_IP,
        "poll_interval": 0.0,
    }
    settings.update(overrides)
    return EntrustConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def login(entrust_emulator: EntrustEmulator, recorder: SecretRecorder, driver: Driver):
    def start(user_id: str = "jsmith", **overrides: object) -> StatelessClient:
        config = config_for(entrust_emulator, **overrides)
        flow = driver.start(
            EntrustFlow, config=config, verified_user=VerifiedUser(user_id), transport=recorder
        )
        return StatelessClient(flow, driver=driver, config=config, transport=recorder)

    return start


def through_first_factor(client: StatelessClient) -> None:
    view = client.send("submit_first_factor")
    assert view.state == "AwaitingSecondFactor"


def test_external_plus_otp_by_sms(login, entrust_emulator: EntrustEmulator) -> None:
    """EXTERNAL then OTP delivered by SMS completes with the final token and the user's name."""
    client = login()
    assert client.view.state == "AwaitingFirstFactor"
    offered = {choice.id: choice for choice in client.view.choices}
    assert {"TOKENPUSH", "TOKEN", "OTP", "KBA"} <= offered.keys()
    assert "SMS" in offered["OTP"].deliveries
    through_first_factor(client)
    view = client.send("select_second_factor", factor="OTP", delivery="SMS")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None and view.challenge.delivery == "SMS"
    otp = entrust_emulator.last_otp("jsmith")
    view = client.send("submit_response", answer=otp)
    assert view.state == "Completed"
    assert view.result is not None
    assert view.result.display_name == "John Smith"
    assert view.result.token
    assert client.view.version == 3


def test_every_call_carries_client_ip(login, entrust_emulator: EntrustEmulator) -> None:
    """clientIp is sent on every call when configured (risk rules need it)."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKEN")
    client.send("submit_response", answer=entrust_emulator.token_code("jsmith"))
    bodies = [call.body for call in entrust_emulator.calls if call.path.startswith("/api/")]
    assert len(bodies) == 4
    assert all(body and body.get("clientIp") == CLIENT_IP for body in bodies)


def test_external_plus_token(login, entrust_emulator: EntrustEmulator) -> None:
    """EXTERNAL then a soft-token code completes."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKEN")
    view = client.send("submit_response", answer=entrust_emulator.token_code("jsmith"))
    assert view.state == "Completed"


def test_external_plus_kba(login, entrust_emulator: EntrustEmulator) -> None:
    """KBA shows the IdP's questions and completes with one answer per question."""
    client = login()
    through_first_factor(client)
    view = client.send("select_second_factor", factor="KBA")
    assert view.challenge is not None and view.challenge.questions
    answers = [DEMO_KBA[question] for question in view.challenge.questions]
    view = client.send("submit_response", answers=answers)
    assert view.state == "Completed"


def test_external_plus_grid_and_temp_access_code(login, entrust_emulator: EntrustEmulator) -> None:
    """GRID shows cell names and accepts their values; a temporary access code works too."""
    client = login()
    through_first_factor(client)
    view = client.send("select_second_factor", factor="GRID")
    assert view.challenge is not None and len(view.challenge.cells) >= 2
    view = client.send("submit_response", answer=entrust_emulator.expected_response("jsmith"))
    assert view.state == "Completed"

    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TEMP_ACCESS_CODE")
    assert client.send("submit_response", answer=DEMO_TEMP_ACCESS_CODE).state == "Completed"


def test_push_approved(login, entrust_emulator: EntrustEmulator) -> None:
    """TOKENPUSH polls NO_RESPONSE until the user approves, then completes."""
    client = login()
    through_first_factor(client)
    view = client.send("select_second_factor", factor="TOKENPUSH")
    assert view.state == "OobPending"
    assert view.next_poll_at is not None
    assert client.send("poll").state == "OobPending"
    assert client.send("poll").state == "OobPending"
    entrust_emulator.approve_push("jsmith")
    view = client.send("poll")
    assert view.state == "Completed"
    assert entrust_emulator.poll_count("jsmith") == 3


def test_push_approved_from_another_thread_while_polling(
    login, entrust_emulator: EntrustEmulator
) -> None:
    """Polling sees an approval made concurrently, as from the user's phone."""
    client = login(poll_interval=0.05)
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    threading.Timer(0.2, entrust_emulator.approve_push, args=("jsmith",)).start()
    deadline = time.monotonic() + 5
    while client.view.state == "OobPending" and time.monotonic() < deadline:
        time.sleep(0.05)
        client.send("poll")
    assert client.view.state == "Completed"


def test_push_denied(login, entrust_emulator: EntrustEmulator) -> None:
    """A push the user declines (IDaaS status CANCEL) ends Failed(denied)."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    entrust_emulator.deny_push("jsmith")
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "denied")


def test_push_no_transaction_is_expired_not_denied(
    login, entrust_emulator: EntrustEmulator
) -> None:
    """``no_transaction`` says IDaaS no longer holds the push, not that the user refused it:
    Failed(expired) with "start again", never counted as a denial."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    entrust_emulator.deny_push("jsmith", reply="no_transaction")
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert "start again" in (view.failure_detail or "")


def test_idp_push_lifetime_shorter_than_ours_ends_expired(
    login, entrust_emulator: EntrustEmulator
) -> None:
    """IDaaS's own push lifetime ends before the flow's: the poll gets ``no_transaction``
    from the emulator's real expiry and the flow ends Failed(expired), not denied."""
    entrust_emulator.push_lifetime = 0.2
    try:
        client = login(push_lifetime=300.0)
        through_first_factor(client)
        client.send("select_second_factor", factor="TOKENPUSH")
        time.sleep(0.3)
        view = client.send("poll")
    finally:
        entrust_emulator.push_lifetime = 300.0
    assert (view.state, view.failure) == ("Failed", "expired")
    last = entrust_emulator.calls[-1]
    assert last.status == 400 and last.path.endswith("/complete")


def test_push_flagged_as_suspicious(login, entrust_emulator: EntrustEmulator) -> None:
    """A push the user reports (CONCERN) ends Failed(denied) and says it was reported."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    entrust_emulator.flag_push("jsmith")
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "denied")
    assert view.failure_detail is not None and "suspicious" in view.failure_detail


def test_push_times_out(login, entrust_emulator: EntrustEmulator) -> None:
    """After the push deadline a poll ends Failed(expired) and cancels the push at IDaaS."""
    client = login(push_lifetime=0.3)
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    time.sleep(0.35)
    polls_before = entrust_emulator.poll_count("jsmith")
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    cancels = [c for c in entrust_emulator.calls if c.body and c.body.get("cancel") is True]
    assert len(cancels) == 1
    assert entrust_emulator.poll_count("jsmith") == polls_before


def test_push_shows_number_to_match(login, entrust_emulator: EntrustEmulator) -> None:
    """A push with a mutual challenge shows the number the user must match."""
    client = login("pushmc")
    through_first_factor(client)
    view = client.send("select_second_factor", factor="TOKENPUSH")
    assert view.challenge is not None
    assert view.challenge.number_to_match == entrust_emulator.push_mutual_challenge("pushmc")
    assert view.challenge.number_to_match


def test_poll_before_next_poll_at_calls_nothing(login, entrust_emulator: EntrustEmulator) -> None:
    """A poll before next_poll_at answers from the snapshot without calling the IdP."""
    client = login(poll_interval=60.0)
    through_first_factor(client)
    view = client.send("select_second_factor", factor="TOKENPUSH")
    version = view.version
    calls = len(entrust_emulator.calls)
    view = client.send("poll")
    assert view.state == "OobPending"
    assert view.version == version
    assert len(entrust_emulator.calls) == calls


def test_cancel_while_push_pending(login, entrust_emulator: EntrustEmulator) -> None:
    """Cancel during a push ends Failed(cancelled) and tells IDaaS to drop the push."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    view = client.send("cancel")
    assert (view.state, view.failure) == ("Failed", "cancelled")
    assert any(c.body and c.body.get("cancel") is True for c in entrust_emulator.calls)
    with pytest.raises(EventNotAllowed):
        client.send("poll")


def test_another_selection_carries_the_current_token(
    login, entrust_emulator: EntrustEmulator
) -> None:
    """Once a factor is chosen, picking another ("try another way") selects it with the
    challenge's token: IDaaS rotated the first factor's at the first select."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKENPUSH")
    held = client.restore().snapshot().context.token
    view = client.send("select_second_factor", factor="TOKEN")
    assert view.state == "SecondFactorSelected"
    assert entrust_emulator.calls[-1].body["authToken"] == held


def test_low_risk_completes_at_first_factor(login) -> None:
    """When risk rules need no second factor, EXTERNAL/complete finishes the login."""
    client = login("lowrisk")
    view = client.send("submit_first_factor")
    assert view.state == "Completed"
    assert view.result is not None and view.result.token


def test_password_and_second_factor_with_otp(login, entrust_emulator, recorder) -> None:
    """PASSWORD_AND_SECONDFACTOR: password first, then OTP, all on that authenticator's path."""
    recorder.add("Passw0rd!")
    client = login("pwuser")
    assert client.view.challenge is not None and client.view.challenge.kind == "password"
    view = client.send("submit_first_factor", answer="Passw0rd!")
    assert view.state == "AwaitingSecondFactor"
    client.send("select_second_factor", factor="OTP")
    view = client.send("submit_response", answer=entrust_emulator.last_otp("pwuser"))
    assert view.state == "Completed"
    paths = {c.path for c in entrust_emulator.calls if "authenticate/" in c.path}
    assert all("PASSWORD_AND_SECONDFACTOR" in path for path in paths)


def test_wrong_password_then_right(login, recorder) -> None:
    """A wrong password stays in AwaitingFirstFactor, marked rejected; the right one proceeds."""
    recorder.add("Passw0rd!", "not-it-at-all")
    client = login("pwuser")
    view = client.send("submit_first_factor", answer="not-it-at-all")
    assert view.state == "AwaitingFirstFactor"
    assert view.challenge is not None and view.challenge.rejected
    assert client.send("submit_first_factor", answer="Passw0rd!").state == "AwaitingSecondFactor"


def test_wrong_otp_then_right(login, entrust_emulator: EntrustEmulator) -> None:
    """A wrong OTP keeps SecondFactorSelected with one attempt fewer; the right one completes."""
    client = login()
    through_first_factor(client)
    before = client.send("select_second_factor", factor="OTP").challenge
    assert before is not None and before.attempts_left == 5
    view = client.send("submit_response", answer="00000000")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None and view.challenge.rejected
    assert view.challenge.attempts_left == 4
    view = client.send("submit_response", answer=entrust_emulator.last_otp("jsmith"))
    assert view.state == "Completed"


def test_lockout_after_repeated_wrong_codes(login, entrust_emulator: EntrustEmulator) -> None:
    """Repeated wrong codes end Failed(locked) once IDaaS locks the authenticator."""
    client = login()
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKEN")
    for _ in range(entrust_emulator.lockout_count - 1):
        assert client.send("submit_response", answer="11111111").state == "SecondFactorSelected"
    view = client.send("submit_response", answer="11111111")
    assert (view.state, view.failure) == ("Failed", "locked")


def test_expired_token_fails_before_any_call(recorder: SecretRecorder, driver: Driver) -> None:
    """Once the IdP token's expiry has passed, the next event ends Failed(expired), no call."""
    with EntrustEmulator(session_lifetime=0.5) as emulator:
        config = config_for(emulator)
        flow = driver.start(
            EntrustFlow, config=config, verified_user=VerifiedUser("jsmith"), transport=recorder
        )
        client = StatelessClient(flow, driver=driver, config=config, transport=recorder)
        through_first_factor(client)
        time.sleep(0.6)
        calls = len(emulator.calls)
        view = client.send("select_second_factor", factor="OTP")
        assert (view.state, view.failure) == ("Failed", "expired")
        assert len(emulator.calls) == calls


def test_bearer_authorization_form(login, entrust_emulator: EntrustEmulator) -> None:
    """The Bearer form of the Authorization header works as well as the bare token."""
    client = login(bearer=True)
    through_first_factor(client)
    client.send("select_second_factor", factor="TOKEN")
    view = client.send("submit_response", answer=entrust_emulator.token_code("jsmith"))
    assert view.state == "Completed"
    headers = [c.headers.get("authorization", "") for c in entrust_emulator.calls]
    assert any(h.startswith("Bearer ") for h in headers)


def test_authenticator_the_user_lacks_is_refused(login, entrust_emulator) -> None:
    """Selecting a factor the IdP did not offer is InvalidInput, with no IdP call."""
    client = login("pwuser")
    client.send("submit_first_factor", answer="Passw0rd!")
    calls = len(entrust_emulator.calls)
    saved = client.saved
    with pytest.raises(InvalidInput) as info:
        client.send("select_second_factor", factor="GRID")
    assert info.value.field == "factor"
    assert client.saved == saved
    assert len(entrust_emulator.calls) == calls
