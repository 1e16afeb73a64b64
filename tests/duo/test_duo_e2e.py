"""The Duo flow end to end, over real HTTP to the emulator, each step restored from JSON.

Every test runs twice (the ``driver`` fixture): over the sync driver (requests) and over the
async one (httpx)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from mfa_fsm.core.errors import EventNotAllowed, IdpError, InvalidInput, TransportError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.core.snapshot import FlowView, Snapshot
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.stateless import Driver, StatelessClient

CLIENT_IP = "198.51.100.7"
PHONE = "DPFZRS9FB0D46QFTM899"

Login = Callable[..., "AtAddress"]


class AtAddress(StatelessClient):
    """A stateless client whose every step comes from the end user at ``client_ip``, as a
    web application passes ``request.remote_addr`` with each ``send``."""

    def __init__(self, flow: DuoFlow, *, client_ip: str | None = CLIENT_IP, **settings: object):
        super().__init__(flow, **settings)
        self.client_ip = client_ip

    def send(self, event: str, **data: object) -> FlowView:
        data.setdefault("client_ip", self.client_ip)
        return super().send(event, **data)


class Clock:
    """The flow's clock: it ticks 10 ms per reading and is moved by hand for longer waits.

    The emulator keeps real time, which its check of each request's signed Date needs.
    """

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


@pytest.fixture
def duo_emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator(lockout_count=3) as emulator:
        yield emulator


def config_for(emulator: DuoEmulator, **overrides: object) -> DuoConfig:
    creds = emulator.credentials
    settings: dict[str, object] = {
        "credentials": DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
        "base_url": emulator.base_url,
        "poll_interval": 0.0,
    }
    settings.update(overrides)
    return DuoConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def login(
    duo_emulator: DuoEmulator, recorder: SecretRecorder, clock: Clock, driver: Driver
) -> Login:
    def start(user_id: str = "jsmith", **overrides: object) -> AtAddress:
        config = config_for(duo_emulator, **overrides)
        flow = driver.start(
            DuoFlow,
            config=config,
            verified_user=VerifiedUser(user_id, checked_by="the test's password check"),
            client_ip=CLIENT_IP,
            transport=recorder,
            clock=clock,
        )
        return AtAddress(flow, driver=driver, config=config, transport=recorder, clock=clock)

    return start


def to_picker(client: StatelessClient) -> None:
    assert client.view.state == "AwaitingFirstFactor"
    view = client.send("submit_first_factor")
    assert view.state == "AwaitingSecondFactor"


# -- preauth -------------------------------------------------------------------------------


def test_preauth_offers_each_device_capability(login: Login, duo_emulator: DuoEmulator) -> None:
    """``auth`` offers push, call and SMS per device, and one typed-passcode choice."""
    client = login()
    assert duo_emulator.calls == []  # start calls nothing: the app's first factor comes first
    to_picker(client)
    offered = {choice.id: choice for choice in client.view.choices}
    assert list(offered) == [f"push:{PHONE}", f"phone:{PHONE}", f"sms:{PHONE}", "passcode"]
    assert offered[f"push:{PHONE}"].kind == "push"
    assert offered[f"phone:{PHONE}"].kind == "call"
    assert offered[f"sms:{PHONE}"].deliveries == ("SMS",)
    assert offered[f"push:{PHONE}"].label == "Duo Push to iOS (XXX-XXX-0100)"


def test_preauth_allow_completes_without_second_factor(login: Login) -> None:
    """``allow`` completes with no second factor."""
    client = login("trusted")
    view = client.send("submit_first_factor")
    assert view.state == "Completed"
    assert view.result is not None
    assert view.result.user_id == "trusted"


def test_preauth_deny_fails_rejected(login: Login) -> None:
    """``deny`` ends ``Failed(rejected)`` with Duo's reason."""
    view = login("blocked").send("submit_first_factor")
    assert (view.state, view.failure) == ("Failed", "rejected")
    assert view.failure_detail is not None
    assert "Duo refused" in view.failure_detail


