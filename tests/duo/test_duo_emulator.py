"""Tests of the Duo Auth API emulator, over real HTTP, through mfa_fsm's own Duo client.

Calls that the client would never make (bad signatures, version 2 form bodies, missing
parameters) are sent with ``requests`` directly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from mfa_fsm.core.errors import IdpError, IdpReplyError, TransportError
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.core.transport import RequestsTransport
from mfa_fsm.duo.client import DuoClient, DuoConfig
from mfa_fsm.duo.signing import (
    DuoCredentials,
    authorization_header,
    canonicalize,
    http_date,
    signature,
)
from mfa_fsm.testing import DuoEmulator, EmulatorServer
from mfa_fsm.testing._server import UNKNOWN_ENUM_VALUE
from mfa_fsm.testing.duo import DEMO_PASSCODE
from tests.support.stateless import Driven

IP = "203.0.113.9"
PHONE = "DPFZRS9FB0D46QFTM899"


class Clock:
    """A clock the emulator and the client share, moved by hand instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[DuoEmulator]:
    with DuoEmulator(lockout_count=3, sms_batch_size=4) as emulator:
        emulator.clock = clock
        yield emulator


def client_for(emu: DuoEmulator, clock: Clock, **changes: Any) -> DuoClient:
    credentials = DuoCredentials(
        changes.pop("integration_key", emu.credentials.integration_key),
        changes.pop("secret_key", emu.credentials.secret_key),
        emu.credentials.api_hostname,
    )
    config = DuoConfig(credentials, base_url=emu.base_url, retry=RetryPolicy(attempts=1))
    client = DuoClient(config, clock=clock)
    client.client_ip = changes.pop("client_ip", IP)  # the end user's address (``ipaddr``)
    return Driven(client, RequestsTransport())  # type: ignore[return-value]  # same methods, driven


@pytest.fixture
def duo(emu: DuoEmulator, clock: Clock) -> DuoClient:
    return client_for(emu, clock)


