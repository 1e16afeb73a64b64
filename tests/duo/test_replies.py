"""Duo reply parsing, fed the Auth API v2 documentation's own example bodies.

The bodies below restate the examples of Duo's Auth API v2 documentation (sections
"/preauth", "/auth", "/auth_status", "/check" and "Response Format"); ids and URLs are the
documentation's placeholders.
"""

from __future__ import annotations

from typing import Any

import pytest

from mfa_fsm.core.errors import IdpError, IdpReplyError
from mfa_fsm.core.transport import HttpResponse
from mfa_fsm.duo.replies import (
    AuthStarted,
    DuoDevice,
    decipher,
    parse_auth,
    parse_auth_started,
    parse_auth_status,
    parse_check,
    parse_preauth,
)
from mfa_fsm.testing import json_reply

PREAUTH_AUTH = {
    "stat": "OK",
    "response": {
        "devices": [
            {
                "capabilities": ["auto", "push", "sms", "phone", "mobile_otp"],
                "device": "DPFZRS9FB0D46QFTM899",
                "display_name": "iOS (XXX-XXX-0100)",
                "name": "",
                "number": "XXX-XXX-0100",
                "type": "phone",
                "sms_nextcode": "2",
            },
            {"device": "DHEKH0JJIYC1LX3AZWO4", "name": "0", "type": "token"},
        ],
        "result": "auth",
        "status_msg": "Account is active",
    },
}
PREAUTH_ENROLL = {
    "stat": "OK",
    "response": {
        "enroll_portal_url": "https://api-3c575aa4.duosecurity.com/portal?code=48bac5d9393fb2c2",
        "result": "enroll",
        "status_msg": "Enroll an authentication device to proceed",
    },
}
AUTH_ALLOW = {
    "stat": "OK",
    "response": {"result": "allow", "status": "allow", "status_msg": "Success. Logging you in..."},
}
AUTH_ASYNC = {"stat": "OK", "response": {"txid": "45f7c92b-f45f-4862-8545-e0f58e78075a"}}
STATUS_WAITING = {
    "stat": "OK",
    "response": {
        "result": "waiting",
        "status": "pushed",
        "status_msg": "Pushed a login request to your phone...",
    },
}
CHECK = {"stat": "OK", "response": {"time": 1357020061}}
FAIL_PARAMS = {
    "stat": "FAIL",
    "code": 40002,
    "message": "Invalid request parameters",
    "message_detail": "username",
}
FAIL_SIGNATURE = {
    "stat": "FAIL",
    "code": 40103,
    "message": "Invalid signature in request credentials",
}
FAIL_RATE = {"stat": "FAIL", "code": 42901, "message": "Too Many Requests"}


def read(body: Any, status: int = 200, path: str = "/auth/v2/preauth") -> Any:
    return decipher(json_reply(body, status), path)


def test_preauth_auth_lists_devices_and_capabilities() -> None:
    """``result: auth`` gives every device with its capabilities, kept in Duo's order."""
    reply = parse_preauth(read(PREAUTH_AUTH))
    assert reply.result == "auth"
    assert reply.status_msg == "Account is active"
    phone, token = reply.devices
    assert phone == DuoDevice(
        device="DPFZRS9FB0D46QFTM899",
        kind="phone",
        capabilities=("auto", "push", "sms", "phone", "mobile_otp"),
        display_name="iOS (XXX-XXX-0100)",
        name="",
        number="XXX-XXX-0100",
        sms_nextcode="2",
    )
    assert phone.label == "iOS (XXX-XXX-0100)"
    assert token.kind == "token"
    assert token.capabilities == ()
    assert token.label == "0"


def test_preauth_enroll_carries_the_portal_url() -> None:
    """``result: enroll`` carries the enrolment URL for the app to show."""
    reply = parse_preauth(read(PREAUTH_ENROLL))
    assert reply.result == "enroll"
    assert reply.enroll_portal_url is not None
    assert reply.enroll_portal_url.startswith("https://api-3c575aa4.duosecurity.com/portal")
    assert reply.devices == ()


@pytest.mark.parametrize("result", ["allow", "deny"])
def test_preauth_allow_and_deny(result: str) -> None:
    """``allow`` and ``deny`` parse with their status message."""
    body = {"stat": "OK", "response": {"result": result, "status_msg": "Policy says so"}}
    reply = parse_preauth(read(body))
    assert reply.result == result
    assert reply.status_msg == "Policy says so"


def test_unknown_capability_and_device_type_are_kept() -> None:
    """Enumerations may gain values (Duo's compatibility note): unknown ones are kept."""
    body = {
        "stat": "OK",
        "response": {
            "result": "auth",
            "devices": [{"device": "DX1", "type": "wearable", "capabilities": ["beam"]}],
        },
    }
    (device,) = parse_preauth(read(body)).devices
    assert (device.kind, device.capabilities) == ("wearable", ("beam",))


@pytest.mark.parametrize(
    "response",
    [
        {"result": "maybe"},
        {},
        {"result": "auth", "devices": [{"type": "phone"}]},
        {"result": "auth", "devices": "DPFZRS9FB0D46QFTM899"},
        {"result": "auth", "devices": [{"device": "D1", "capabilities": "push"}]},
    ],
)
def test_preauth_that_cannot_be_acted_on_is_a_reply_error(response: dict[str, Any]) -> None:
    """An unknown result, a device without id or a wrong type is an IdpReplyError."""
    with pytest.raises(IdpReplyError):
        parse_preauth(read({"stat": "OK", "response": response}))