def test_unenrolled_user_gets_the_enrolment_link(login: Login) -> None:
    """``enroll`` ends ``Failed(rejected)`` but hands the page the enrolment URL."""
    view = login("newuser").send("submit_first_factor")
    assert (view.state, view.failure) == ("Failed", "rejected")
    (link,) = view.choices
    assert (link.kind, link.supported) == ("enroll", False)
    assert link.detail is not None
    assert link.detail.startswith("https://api-emulator.duosecurity.test/portal?code=")


# -- push and phone ------------------------------------------------------------------------


def start_push(client: StatelessClient) -> None:
    to_picker(client)
    view = client.send("select_second_factor", factor=f"push:{PHONE}")
    assert view.state == "OobPending"
    assert view.challenge is not None
    assert not view.challenge.accepts_code


def test_push_approved(login: Login, duo_emulator: DuoEmulator) -> None:
    """A push waits, shows Duo's status message, and completes when approved."""
    client = login()
    start_push(client)
    view = client.send("poll")
    assert view.state == "OobPending"
    assert view.challenge is not None
    assert view.challenge.prompt == "Pushed a login request to your device..."
    duo_emulator.answer("jsmith", "approve")
    view = client.send("poll")
    assert view.state == "Completed"
    assert view.result is not None
    assert view.result.user_id == "jsmith"
    assert "txid" not in Snapshot.from_json(client.saved).to_json()


@pytest.mark.parametrize(
    ("answer", "failure", "detail"),
    [
        ("deny", "denied", "declined"),
        ("fraud", "denied", "fraudulent"),
        ("timeout", "expired", "in time"),
    ],
)
def test_push_denied_fraud_or_timed_out(
    login: Login, duo_emulator: DuoEmulator, answer: str, failure: str, detail: str
) -> None:
    """A denial and a fraud report end ``denied``; Duo's timeout ends ``expired``."""
    client = login()
    start_push(client)
    duo_emulator.answer("jsmith", answer)  # type: ignore[arg-type]
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", failure)
    assert view.failure_detail is not None
    assert detail in view.failure_detail


def test_phone_call(login: Login, duo_emulator: DuoEmulator) -> None:
    """A phone call shows Duo's progress (dialling, answered) and completes when approved."""
    client = login("callme")
    to_picker(client)
    (choice,) = client.view.choices
    view = client.send("select_second_factor", factor=choice.id)
    assert view.state == "OobPending"
    assert view.challenge is not None
    assert view.challenge.kind == "call"
    view = client.send("poll")
    assert view.challenge is not None
    assert view.challenge.prompt == "Dialing XXX-XXX-0199..."
    view = client.send("poll")
    assert view.challenge is not None
    assert "Answered" in view.challenge.prompt
    duo_emulator.answer("callme", "approve")
    assert client.send("poll").state == "Completed"


def test_poll_before_next_poll_at_calls_nothing(
    login: Login, duo_emulator: DuoEmulator, clock: Clock
) -> None:
    """A poll before ``next_poll_at`` answers from the snapshot without calling Duo."""
    client = login(poll_interval=5.0)
    start_push(client)
    calls = len(duo_emulator.calls)
    view = client.send("poll")
    assert view.state == "OobPending"
    assert len(duo_emulator.calls) == calls
    clock.now += 5
    client.send("poll")
    assert len(duo_emulator.calls) == calls + 1


def test_push_past_the_flow_deadline_expires_without_a_call(
    login: Login, duo_emulator: DuoEmulator, clock: Clock
) -> None:
    """Past the push lifetime any event ends ``Failed(expired)`` and calls nothing."""
    client = login(push_lifetime=30.0)
    start_push(client)
    calls = len(duo_emulator.calls)
    clock.now += 31
    view = client.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert len(duo_emulator.calls) == calls


def test_throttled_poll_backs_off_and_changes_nothing(
    login: Login, duo_emulator: DuoEmulator, clock: Clock
) -> None:
    """A 429 on a poll raises a transient error with a back-off and leaves the flow as it was."""
    client = login(poll_interval=1.0, retry=RetryPolicy(attempts=1))
    start_push(client)
    clock.now += 1
    before = client.saved
    duo_emulator.faults.inject("throttled", path="/auth_status", times=2)
    with pytest.raises(IdpError) as caught:
        client.send("poll")
    assert (caught.value.status, caught.value.error_code) == (429, "42901")
    assert client.saved == before
    first_wait = caught.value.retry_after
    assert first_wait is not None
    assert first_wait >= 1.0
    clock.now += 3
    with pytest.raises(IdpError) as caught:
        client.send("poll")
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > first_wait  # the wait grows with the outage
    clock.now += caught.value.retry_after
    duo_emulator.answer("jsmith", "approve")
    assert client.send("poll").state == "Completed"


