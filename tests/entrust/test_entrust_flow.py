"""The Entrust flow against scripted replies: exact requests, and errors that change nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from mfa_fsm import (
    EntrustConfig,
    EntrustFlow,
    EventNotAllowed,
    HttpResponse,
    IdpError,
    IdpReplyError,
    InvalidInput,
    MfaError,
    SnapshotError,
    TransportError,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.retry import NO_RETRY, RetryPolicy
from mfa_fsm.core.snapshot import SCHEMA_VERSION
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply, network_down

APP = "1111111-111111-111111-11111111"
IP = "1.2.3.4"
#: Retries are off by default here so that each scripted reply answers exactly one call;
#: the retry tests below switch them on.
CONFIG = EntrustConfig(
    retry=NO_RETRY,
    base_url="https://customer.region.trustedauth.com",
    application_id=APP,
    client_ip=IP,
    poll_interval=1.0,
)

# The seed document's exchanges (EXTERNAL plus second factor), tokens shortened.
QUERY_REPLY = {
    "availableSecondFactor": ["TOKENPUSH", "TOKEN", "OTP", "KBA"],
    "userMachineSettings": {
        "machineAuthenticatorEnabled": True,
        "deviceFingerprintRequired": False,
        "attributeExclusions": [],
        "userMachineAuthenticators": [],
    },
    "machineAuthenticator": None,
    "authenticationTypes": ["EXTERNAL"],
    "time": 1521647783740,
    "token": "GQUERYTOKEN0",
    "otpDeliveryInfo": {
        "otpDefaultDelivery": "SMS",
        "availableOTPDelivery": ["SMS", "EMAIL", "VOICE"],
    },
}
EXTERNAL_REPLY = {
    "status": None,
    "firstName": None,
    "lastName": None,
    "authenticationCompleted": False,
    "machineAuthenticator": None,
    "kbaChallenge": None,
    "token": "GO7mOyRuLzfTOXLk",
    "expires": 4102444800000,
    "otpdeliveryType": None,
    "time": 1521648060983,
}
SELECT_OTP_REPLY = {**EXTERNAL_REPLY, "token": "GMITwEPkGILJI", "otpdeliveryType": "SMS"}
COMPLETE_REPLY = {
    **EXTERNAL_REPLY,
    "firstName": "John",
    "lastName": "Smith",
    "authenticationCompleted": True,
    "token": "GENw36RGssBDAmU8",
    "userMachineSettings": None,
}
PENDING = {"status": "NO_RESPONSE", "authenticationCompleted": False, "token": None, "expires": 0}
WRONG = {"errorCode": "invalid_user_response", "errorMessage": "", "parameters": None}

NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def flow_in(
    state: str, *, clock: Clock | None = None, config: EntrustConfig = CONFIG
) -> tuple[EntrustFlow, ScriptedTransport]:
    """An Entrust flow driven to ``state`` with the seed's replies."""
    script = ScriptedTransport([json_reply(QUERY_REPLY)])
    flow = EntrustFlow.start(
        config=config,
        verified_user=VerifiedUser("jsmith"),
        transport=script,
        clock=clock or Clock(),
    )
    if state != "AwaitingFirstFactor":
        script.add(json_reply(EXTERNAL_REPLY))
        flow.send("submit_first_factor")
    if state == "SecondFactorSelected":
        script.add(json_reply(SELECT_OTP_REPLY))
        flow.send("select_second_factor", factor="OTP", delivery="SMS")
    if state == "OobPending":
        script.add(json_reply({**SELECT_OTP_REPLY, "otpdeliveryType": None}))
        flow.send("select_second_factor", factor="TOKENPUSH")
    assert flow.state == state
    return flow, script


def test_seed_exchanges_are_sent_exactly() -> None:
    """Each call carries exactly the fields and headers of the seed's documented exchanges."""
    flow, script = flow_in("SecondFactorSelected")
    script.add(json_reply(COMPLETE_REPLY))
    view = flow.send("submit_response", answer="123456789")
    assert view.state == "Completed"
    query, external, select, complete = script.requests
    assert (query.path, query.json) == (
        "/api/web/v2/authentication/users",
        {"userId": "jsmith", "applicationId": APP, "clientIp": IP},
    )
    assert "Authorization" not in query.headers
    assert external.path == "/api/web/v1/authentication/users/authenticate/EXTERNAL/complete"
    assert external.json == {"applicationId": APP, "clientIp": IP}
    assert external.headers["Authorization"] == "GQUERYTOKEN0"
    assert select.path == "/api/web/v2/authentication/users/authenticate/OTP"
    assert select.json == {
        "applicationId": APP,
        "clientIp": IP,
        "authToken": "GO7mOyRuLzfTOXLk",
        "otpDeliveryType": "SMS",
    }
    assert "Authorization" not in select.headers
    assert complete.path == "/api/web/v1/authentication/users/authenticate/OTP/complete"
    assert complete.json == {"applicationId": APP, "response": "123456789", "clientIp": IP}
    assert complete.headers["Authorization"] == "GMITwEPkGILJI"
    assert all(r.url == CONFIG.base_url + r.path for r in script.requests)