def raw_post(
    emu: DuoEmulator,
    path: str,
    params: dict[str, str],
    *,
    date: str,
    digest: str = "sha512",
    secret_key: str | None = None,
) -> requests.Response:
    """A version 2 request (form-encoded body), as Duo's documentation describes it."""
    creds = emu.credentials
    canonical = canonicalize("POST", creds.api_hostname, path, params, date, version=2)
    sig = signature(secret_key or creds.secret_key, canonical, digest=digest)  # type: ignore[arg-type]
    headers = {
        "Date": date,
        "Authorization": authorization_header(creds.integration_key, sig),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return requests.post(emu.base_url + path, data=urlencode(params), headers=headers, timeout=5)


def fail(reply: requests.Response, status: int, code: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert (body["stat"], body["code"]) == ("FAIL", code)
    return body


# -- signatures --------------------------------------------------------------------------------


def test_check_and_ping(emu: DuoEmulator, duo: DuoClient, clock: Clock) -> None:
    """``/check`` accepts the client's version 5 signature; ``/ping`` needs none."""
    assert duo.check().time == int(clock.now)
    ping = requests.get(emu.base_url + "/auth/v2/ping", timeout=5).json()
    assert ping == {"stat": "OK", "response": {"time": int(clock.now)}}


@pytest.mark.parametrize("digest", ["sha1", "sha512"])
def test_version_2_form_requests_are_accepted(emu: DuoEmulator, clock: Clock, digest: str) -> None:
    """A form-encoded request signed as Duo's documentation shows (HMAC-SHA1 or -SHA512)."""
    reply = raw_post(
        emu,
        "/auth/v2/preauth",
        {"username": "jsmith", "ipaddr": IP},
        date=http_date(clock.now),
        digest=digest,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"]["result"] == "auth"


def test_wrong_secret_key_is_401_40103(emu: DuoEmulator, clock: Clock) -> None:
    """A request signed with another secret key gets Duo's invalid-signature error."""
    wrong = client_for(emu, clock, secret_key="x" * 40)
    with pytest.raises(IdpError) as caught:
        wrong.preauth("jsmith")
    assert (caught.value.status, caught.value.error_code) == (401, "40103")
    assert emu.credentials.secret_key not in str(caught.value)


def test_unknown_integration_key_is_401_40102(emu: DuoEmulator, clock: Clock) -> None:
    """An integration key the application does not have gets 40102."""
    with pytest.raises(IdpError) as caught:
        client_for(emu, clock, integration_key="DIXXXXXXXXXXXXXXXXXX").check()
    assert caught.value.error_code == "40102"


def test_missing_credentials_is_401_40101(emu: DuoEmulator) -> None:
    """No Authorization or Date header, or not HTTP Basic, gets 40101."""
    fail(requests.get(emu.base_url + "/auth/v2/check", timeout=5), 401, 40101)
    for authorization in ("Bearer abc", "Basic %%%", "Basic w6k=", "Basic ZGk="):
        headers = {"Date": http_date(emu.clock()), "Authorization": authorization}
        reply = requests.get(emu.base_url + "/auth/v2/check", headers=headers, timeout=5)
        fail(reply, 401, 40101)
    headers = {"Date": http_date(emu.clock()), "Authorization": "Basic \u00e9t\u00e9".encode()}
    reply = requests.get(emu.base_url + "/auth/v2/check", headers=headers, timeout=5)
    fail(reply, 401, 40101)


def test_stale_date_is_refused(emu: DuoEmulator, duo: DuoClient, clock: Clock) -> None:
    """A Date further than ``date_tolerance`` from the emulator's clock is refused."""
    emu.clock = lambda: clock.now + emu.date_tolerance + 1
    with pytest.raises(IdpError) as caught:
        duo.check()
    assert caught.value.error_code == "40103"


def test_tampered_body_is_refused(emu: DuoEmulator, clock: Clock) -> None:
    """A body changed after signing (another username) fails the version 5 body hash."""
    date = http_date(clock.now)
    signed = b'{"username":"jsmith"}'
    creds = emu.credentials
    canonical = canonicalize("POST", creds.api_hostname, "/auth/v2/preauth", {}, date, body=signed)
    headers = {
        "Date": date,
        "Authorization": authorization_header(
            creds.integration_key, signature(creds.secret_key, canonical)
        ),
        "Content-Type": "application/json",
    }
    reply = requests.post(
        emu.base_url + "/auth/v2/preauth",
        data=b'{"username":"blocked"}',
        headers=headers,
        timeout=5,
    )
    fail(reply, 401, 40103)


# -- preauth -----------------------------------------------------------------------------------


def test_preauth_auth_lists_devices(emu: DuoEmulator, duo: DuoClient) -> None:
    """An enrolled user gets ``auth`` and every device with its capabilities."""
    reply = duo.preauth("jsmith")
    assert reply.result == "auth"
    phone, token = reply.devices
    assert (phone.device, phone.kind) == (PHONE, "phone")
    assert phone.capabilities == ("auto", "push", "sms", "phone", "mobile_otp")
    assert phone.sms_nextcode is None  # no SMS batch sent yet
    assert (token.kind, token.capabilities) == ("token", ())
    (call,) = emu.calls_to("/preauth")
    assert call.body == {"username": "jsmith", "ipaddr": IP}


@pytest.mark.parametrize(
    ("username", "result"),
    [("trusted", "allow"), ("blocked", "deny"), ("newuser", "enroll"), ("nobody", "enroll")],
)
def test_preauth_results(duo: DuoClient, username: str, result: str) -> None:
    """``allow``, ``deny`` and ``enroll`` (with the portal URL) as the user's policy says."""
    reply = duo.preauth(username)
    assert reply.result == result
    assert (reply.enroll_portal_url is not None) == (result == "enroll")


def test_unknown_user_policy_deny(clock: Clock) -> None:
    """``unknown_user="deny"`` models Duo's "Deny access" new-user policy."""
    with DuoEmulator(unknown_user="deny") as emu:
        emu.clock = clock
        assert client_for(emu, clock).preauth("nobody").result == "deny"


def test_require_ipaddr(clock: Clock) -> None:
    """With ``require_ipaddr`` a call without the end user's IP gets 400 naming ``ipaddr``."""
    with DuoEmulator(require_ipaddr=True) as emu:
        emu.clock = clock
        with pytest.raises(IdpError) as caught:
            client_for(emu, clock, client_ip=None).preauth("jsmith")
        assert (caught.value.status, caught.value.error_code) == (400, "40002")
        assert "ipaddr" in str(caught.value)


# -- push and phone ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "result", "status"),
    [
        ("approve", "allow", "allow"),
        ("deny", "deny", "deny"),
        ("fraud", "deny", "fraud"),
        ("timeout", "deny", "timeout"),
    ],
)
def test_push_answers(
    emu: DuoEmulator, duo: DuoClient, answer: str, result: str, status: str
) -> None:
    """A push waits (``pushed``) until answered; the answer is repeated to later polls."""
    txid = duo.auth_async("push", "jsmith", device=PHONE).txid
    waiting = duo.auth_status(txid)
    assert (waiting.result, waiting.status) == ("waiting", "pushed")
    assert waiting.status_msg
    emu.answer("jsmith", answer)  # type: ignore[arg-type]
    for _ in range(2):
        final = duo.auth_status(txid)
        assert (final.result, final.status) == (result, status)
    assert emu.poll_count("jsmith") == 3
    (call,) = [c for c in emu.calls if c.path == "/auth/v2/auth"]
    assert call.body is not None
    assert call.body["ipaddr"] == IP


def test_push_times_out_after_push_lifetime(emu: DuoEmulator, duo: DuoClient, clock: Clock) -> None:
    """An unanswered push ends ``deny``/``timeout`` after ``push_lifetime`` seconds."""
    txid = duo.auth_async("push", "jsmith").txid
    clock.now += emu.push_lifetime + 1
    final = duo.auth_status(txid)
    assert (final.result, final.status) == ("deny", "timeout")
    with pytest.raises(LookupError):
        emu.answer("jsmith", "approve")


def test_phone_call_reports_calling_then_answered(emu: DuoEmulator, duo: DuoClient) -> None:
    """A call says ``calling`` (with the masked number), then ``answered``, then the outcome."""
    txid = duo.auth_async("phone", "callme").txid
    first = duo.auth_status(txid)
    assert (first.status, first.status_msg) == ("calling", "Dialing XXX-XXX-0199...")
    assert duo.auth_status(txid).status == "answered"
    emu.answer("callme", "approve")
    assert duo.auth_status(txid).result == "allow"


def test_control_route_answers_push(emu: DuoEmulator, duo: DuoClient) -> None:
    """``POST /_emulator/push/{user}/approve`` answers over HTTP; 409 when nothing waits."""
    txid = duo.auth_async("push", "jsmith").txid
    route = emu.base_url + "/_emulator/push/jsmith/"
    assert requests.post(route + "approve", timeout=5).status_code == 200
    assert duo.auth_status(txid).result == "allow"
    assert requests.post(route + "approve", timeout=5).status_code == 409
    assert requests.post(route + "shrug", timeout=5).status_code == 404


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"factor": "push", "device": "DHEKH0JJIYC1LX3AZWO4", "async": "1"}, "device"),
        ({"factor": "push", "device": PHONE, "async": "0"}, "async"),
        ({"factor": "email", "device": PHONE}, "factor"),
        ({"factor": "passcode"}, "passcode"),
        ({"factor": "sms", "device": PHONE, "async": "1"}, "async"),
    ],
)
def test_invalid_auth_parameters(
    emu: DuoEmulator, clock: Clock, params: dict[str, str], detail: str
) -> None:
    """Invalid ``/auth`` parameters get 400 ``40002`` naming the parameter."""
    reply = raw_post(
        emu, "/auth/v2/auth", {"username": "jsmith", **params}, date=http_date(clock.now)
    )
    assert fail(reply, 400, 40002)["message_detail"] == detail


