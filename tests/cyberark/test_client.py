"""What the client sends: every request body matches the vendor spec's request schema, with the
native-client header, JSON, and per-flow cookies; and where a PodFqdn leads."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from mfa_fsm import CyberArkConfig, IdpReplyError
from mfa_fsm.core.exchange import drive
from mfa_fsm.cyberark.client import CyberArkClient, pod_url, same_base
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply
from tests.cyberark.conftest import Login
from tests.support.cyberark import pick

START = "/Security/StartAuthentication"
ADVANCE = "/Security/AdvanceAuthentication"

# The requestBody schemas of the two paths in the vendor's OpenAPI spec
# ("Authentication & Authorization", info.version 22.7.201-a104ccbac3), transcribed without
# their descriptions and defaults.
REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    START: {
        "type": "object",
        "properties": {
            "TenantId": {"type": "string"},
            "Version": {"type": "string"},
            "User": {"type": "string"},
        },
        "required": ["Version", "User"],
    },
    ADVANCE: {
        "type": "object",
        "properties": {
            "Action": {"type": "string"},
            "Answer": {"type": "string"},
            "MechanismId": {"type": "string"},
            "SessionId": {"type": "string"},
            "TenantId": {"type": "string"},
            "PersistentLogin": {"type": "boolean"},
        },
        "required": ["Action", "MechanismId", "SessionId"],
    },
}
# The spec names these in the Action description (not as an enum); the flow sends three.
DOCUMENTED_ACTIONS = {"Answer", "StartOOB", "Poll", "ForgotPassword", "RetryOOB"}


def check_request(path: str, body: Any, headers: dict[str, str]) -> None:
    """One recorded request against the spec: schema, documented fields only, headers."""
    schema = REQUEST_SCHEMAS[path]
    jsonschema.validate(body, schema)
    assert set(body) <= set(schema["properties"]), "an undocumented field was sent"
    if path == START:
        assert body["Version"] == "1.0"  # "1.0 is the only supported version"
    else:
        assert body["Action"] in DOCUMENTED_ACTIONS
    assert headers["x-idap-native-client"] == "true"
    assert headers["x-centrify-native-client"] == "true"  # seed 004 StartOOB and Poll
    assert headers["content-type"] == "application/json"


def recorded(emulator: CyberArkEmulator) -> list[tuple[str, Any, dict[str, str]]]:
    """(spec path, body, headers) of every API call the emulator received, pods included."""
    out = []
    for call in emulator.calls:
        path = next((p for p in REQUEST_SCHEMAS if call.path.endswith(p)), None)
        assert path is not None, call.path
        out.append((path, call.body, dict(call.headers)))
    return out


def run_every_scenario(login: Login, emulator: CyberArkEmulator) -> None:
    """Drive each kind of step the flow takes: answers, StartOOB, polls, codes, redirects."""
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    client.send("select_second_factor", factor=pick(client.view, "SMS"))
    client.send("poll")
    client.send("submit_response", answer=emulator.last_code("alice"))
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    client.send("select_second_factor", factor=pick(client.view, "Security Question"))
    client.send("submit_response", answer="Smokey")
    client = login("bob")
    client.send("submit_first_factor")
    emulator.approve("bob")
    client.send("poll")
    client = login("frank")  # pod redirect, then a push started in the same step
    client.send("submit_first_factor", answer="frank-password")
    emulator.deny("frank")
    client.send("poll")
    client = login("erin")  # NewPackage
    client.send("submit_first_factor", answer="erin-password")
    client.send("select_second_factor", factor=pick(client.view, "Email"))
    client.send("submit_response", answer=emulator.last_code("erin"))
    client = login("grace")
    client.send("submit_first_factor", answer="grace-password")
    client.send("select_second_factor", factor=pick(client.view, "Phone Call"))
    emulator.approve("grace")
    client.send("poll")
    client = login("dave")  # deferred failure
    client.send("submit_first_factor", answer="not-dave-password")
    client.send("select_second_factor", factor=pick(client.view, "SMS"))
    client.send("submit_response", answer=emulator.last_code("dave"))


def test_every_request_matches_the_spec(login: Login, cyberark_emulator: CyberArkEmulator) -> None:
    """Each request body of every scenario validates against the spec's requestBody schema
    for its path, sends only documented fields, and carries the native-client header."""
    run_every_scenario(login, cyberark_emulator)
    calls = recorded(cyberark_emulator)
    assert len(calls) > 25
    sent = {body.get("Action") for path, body, _ in calls if path == ADVANCE}
    assert sent == {"Answer", "StartOOB", "Poll"}
    for path, body, headers in calls:
        check_request(path, body, headers)


def test_several_security_questions_are_the_one_documented_exception(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """The spec's own text asks for an object of answers keyed by question Uuid when there are
    several questions, although its schema types Answer as a string; that is the only body
    outside the schema, and only in Answer."""
    client = login("carol")
    client.send("submit_first_factor", answer="carol-password")
    client.send("submit_response", answers=["Beetle", "Teal"])
    *others, (path, body, headers) = recorded(cyberark_emulator)
    for call in others:
        check_request(*call)
    assert isinstance(body["Answer"], dict) and sorted(body["Answer"].values()) == [
        "Beetle",
        "Teal",
    ]
    check_request(path, {**body, "Answer": "(object)"}, headers)


def test_cookies_are_kept_per_flow_and_sent_back() -> None:
    """Cookies a reply sets go back on the next call as a Cookie header; an emptied one is
    dropped; the client keeps nothing between calls."""
    transport = ScriptedTransport(
        [
            json_reply({"success": True, "Result": {"Summary": "OobPending"}}),
        ]
    )
    client = CyberArkClient(CyberArkConfig(base_url="https://t.example/"))
    exchange = client.advance(
        "https://t.example",
        session_id="s",
        mechanism_id="m",
        action="Poll",
        cookies={"sessdata": "abc", "other": "x"},
    )
    reply = drive(exchange, transport)
    assert reply.summary == "OobPending"
    request = transport.requests[0]
    assert request.url == "https://t.example/Security/AdvanceAuthentication"
    assert request.headers["Cookie"] == "sessdata=abc; other=x"
    assert request.headers["X-IDAP-NATIVE-CLIENT"] == "true"
    assert "sessdata" not in repr(request)


@pytest.mark.parametrize(
    ("pod", "scheme", "url"),
    [
        ("aaa0001.my.idaptive.app", "https", "https://aaa0001.my.idaptive.app"),
        ("example.delinea.app/identity", "https", "https://example.delinea.app/identity"),
        ("127.0.0.1:8443/pod2/", "http", "http://127.0.0.1:8443/pod2"),
        ("https://ABC.id.cyberark.cloud", "https", "https://ABC.id.cyberark.cloud"),
    ],
)
def test_pod_url(pod: str, scheme: str, url: str) -> None:
    """A PodFqdn, bare or as a URL of the configured scheme, names the next base URL."""
    assert pod_url(pod, scheme) == url


@pytest.mark.parametrize(
    "pod",
    ["http://downgrade.example", "", "evil.example/x?y=1", "a b.example", "user@host.example"],
)
def test_pod_url_refuses(pod: str) -> None:
    """A scheme other than the configured one, or anything but host[:port][/path], is refused."""
    with pytest.raises(IdpReplyError):
        pod_url(pod, "https")


def test_same_base() -> None:
    """Pods compare by scheme, host, port and path, ignoring case and a trailing slash."""
    assert same_base("https://A.example/x/", "https://a.example/x")
    assert not same_base("https://a.example/x", "https://a.example/y")