def test_query_without_token_selects_external_first() -> None:
    """When the query returns no token, EXTERNAL is selected to obtain one (the guide's gap)."""
    script = ScriptedTransport([json_reply({**QUERY_REPLY, "token": None})])
    flow = EntrustFlow.start(
        config=CONFIG, verified_user=VerifiedUser("jsmith"), transport=script, clock=Clock()
    )
    script.add(json_reply({**EXTERNAL_REPLY, "token": "GSELECTEXT"}), json_reply(EXTERNAL_REPLY))
    flow.send("submit_first_factor")
    select, complete = script.requests[1:]
    assert select.path.endswith("/authenticate/EXTERNAL")
    assert complete.headers["Authorization"] == "GSELECTEXT"


def test_pending_poll_keeps_the_select_token() -> None:
    """A NO_RESPONSE reply carries token null; the held token is never replaced by it."""
    flow, script = flow_in("OobPending")
    token = flow.snapshot().context.token
    flow.clock.now += 1  # type: ignore[attr-defined]
    script.add(json_reply(PENDING))
    assert flow.send("poll").state == "OobPending"
    assert flow.snapshot().context.token == token
    assert script.requests[-1].json == {"applicationId": APP, "clientIp": IP}


def test_unknown_authenticators_are_shown_as_unsupported() -> None:
    """Authenticators mfa_fsm does not know are listed but cannot be selected."""
    script = ScriptedTransport(
        [json_reply({**QUERY_REPLY, "availableSecondFactor": ["OTP", "HOLOGRAM", "PASSKEY"]})]
    )
    flow = EntrustFlow.start(
        config=CONFIG, verified_user=VerifiedUser("jsmith"), transport=script, clock=Clock()
    )
    supported = {c.id: c.supported for c in flow.view().choices}
    assert supported == {"OTP": True, "HOLOGRAM": False, "PASSKEY": False}


def test_otp_delivery_type_spelled_either_way() -> None:
    """otpdeliveryType and otpDeliveryType are both read."""
    flow, script = flow_in("AwaitingSecondFactor")
    reply = {**SELECT_OTP_REPLY, "otpdeliveryType": None, "otpDeliveryType": "EMAIL"}
    script.add(json_reply(reply))
    view = flow.send("select_second_factor", factor="OTP")
    assert view.challenge is not None and view.challenge.delivery == "EMAIL"


# -- a failed call changes nothing, at every transition ----------------------------------

TRANSITIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("AwaitingFirstFactor", "submit_first_factor", {}),
    ("AwaitingSecondFactor", "select_second_factor", {"factor": "OTP"}),
    ("SecondFactorSelected", "submit_response", {"answer": "12345678"}),
    ("OobPending", "poll", {}),
]

FAULTS: dict[str, Callable[[], Any]] = {
    "refused connection": network_down,
    "HTTP 500": lambda: HttpResponse(500, {}, b"Internal Server Error"),
    "HTTP 429": lambda: HttpResponse(429, {"Retry-After": "7"}, b""),
    "HTML page": lambda: HttpResponse(200, {"Content-Type": "text/html"}, b"<html>down</html>"),
    "empty body": lambda: HttpResponse(200, {}, b""),
    "JSON list": lambda: json_reply(["not", "an", "object"]),
    "wrong field type": lambda: json_reply({"authenticationCompleted": "yes", "token": 7}),
    "unknown error": lambda: json_reply({"errorCode": "mystery", "errorMessage": "x"}, 403),
    "error without ErrorInfo": lambda: json_reply({"oops": True}, 400),
}