def test_unknown_txid_is_400(duo: DuoClient) -> None:
    """``/auth_status`` with a txid Duo never gave is 400 naming ``txid``."""
    with pytest.raises(IdpError) as caught:
        duo.auth_status("00000000-0000-0000-0000-000000000000")
    assert (caught.value.status, caught.value.error_code) == (400, "40002")


# -- SMS and passcodes -------------------------------------------------------------------------


def test_sms_passcodes_then_wrong_then_right(emu: DuoEmulator, duo: DuoClient) -> None:
    """SMS sends a batch (counted); a wrong code is denied, a sent one works once."""
    sent = duo.auth("sms", "jsmith", device=PHONE)
    assert (sent.result, sent.status) == ("deny", "sent")
    assert emu.sms_count("jsmith") == 1
    codes = emu.sms_passcodes("jsmith")
    assert len(codes) == 4
    assert all(len(code) == 7 and code.isdigit() for code in codes)
    assert duo.preauth("jsmith").devices[0].sms_nextcode == codes[0][0]
    wrong = duo.auth("passcode", "jsmith", passcode="0000000")
    assert (wrong.result, wrong.status) == ("deny", "deny")
    right = duo.auth("passcode", "jsmith", passcode=codes[0])
    assert (right.result, right.status) == ("allow", "allow")
    again = duo.auth("passcode", "jsmith", passcode=codes[0])
    assert again.result == "deny"
    assert emu.sms_passcodes("jsmith") == codes[1:]