def test_throttled_poll_honours_retry_after(
    login: Login, duo_emulator: DuoEmulator, clock: Clock
) -> None:
    """Duo's ``Retry-After`` on a 429 wins over the computed back-off."""
    client = login(poll_interval=1.0, retry=RetryPolicy(attempts=1))
    start_push(client)
    clock.now += 1
    duo_emulator.faults.inject("throttled", path="/auth_status", retry_after=9)
    with pytest.raises(IdpError) as caught:
        client.send("poll")
    assert caught.value.retry_after == 9.0


def test_short_429_burst_on_a_poll_is_retried_within_the_step(
    login: Login, duo_emulator: DuoEmulator
) -> None:
    """The client retries a safe poll through a brief 429 burst (the default retry policy)."""
    client = login()
    start_push(client)
    duo_emulator.answer("jsmith", "approve")
    duo_emulator.faults.inject("throttled", path="/auth_status", times=2)
    assert client.send("poll").state == "Completed"
    assert [c.status for c in duo_emulator.calls_to("/auth_status")] == [429, 429, 200]


# -- SMS and passcodes ---------------------------------------------------------------------


def test_sms_passcodes_then_wrong_then_right(login: Login, duo_emulator: DuoEmulator) -> None:
    """SMS sends passcodes; a wrong one stays for another try, a sent one completes."""
    client = login()
    to_picker(client)
    view = client.send("select_second_factor", factor=f"sms:{PHONE}")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None
    assert view.challenge.delivery == "SMS"
    assert "XXX-XXX-0100" in view.challenge.prompt
    assert duo_emulator.sms_count("jsmith") == 1
    view = client.send("submit_response", answer="1111111")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None
    assert view.challenge.rejected
    code = duo_emulator.sms_passcodes("jsmith")[0]
    view = client.send("submit_response", answer=code)
    assert view.state == "Completed"


def test_typed_passcode(login: Login) -> None:
    """A passcode from Duo Mobile or a token completes; choosing it calls nothing."""
    client = login()
    to_picker(client)
    view = client.send("select_second_factor", factor="passcode")
    assert view.state == "SecondFactorSelected"
    view = client.send("submit_response", answer=DEMO_PASSCODE)
    assert view.state == "Completed"


def test_wrong_passcodes_lock_the_user_out(login: Login) -> None:
    """Duo's ``locked_out`` ends ``Failed(locked)``."""
    client = login("tokenonly")
    to_picker(client)
    client.send("select_second_factor", factor="passcode")
    for _ in range(2):
        assert client.send("submit_response", answer="999999").state == "SecondFactorSelected"
    view = client.send("submit_response", answer="999999")
    assert (view.state, view.failure) == ("Failed", "locked")


def test_malformed_passcode_is_refused_before_any_call(
    login: Login, duo_emulator: DuoEmulator
) -> None:
    """A passcode that is not digits is InvalidInput; Duo is not called, the flow unchanged."""
    client = login()
    to_picker(client)
    client.send("select_second_factor", factor="passcode")
    calls, before = len(duo_emulator.calls), client.saved
    with pytest.raises(InvalidInput) as caught:
        client.send("submit_response", answer="abc123")
    assert caught.value.field == "answer"
    assert (len(duo_emulator.calls), client.saved) == (calls, before)


def test_factor_not_offered_is_refused(login: Login) -> None:
    """A factor that preauth did not offer is InvalidInput listing the offered ones."""
    client = login("callme")
    to_picker(client)
    with pytest.raises(InvalidInput) as caught:
        client.send("select_second_factor", factor=f"push:{PHONE}")
    assert caught.value.field == "factor"


# -- signatures, IP, cancel, secrets -------------------------------------------------------