def test_sync_auth_allow() -> None:
    """A synchronous ``/auth`` answer gives result, status and message."""
    reply = parse_auth(read(AUTH_ALLOW, path="/auth/v2/auth"))
    assert (reply.result, reply.status) == ("allow", "allow")
    assert reply.status_msg == "Success. Logging you in..."


def test_sms_auth_is_deny_with_status_sent() -> None:
    """Sending SMS passcodes answers ``deny``/``sent``: the user must now type one."""
    body = {
        "stat": "OK",
        "response": {"result": "deny", "status": "sent", "status_msg": "New SMS passcodes sent."},
    }
    reply = parse_auth(read(body, path="/auth/v2/auth"))
    assert (reply.result, reply.status) == ("deny", "sent")


def test_async_auth_gives_a_txid_kept_out_of_repr() -> None:
    """``async=1`` answers only a ``txid``, which is not in the repr."""
    started = parse_auth_started(read(AUTH_ASYNC, path="/auth/v2/auth"))
    assert started == AuthStarted(txid="45f7c92b-f45f-4862-8545-e0f58e78075a")
    assert "45f7c92b" not in repr(started)
    with pytest.raises(IdpReplyError):
        parse_auth_started(read({"stat": "OK", "response": {}}, path="/auth/v2/auth"))


def test_auth_status_waiting_and_trusted_device_token_hidden() -> None:
    """``waiting`` parses; a trusted device token is kept out of the repr."""
    waiting = parse_auth_status(read(STATUS_WAITING, path="/auth/v2/auth_status"))
    assert (waiting.result, waiting.status) == ("waiting", "pushed")
    body = {
        "stat": "OK",
        "response": {"result": "allow", "status": "allow", "trusted_device_token": "TDT-SECRET"},
    }
    allowed = parse_auth_status(read(body, path="/auth/v2/auth_status"))
    assert allowed.trusted_device_token == "TDT-SECRET"
    assert "TDT-SECRET" not in repr(allowed)


def test_check_time() -> None:
    """``/check`` gives Duo's clock in epoch seconds."""
    assert parse_check(read(CHECK, path="/auth/v2/check")).time == 1357020061
    with pytest.raises(IdpReplyError):
        parse_check(read({"stat": "OK", "response": {}}, path="/auth/v2/check"))


def test_fail_envelope_is_an_idp_error_with_duo_code() -> None:
    """A 400 ``stat: FAIL`` raises IdpError with Duo's code and the parameter it names."""
    with pytest.raises(IdpError) as caught:
        read(FAIL_PARAMS, 400)
    error = caught.value
    assert type(error) is IdpError
    assert (error.status, error.error_code, error.transient) == (400, "40002", False)
    assert "username" in str(error)


def test_bad_signature_says_what_to_check() -> None:
    """A 401 40103 points at the keys, the hostname and the clock."""
    with pytest.raises(IdpError) as caught:
        read(FAIL_SIGNATURE, 401)
    assert caught.value.error_code == "40103"
    assert "secret key" in str(caught.value)
    assert "clock" in str(caught.value)


def test_rate_limited_is_transient_with_retry_after() -> None:
    """A 429 with Duo's body is a transient IdpError; a Retry-After header is honoured."""
    with pytest.raises(IdpError) as caught:
        decipher(json_reply(FAIL_RATE, 429, {"Retry-After": "7"}), "/auth/v2/auth")
    error = caught.value
    assert (error.status, error.error_code, error.transient) == (429, "42901", True)
    assert error.retry_after == 7.0


@pytest.mark.parametrize("status", [429, 502, 503])
def test_throttle_or_outage_without_duo_body_is_still_transient(status: int) -> None:
    """A proxy's page on 429/5xx is still the transient IdpError the status says."""
    response = HttpResponse(status=status, body=b"<html>busy</html>")
    with pytest.raises(IdpError) as caught:
        decipher(response, "/auth/v2/auth")
    assert caught.value.transient
    assert caught.value.error_code is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"unexpected": True}, 200),
        ({"stat": "OK"}, 200),
        ({"stat": "OK", "response": []}, 200),
        ({"stat": "FAIL"}, 400),
        ({"message": "nope"}, 403),
        ({"stat": "PENDING", "response": {}}, 200),
    ],
)
def test_reply_that_is_not_duo_envelope_is_a_reply_error(body: Any, status: int) -> None:
    """No ``stat``, no ``response`` object, or a FAIL without code is an IdpReplyError."""
    with pytest.raises(IdpReplyError):
        read(body, status)


@pytest.mark.parametrize("body", [b"", b"<html></html>", b"{not json"])
def test_empty_html_or_junk_is_a_reply_error(body: bytes) -> None:
    """Bodies that are not JSON are IdpReplyErrors, as for the other providers."""
    with pytest.raises(IdpReplyError):
        decipher(HttpResponse(status=200, body=body), "/auth/v2/preauth")