def test_new_sms_batch_replaces_the_old(emu: DuoEmulator, duo: DuoClient) -> None:
    """A passcode of an earlier batch no longer works once a new batch is sent."""
    duo.auth("sms", "jsmith")
    old = emu.sms_passcodes("jsmith")
    duo.auth("sms", "jsmith")
    stale = [code for code in old if code not in emu.sms_passcodes("jsmith")]
    assert stale
    assert duo.auth("passcode", "jsmith", passcode=stale[0]).result == "deny"


def test_token_passcode_and_lockout(emu: DuoEmulator, duo: DuoClient) -> None:
    """The token code works; ``lockout_count`` wrong codes in a row lock the user out."""
    assert duo.auth("passcode", "tokenonly", passcode=DEMO_PASSCODE).result == "allow"
    for _ in range(2):
        assert duo.auth("passcode", "tokenonly", passcode="999999").status == "deny"
    locked = duo.auth("passcode", "tokenonly", passcode="999999")
    assert (locked.result, locked.status) == ("deny", "locked_out")
    assert duo.auth("passcode", "tokenonly", passcode=DEMO_PASSCODE).status == "locked_out"
    assert duo.preauth("tokenonly").result == "deny"
    emu.unlock("tokenonly")
    assert duo.auth("passcode", "tokenonly", passcode=DEMO_PASSCODE).result == "allow"


def test_control_routes_read_sms_passcode_and_users(emu: DuoEmulator, duo: DuoClient) -> None:
    """Control routes give SMS codes, the token code and the users (never the secret key)."""
    duo.auth("sms", "jsmith")
    sms = requests.get(emu.base_url + "/_emulator/sms/jsmith", timeout=5).json()
    assert sms == {"username": "jsmith", "passcodes": list(emu.sms_passcodes("jsmith")), "sent": 1}
    code = requests.get(emu.base_url + "/_emulator/passcode/jsmith", timeout=5).json()
    assert code["passcode"] == DEMO_PASSCODE
    users = requests.get(emu.base_url + "/_emulator/users", timeout=5)
    assert {u["username"] for u in users.json()} >= {"jsmith", "newuser"}
    assert emu.credentials.secret_key not in users.text
    assert requests.get(emu.base_url + "/_emulator/sms/nobody", timeout=5).status_code == 409