def test_bad_signature_is_an_error_and_changes_nothing(
    duo_emulator: DuoEmulator, recorder: SecretRecorder, clock: Clock, driver: Driver
) -> None:
    """A wrong secret key gets Duo's 401 40103; the flow stays where it was."""
    good = config_for(duo_emulator)
    bad = config_for(
        duo_emulator,
        credentials=DuoCredentials(
            good.credentials.integration_key, "w" * 40, good.credentials.api_hostname
        ),
    )
    flow = driver.start(
        DuoFlow,
        config=bad,
        verified_user=VerifiedUser("jsmith"),
        client_ip=CLIENT_IP,
        transport=recorder,
        clock=clock,
    )
    client = AtAddress(flow, driver=driver, config=bad, transport=recorder, clock=clock)
    before = client.saved
    with pytest.raises(IdpError) as caught:
        client.send("submit_first_factor")
    assert (caught.value.status, caught.value.error_code) == (401, "40103")
    assert "w" * 40 not in str(caught.value)
    assert client.saved == before
    client.settings["config"] = good  # the application fixes its keys: the same step works
    assert client.send("submit_first_factor").state == "AwaitingSecondFactor"


def test_every_call_carries_the_end_user_ip(login: Login, duo_emulator: DuoEmulator) -> None:
    """``ipaddr`` is on every /preauth and /auth; /auth_status takes none (Duo's parameters)."""
    client = login()
    start_push(client)
    client.send("poll")
    sent = [c for c in duo_emulator.calls if c.path in ("/auth/v2/preauth", "/auth/v2/auth")]
    assert len(sent) == 2
    assert all(call.body and call.body["ipaddr"] == CLIENT_IP for call in sent)


def test_malformed_client_ip_is_refused_at_start(
    duo_emulator: DuoEmulator, recorder: SecretRecorder, driver: Driver
) -> None:
    """A client IP that is not an address is InvalidInput and no flow exists."""
    with pytest.raises(InvalidInput) as caught:
        driver.start(
            DuoFlow,
            config=config_for(duo_emulator),
            verified_user=VerifiedUser("jsmith"),
            client_ip="x.y",
            transport=recorder,
        )
    assert caught.value.field == "client_ip"


def test_cancel_from_every_waiting_state(login: Login) -> None:
    """``cancel`` ends ``Failed(cancelled)`` and the ended flow takes no event."""
    client = login()
    start_push(client)
    view = client.send("cancel")
    assert (view.state, view.failure) == ("Failed", "cancelled")
    with pytest.raises(EventNotAllowed):
        client.send("poll")


def test_secret_key_is_never_in_a_snapshot_or_repr(login: Login, duo_emulator: DuoEmulator) -> None:
    """The secret key is in no snapshot, view or repr; the txid is in no repr."""
    client = login()
    start_push(client)
    key = duo_emulator.credentials.secret_key
    flow = client.restore()
    texts = [client.saved, repr(flow.snapshot()), repr(flow.view()), repr(flow.config)]
    assert all(key not in text for text in texts)
    txid = flow.snapshot().context.txid
    assert txid
    assert txid not in repr(flow.snapshot().context)


def test_dropped_poll_backs_off_and_changes_nothing(
    login: Login, duo_emulator: DuoEmulator, clock: Clock
) -> None:
    """A dropped connection on a poll is a TransportError with a back-off; nothing changes."""
    client = login(poll_interval=1.0, retry=RetryPolicy(attempts=1))
    start_push(client)
    clock.now += 1
    before = client.saved
    duo_emulator.faults.inject("drop", path="/auth_status")
    with pytest.raises(TransportError) as caught:
        client.send("poll")
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= 1.0
    assert client.saved == before


def test_malformed_flow_id_is_refused_at_start(
    duo_emulator: DuoEmulator, recorder: SecretRecorder, driver: Driver
) -> None:
    """A flow id that is not an identifier is InvalidInput."""
    with pytest.raises(InvalidInput) as caught:
        driver.start(
            DuoFlow,
            config=config_for(duo_emulator),
            verified_user=VerifiedUser("jsmith"),
            flow_id="a b",
            transport=recorder,
        )
    assert caught.value.field == "flow_id"