@pytest.mark.parametrize(("state", "event", "data"), TRANSITIONS, ids=[t[1] for t in TRANSITIONS])
@pytest.mark.parametrize("fault", FAULTS)
def test_failed_call_changes_nothing(
    state: str, event: str, data: dict[str, Any], fault: str
) -> None:
    """A network failure or bad reply raises a typed error and leaves the snapshot as it was."""
    flow, script = flow_in(state)
    flow.clock.now += 5  # type: ignore[attr-defined]  # past next_poll_at
    before = flow.snapshot().to_json()
    script.add(FAULTS[fault]())
    with pytest.raises(MfaError) as info:
        flow.send(event, **data)
    assert isinstance(info.value, TransportError | IdpError)
    assert flow.snapshot().to_json() == before
    assert "GMITwEPkGILJI" not in str(info.value) and "12345678" not in str(info.value)


def test_transient_error_carries_retry_after() -> None:
    """HTTP 429 with Retry-After becomes a transient IdpError saying how long to wait."""
    flow, script = flow_in("AwaitingSecondFactor")
    script.add(HttpResponse(429, {"Retry-After": "7"}, b""))
    with pytest.raises(IdpError) as info:
        flow.send("select_second_factor", factor="OTP")
    assert info.value.transient and info.value.retry_after == 7.0


def test_retry_after_a_fault_continues_the_flow() -> None:
    """The same event sent again after the fault clears moves the flow on."""
    flow, script = flow_in("SecondFactorSelected")
    script.add(network_down(), json_reply(COMPLETE_REPLY))
    with pytest.raises(TransportError):
        flow.send("submit_response", answer="12345678")
    assert flow.send("submit_response", answer="12345678").state == "Completed"


RETRYING = attrs.evolve(CONFIG, retry=RetryPolicy(attempts=3, first_delay=0.0, max_delay=0.0))


@pytest.mark.parametrize("fault", ["refused connection", "HTTP 500", "HTTP 429"])
def test_poll_is_retried_within_the_step(fault: str) -> None:
    """A poll is safe to repeat: a transient failure is retried inside the same step."""
    flow, script = flow_in("OobPending", config=RETRYING)
    flow.clock.now += 5  # type: ignore[attr-defined]
    failure = FAULTS[fault]()
    if isinstance(failure, HttpResponse) and failure.status == 429:
        failure = HttpResponse(429, {}, b"")  # no Retry-After: the policy's own back-off
    script.add(failure, json_reply(COMPLETE_REPLY))
    assert flow.send("poll").state == "Completed"
    assert [r.path for r in script.requests[-2:]] == [script.requests[-1].path] * 2


def test_poll_retries_stop_at_the_attempt_limit() -> None:
    """After the policy's attempts, the last transient error propagates, flow unchanged."""
    flow, script = flow_in("OobPending", config=RETRYING)
    flow.clock.now += 5  # type: ignore[attr-defined]
    before = flow.snapshot()
    script.add(network_down(), network_down(), network_down())
    with pytest.raises(TransportError):
        flow.send("poll")
    assert flow.snapshot() == before
    assert not script.replies


@pytest.mark.parametrize(
    ("state", "event", "data"),
    [
        ("AwaitingFirstFactor", "submit_first_factor", {}),
        ("AwaitingSecondFactor", "select_second_factor", {"factor": "OTP"}),
        ("SecondFactorSelected", "submit_response", {"answer": "12345678"}),
    ],
)
def test_answers_and_challenges_are_never_retried(
    state: str, event: str, data: dict[str, Any]
) -> None:
    """A call that starts a challenge or submits an answer is made once, even if it fails."""
    flow, script = flow_in(state, config=RETRYING)
    calls = len(script.requests)
    script.add(HttpResponse(503, {}, b""), json_reply(COMPLETE_REPLY))
    with pytest.raises(IdpError):
        flow.send(event, **data)
    assert len(script.requests) == calls + 1


def test_query_is_retried() -> None:
    """The authenticator query is read-only, so a transient failure is retried."""
    script = ScriptedTransport([network_down(), json_reply(QUERY_REPLY)])
    flow = EntrustFlow.start(
        config=RETRYING, verified_user=VerifiedUser("jsmith"), transport=script, clock=Clock()
    )
    assert flow.state == "AwaitingFirstFactor"
    assert len(script.requests) == 2


def test_success_for_an_answer_without_completion_is_refused() -> None:
    """A 200 that neither completes nor refuses the answer is an IdpReplyError."""
    flow, script = flow_in("SecondFactorSelected")
    before = flow.snapshot()
    script.add(json_reply({**SELECT_OTP_REPLY, "token": "GNEW"}))
    with pytest.raises(IdpReplyError):
        flow.send("submit_response", answer="12345678")
    assert flow.snapshot() == before