# -- faults ------------------------------------------------------------------------------------


def test_throttled_fault_is_duo_429_body(emu: DuoEmulator, duo: DuoClient) -> None:
    """``throttled`` answers Duo's documented 429 body; the client sees a transient error."""
    emu.faults.inject("throttled", path="/auth/v2/auth", retry_after=3)
    with pytest.raises(IdpError) as caught:
        duo.auth_async("push", "jsmith")
    error = caught.value
    assert (error.status, error.error_code, error.retry_after) == (429, "42901", 3.0)
    assert error.transient
    assert duo.auth_async("push", "jsmith").txid


@pytest.mark.parametrize("kind", ["html", "empty", "wrong_shape", "unknown_enum"])
def test_malformed_reply_faults_are_reply_errors(
    emu: DuoEmulator, duo: DuoClient, kind: str
) -> None:
    """Junk, empty, wrong-shape and unknown-enum replies raise IdpReplyError."""
    emu.faults.inject(kind, path="/preauth")
    with pytest.raises(IdpReplyError):
        duo.preauth("jsmith")


def test_unknown_enum_adds_an_unknown_capability(emu: DuoEmulator, clock: Clock) -> None:
    """``unknown_enum`` replaces ``result`` and adds a capability no client knows."""
    emu.faults.inject("unknown_enum", path="/preauth")
    reply = raw_post(emu, "/auth/v2/preauth", {"username": "jsmith"}, date=http_date(clock.now))
    response = reply.json()["response"]
    assert response["result"] == UNKNOWN_ENUM_VALUE
    assert all(UNKNOWN_ENUM_VALUE in d["capabilities"] for d in response["devices"])


@pytest.mark.parametrize(("kind", "status"), [("status", 503), ("rate_limit", 429)])
def test_transient_faults_are_transient_errors(
    emu: DuoEmulator, duo: DuoClient, kind: str, status: int
) -> None:
    """A 5xx or a bare 429 (no Duo body) is still a transient IdpError."""
    emu.faults.inject(kind, path="/auth_status")
    txid = duo.auth_async("push", "jsmith").txid
    with pytest.raises(IdpError) as caught:
        duo.auth_status(txid)
    assert (caught.value.status, caught.value.transient) == (status, True)


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_dropped_connection_is_a_transport_error(
    emu: DuoEmulator, duo: DuoClient, kind: str
) -> None:
    """A dropped or reset connection is a TransportError."""
    emu.faults.inject(kind, path="/check")
    with pytest.raises(TransportError):
        duo.check()


def test_unknown_path_is_duo_404(emu: DuoEmulator) -> None:
    """An unknown path gets Duo's 404 envelope."""
    fail(requests.get(emu.base_url + "/auth/v2/nothing", timeout=5), 404, 40401)


# -- secrets -----------------------------------------------------------------------------------


def test_secret_key_is_in_no_repr_call_log_or_sink(emu: DuoEmulator, duo: DuoClient) -> None:
    """The secret key stays out of reprs and the call log, and is in the leak sink."""
    duo.preauth("jsmith")
    key = emu.credentials.secret_key
    assert key not in repr(emu)
    assert key not in repr(emu.credentials)
    assert key not in json.dumps([c.to_dict() for c in emu.calls])
    sink = EmulatorServer.secret_sink
    assert sink is not None  # the suite's leak guard is on
    assert key in sink


def test_passcodes_and_txids_reach_the_leak_sink(emu: DuoEmulator, duo: DuoClient) -> None:
    """SMS codes, typed passcodes and txids are registered as secrets for the leak guard."""
    txid = duo.auth_async("push", "jsmith").txid
    duo.auth("sms", "jsmith")
    duo.auth("passcode", "jsmith", passcode="1234567")
    sink = EmulatorServer.secret_sink
    assert sink is not None
    assert {txid, "1234567", *emu.sms_passcodes("jsmith")} <= sink


