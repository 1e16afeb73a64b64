"""Duo request builders: signed, with the end user's IP, refusing malformed input unsent."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.core.transport import HttpRequest
from mfa_fsm.duo.client import (
    DuoConfig,
    auth_request,
    auth_status_request,
    check_request,
    preauth_request,
)
from mfa_fsm.duo.signing import DuoCredentials, canonicalize, http_date, signature_matches

SKEY = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"  # Duo's documentation placeholder
CONFIG = DuoConfig(DuoCredentials("DIWJ8X6AEYOR5OMC6TQ1", SKEY, "API-xxxxxxxx.duosecurity.com"))
NOW = 1_700_000_000.0


def verify(request: HttpRequest) -> dict[str, str]:
    """Check the request's signature as Duo would, and return its parameters."""
    headers = dict(request.headers)
    assert headers["Date"] == http_date(NOW)
    scheme, _, token = headers["Authorization"].partition(" ")
    ikey, _, sig = base64.b64decode(token).decode().partition(":")
    assert (scheme, ikey) == ("Basic", "DIWJ8X6AEYOR5OMC6TQ1")
    url = urlsplit(request.url)
    assert url.path == request.path
    if request.method == "GET":
        params = dict(parse_qsl(url.query))
        canonical = canonicalize(
            "GET", "api-xxxxxxxx.duosecurity.com", url.path, params, headers["Date"]
        )
        assert request.content is None
    else:
        assert request.content is not None
        assert url.query == ""
        assert headers["Content-Type"] == "application/json"
        params = json.loads(request.content)
        assert request.json == params
        canonical = canonicalize(
            "POST",
            "api-xxxxxxxx.duosecurity.com",
            url.path,
            {},
            headers["Date"],
            body=request.content,
        )
    assert signature_matches(SKEY, canonical, sig)
    return params


def test_default_url_is_https_api_hostname_and_base_url_overrides() -> None:
    """Requests go to ``https://<api_hostname>`` unless ``base_url`` says otherwise."""
    assert (
        check_request(CONFIG, now=NOW).url == "https://API-xxxxxxxx.duosecurity.com/auth/v2/check"
    )
    local = DuoConfig(CONFIG.credentials, base_url="http://127.0.0.1:9/")
    request = check_request(local, now=NOW)
    assert request.url == "http://127.0.0.1:9/auth/v2/check"
    assert verify(request) == {}


def test_preauth_is_signed_json_with_ipaddr() -> None:
    """``/preauth`` carries username and the end user's ``ipaddr`` in a signed JSON body."""
    request = preauth_request(CONFIG, username="jsmith", ipaddr="203.0.113.7", now=NOW)
    assert verify(request) == {"username": "jsmith", "ipaddr": "203.0.113.7"}
    assert request.content == b'{"ipaddr":"203.0.113.7","username":"jsmith"}'


def test_ipaddr_is_normalised_and_optional() -> None:
    """An IPv6 address is normalised; ``None`` leaves ``ipaddr`` out."""
    request = preauth_request(CONFIG, username="u", ipaddr="2001:DB8::0:1", now=NOW)
    assert verify(request)["ipaddr"] == "2001:db8::1"
    assert "ipaddr" not in verify(preauth_request(CONFIG, username="u", ipaddr=None, now=NOW))


def test_push_auth_is_async_with_device_and_ipaddr() -> None:
    """A push is ``async=1`` with the chosen device and the end user's IP."""
    request = auth_request(
        CONFIG,
        factor="push",
        username="jsmith",
        ipaddr="198.51.100.2",
        now=NOW,
        device="DPFZRS9FB0D46QFTM899",
        async_txn=True,
        push_type="Login",
        display_username="John",
    )
    assert verify(request) == {
        "factor": "push",
        "username": "jsmith",
        "async": "1",
        "ipaddr": "198.51.100.2",
        "device": "DPFZRS9FB0D46QFTM899",
        "type": "Login",
        "display_username": "John",
    }


def test_passcode_auth_has_no_device() -> None:
    """A passcode ``/auth`` sends the passcode, not a device; surrounding spaces are cut."""
    request = auth_request(
        CONFIG, factor="passcode", username="u", ipaddr="192.0.2.1", now=NOW, passcode=" 123456 "
    )
    params = verify(request)
    assert params["passcode"] == "123456"
    assert "device" not in params
    assert params["async"] == "0"
    assert "123456" not in repr(request)


def test_auth_status_is_a_signed_get() -> None:
    """``/auth_status`` is a GET with ``txid`` in the query string."""
    request = auth_status_request(CONFIG, txid="45f7c92b-f45f-4862-8545-e0f58e78075a", now=NOW)
    assert request.method == "GET"
    assert verify(request) == {"txid": "45f7c92b-f45f-4862-8545-e0f58e78075a"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"factor": "email"}, "factor"),
        ({"factor": "passcode", "passcode": None}, "passcode"),
        ({"factor": "passcode", "passcode": "12ab56"}, "passcode"),
        ({"factor": "passcode", "passcode": "1" * 17}, "passcode"),
        ({"factor": "push", "device": "../../admin"}, "device"),
        ({"factor": "push", "ipaddr": "not-an-ip"}, "client_ip"),
        ({"factor": "push", "username": " "}, "username"),
    ],
)
def test_malformed_input_is_refused_without_echo(kwargs: dict[str, object], field: str) -> None:
    """Bad input is an InvalidInput naming the field; the value is never repeated."""
    arguments: dict[str, object] = {"username": "jsmith", "ipaddr": "192.0.2.1", "now": NOW}
    arguments.update(kwargs)
    with pytest.raises(InvalidInput) as caught:
        auth_request(CONFIG, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    for key, value in kwargs.items():
        if key != "factor" and isinstance(value, str) and len(value) > 3:
            assert value not in str(caught.value)


def test_malformed_txid_is_refused() -> None:
    """A txid that could not come from Duo never reaches a query string."""
    with pytest.raises(InvalidInput):
        auth_status_request(CONFIG, txid="a&b=c", now=NOW)


def test_secret_key_never_in_repr_of_config_or_request() -> None:
    """The secret key is in no repr of the config or of a signed request."""
    request = preauth_request(CONFIG, username="jsmith", ipaddr=None, now=NOW)
    for text in (repr(CONFIG), repr(CONFIG.credentials), repr(request)):
        assert SKEY not in text