@pytest.mark.parametrize(
    "stale",
    [
        {**COMPLETE_REPLY, "time": EXTERNAL_REPLY["time"] - 1},  # older than the last reply
        {**COMPLETE_REPLY, "expires": int(NOW * 1000) - 60_000},  # token already expired
    ],
    ids=["older time", "expired token"],
)
def test_stale_success_is_refused(stale: dict[str, Any]) -> None:
    """A success that answers some earlier request is an IdpReplyError, never a login."""
    flow, script = flow_in("SecondFactorSelected")
    before = flow.snapshot()
    script.add(json_reply(stale))
    with pytest.raises(IdpReplyError, match="stale"):
        flow.send("submit_response", answer="12345678")
    assert flow.snapshot() == before


def test_unknown_push_status_is_refused() -> None:
    """A push poll answered with a status the spec does not define is an IdpReplyError."""
    flow, script = flow_in("OobPending")
    flow.clock.now += 5  # type: ignore[attr-defined]
    script.add(json_reply({**PENDING, "status": "MAYBE"}))
    with pytest.raises(IdpReplyError):
        flow.send("poll")
    assert flow.state == "OobPending"


# -- caller misuse ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event"),
    [
        ("AwaitingFirstFactor", "poll"),
        ("AwaitingFirstFactor", "submit_response"),
        ("AwaitingSecondFactor", "submit_first_factor"),
        ("SecondFactorSelected", "poll"),
        ("OobPending", "submit_response"),
        ("AwaitingFirstFactor", "expire"),
        ("AwaitingFirstFactor", "no_such_event"),
    ],
)
def test_event_not_allowed_calls_nothing(state: str, event: str) -> None:
    """An event the state does not take raises EventNotAllowed and makes no IdP call."""
    flow, script = flow_in(state)
    calls = len(script.requests)
    before = flow.snapshot()
    with pytest.raises(EventNotAllowed) as info:
        flow.send(event)
    assert info.value.state == state
    assert "cancel" in info.value.allowed
    assert len(script.requests) == calls
    assert flow.snapshot() == before


def test_final_state_takes_no_event() -> None:
    """Completed and Failed absorb nothing: every event is refused without a call."""
    flow, script = flow_in("AwaitingFirstFactor")
    script.add(json_reply({"authenticationCompleted": False, "status": "CANCEL"}))
    flow.send("cancel")  # ends the IDaaS transaction too: one call
    for event in ("poll", "cancel", "submit_first_factor"):
        with pytest.raises(EventNotAllowed, match="flow has ended"):
            flow.send(event)
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"answer": ""}, "answer"),
        ({"answer": "   "}, "answer"),
        ({"answer": "1" * 65}, "answer"),
        ({"answer": "12\n34"}, "answer"),
        ({"answer": "1234' OR 1=1"}, "answer"),
        ({"answer": 12345678}, "answer"),
        ({}, "answer"),
        ({"answer": "1234", "answers": ["a"]}, "answers"),
        ({"answer": "1234", "extra": "x"}, "extra"),
    ],
)
def test_bad_code_is_refused_before_any_call(data: dict[str, Any], field: str) -> None:
    """Empty, oversize, non-string or malformed codes raise InvalidInput with no IdP call."""
    flow, script = flow_in("SecondFactorSelected")
    calls = len(script.requests)
    before = flow.snapshot()
    with pytest.raises(InvalidInput) as info:
        flow.send("submit_response", **data)
    assert info.value.field == field
    assert len(script.requests) == calls
    assert flow.snapshot() == before
    assert "1234" not in str(info.value)


def test_external_takes_no_password() -> None:
    """EXTERNAL's first factor was checked outside IDaaS, so a password is refused."""
    flow, _ = flow_in("AwaitingFirstFactor")
    with pytest.raises(InvalidInput, match="answer"):
        flow.send("submit_first_factor", answer="hunter22")


def test_unknown_delivery_is_refused() -> None:
    """An OTP delivery the IdP did not offer is refused."""
    flow, _ = flow_in("AwaitingSecondFactor")
    with pytest.raises(InvalidInput, match="delivery"):
        flow.send("select_second_factor", factor="OTP", delivery="PIGEON")