def test_basic_header_carries_ikey_not_secret(emu: DuoEmulator, duo: DuoClient) -> None:
    """The wire carries the integration key and an HMAC, never the secret key."""
    duo.check()
    (call,) = emu.calls_to("/check")
    user, _, sig = (
        base64.b64decode(call.headers["authorization"].split()[1]).decode().partition(":")
    )
    assert user == emu.credentials.integration_key
    assert len(sig) == 128  # hex HMAC-SHA512
    assert emu.credentials.secret_key not in json.dumps(call.to_dict())


# -- configuration and odd requests ------------------------------------------------------------


def test_added_user_gets_a_phone_with_every_capability(
    emu: DuoEmulator, duo: DuoClient, clock: Clock
) -> None:
    """``add_user`` with no devices gives one phone that does push, call, SMS and passcodes."""
    emu.add_user("amy")
    (device,) = duo.preauth("amy").devices
    assert device.capabilities == ("auto", "push", "sms", "phone", "mobile_otp")
    assert device.device.startswith("D")
    assert len(device.device) == 20
    with pytest.raises(ValueError, match="preauth"):
        emu.add_user("bad", preauth="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="answer"):
        emu.answer("amy", "shrug")  # type: ignore[arg-type]


def test_auto_factor_pushes_when_it_can(emu: DuoEmulator, clock: Clock) -> None:
    """``factor=auto`` sends a push to a device that can take one, else rings it."""
    date = http_date(clock.now)
    for user, status in (("jsmith", "pushed"), ("callme", "calling")):
        reply = raw_post(
            emu,
            "/auth/v2/auth",
            {"username": user, "factor": "auto", "device": "auto", "async": "1"},
            date=date,
        )
        txid = reply.json()["response"]["txid"]
        creds = emu.credentials
        canonical = canonicalize(
            "GET", creds.api_hostname, "/auth/v2/auth_status", {"txid": txid}, date, version=2
        )
        headers = {
            "Date": date,
            "Authorization": authorization_header(
                creds.integration_key, signature(creds.secret_key, canonical)
            ),
        }
        polled = requests.get(
            emu.base_url + "/auth/v2/auth_status", params={"txid": txid}, headers=headers, timeout=5
        )
        assert polled.json()["response"]["status"] == status


@pytest.mark.parametrize(
    ("params", "detail"),
    [({"factor": "push"}, "username"), ({"username": "nobody", "factor": "push"}, "username")],
)
def test_auth_needs_a_known_user(
    emu: DuoEmulator, clock: Clock, params: dict[str, str], detail: str
) -> None:
    """``/auth`` without a user, or for one Duo does not know, is 400 naming ``username``."""
    reply = raw_post(emu, "/auth/v2/auth", params, date=http_date(clock.now))
    assert fail(reply, 400, 40002)["message_detail"] == detail


def test_auth_for_a_user_policy_denies(duo: DuoClient) -> None:
    """A user whose policy denies gets ``deny`` from ``/auth`` too."""
    reply = duo.auth("passcode", "blocked", passcode=DEMO_PASSCODE)
    assert (reply.result, reply.status) == ("deny", "deny")


def test_unreadable_date_is_refused(emu: DuoEmulator) -> None:
    """A Date that is not an HTTP date cannot be checked: 40103."""
    creds = emu.credentials
    sig = signature(
        creds.secret_key, canonicalize("GET", creds.api_hostname, "/auth/v2/check", {}, "soon")
    )
    headers = {"Date": "soon", "Authorization": authorization_header(creds.integration_key, sig)}
    fail(requests.get(emu.base_url + "/auth/v2/check", headers=headers, timeout=5), 401, 40103)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"username": 7}', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"username=\xff\xfe", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_are_400(emu: DuoEmulator, body: bytes, content_type: str) -> None:
    """A JSON body that is not an object of strings, or a form body that is not UTF-8: 400."""
    reply = requests.post(
        emu.base_url + "/auth/v2/preauth",
        data=body,
        headers={"Content-Type": content_type},
        timeout=5,
    )
    fail(reply, 400, 40002)