@pytest.mark.parametrize("factor", ["Otp", "OTP/../x", "", "A" * 41])
def test_malformed_factor_name_is_refused(factor: str) -> None:
    """A factor name that is not an authenticator name never reaches a URL."""
    flow, _ = flow_in("AwaitingSecondFactor")
    with pytest.raises(InvalidInput):
        flow.send("select_second_factor", factor=factor)


# -- snapshots -------------------------------------------------------------------------


def test_snapshot_round_trips_exactly_and_restores_without_calls() -> None:
    """to_json/from_json round-trips; restoring makes no call and keeps every field."""
    flow, script = flow_in("OobPending")
    text = flow.snapshot().to_json()
    restored = EntrustFlow.restore(text, config=CONFIG, transport=script, clock=Clock())
    assert restored.snapshot() == flow.snapshot()
    assert restored.snapshot().to_json() == text
    assert len(script.requests) == 3


def test_secrets_are_not_in_reprs() -> None:
    """Tokens never appear in the repr of a snapshot, view or result."""
    flow, script = flow_in("SecondFactorSelected")
    script.add(json_reply(COMPLETE_REPLY))
    flow.send("submit_response", answer="123456789")
    text = repr(flow.snapshot()) + repr(flow.view()) + repr(flow.snapshot().context)
    for secret in ("GQUERYTOKEN0", "GO7mOyRuLzfTOXLk", "GMITwEPkGILJI", "GENw36RGssBDAmU8"):
        assert secret not in text
    assert flow.view().result is not None and flow.view().result.token == "GENw36RGssBDAmU8"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda text: text[: len(text) // 2],
        lambda text: text.replace('"SecondFactorSelected"', '"Nowhere"'),
        lambda text: text.replace('"entrust"', '"okta"'),
        lambda text: text.replace(f'"schema":{SCHEMA_VERSION}', '"schema":99'),
        lambda text: text.replace('"version":2', '"version":"2"'),
        lambda text: text.replace('"version":2', '"version":-2'),
        lambda text: text.replace('"user_id":"jsmith"', '"user_id":"jsmith","admin":true'),
        lambda text: "[]",
        lambda text: "",
    ],
)
def test_tampered_snapshot_is_refused(mangle: Callable[[str], str]) -> None:
    """A truncated, edited or foreign snapshot raises SnapshotError."""
    flow, script = flow_in("SecondFactorSelected")
    text = flow.snapshot().to_json()
    assert '"version":2' in text
    with pytest.raises(SnapshotError):
        EntrustFlow.restore(mangle(text), config=CONFIG, transport=script)


def test_snapshot_of_another_provider_is_refused() -> None:
    """A snapshot restored with the wrong provider's class is refused."""
    flow, script = flow_in("AwaitingFirstFactor")
    data = json.loads(flow.snapshot().to_json())

    class OtherFlow(EntrustFlow):
        provider = "other-entrust"

    with pytest.raises(SnapshotError, match="provider"):
        OtherFlow.restore(json.dumps(data), config=CONFIG, transport=script)


def test_deadline_turns_any_event_into_expired_without_a_call() -> None:
    """After the deadline any event ends Failed(expired); outside a challenge, no IdP call."""
    clock = Clock()
    flow, script = flow_in("AwaitingSecondFactor", clock=clock)
    clock.now = flow.snapshot().deadline + 1
    calls = len(script.requests)
    view = flow.send("select_second_factor", factor="OTP")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert len(script.requests) == calls


def test_expiry_cancel_failure_still_expires() -> None:
    """If the best-effort cancel at expiry fails, the flow still ends Failed(expired)."""
    clock = Clock()
    flow, script = flow_in("OobPending", clock=clock)
    clock.now = flow.snapshot().deadline
    script.add(network_down())
    view = flow.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")


def test_transition_log_line(leak_guard: list[dict[str, object]]) -> None:
    """Each step logs one event with the flow's log reference (never its id), provider, event,
    source, target, path, status."""
    flow, script = flow_in("SecondFactorSelected")
    script.add(json_reply(COMPLETE_REPLY))
    flow.send("submit_response", answer="123456789")
    line = [e for e in leak_guard if e["event"] == "mfa_fsm.transition"][-1]
    assert line["flow_ref"] == flow_ref(flow.flow_id)
    assert flow.flow_id not in repr(line)
    assert line["provider"] == "entrust"
    assert line["flow_event"] == "submit_response"
    assert (line["source"], line["target"]) == ("SecondFactorSelected", "Completed")
    assert line["idp_path"] == "/api/web/v1/authentication/users/authenticate/OTP/complete"
    assert line["idp_status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["version"] == 3
