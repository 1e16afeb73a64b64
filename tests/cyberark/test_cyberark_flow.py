"""The CyberArk flow against scripted replies: the cases the emulator does not produce."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mfa_fsm import (
    CyberArkConfig,
    CyberArkFlow,
    HttpResponse,
    IdpReplyError,
    UsageError,
)
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply, network_down
from tests.helpers import StatelessClient

CONFIG = CyberArkConfig(
    base_url="https://abc1234.id.cyberark.cloud", tenant_id="ABC1234", poll_interval=0.0
)
NOW = 1_800_000_000.0
SESSION = "3RrrrhXFcUS3UEvl-3wfgMYojGz44P76Or2Ym3zztyM1"


def mechanism(name: str, answer_type: str) -> dict[str, Any]:
    return {
        "Name": name,
        "AnswerType": answer_type,
        "PromptSelectMech": name.title(),
        "PromptMechChosen": f"Use {name}",
        "MechanismId": f"id-{name}",
    }


UP = mechanism("UP", "Text")
OTP = mechanism("OTP", "StartTextOob")


def ok(result: dict[str, Any], cookies: dict[str, str] | None = None) -> HttpResponse:
    body = json.dumps({"success": True, "Result": result}).encode()
    return HttpResponse(200, {"Content-Type": "application/json"}, body, cookies or {})


def package(*challenges: list[dict[str, Any]], session: str = SESSION) -> dict[str, Any]:
    return {
        "SessionId": session,
        "TenantId": "ABC1234",
        "Summary": "NewPackage",
        "Challenges": [{"Mechanisms": mechanisms} for mechanisms in challenges],
    }


def login_success(**fields: Any) -> dict[str, Any]:
    return {"Summary": "LoginSuccess", "UserId": "uid-1", "DisplayName": "Test", **fields}


def started(*replies: Any, first: HttpResponse | None = None) -> tuple[StatelessClient, Any]:
    transport = ScriptedTransport([first or ok(package([UP], [OTP])), *replies])
    flow = CyberArkFlow.start(config=CONFIG, user="tuser", transport=transport, clock=lambda: NOW)
    return StatelessClient(flow, config=CONFIG, transport=transport, clock=lambda: NOW), transport


def test_cookies_travel_in_the_snapshot() -> None:
    """A cookie set by StartAuthentication is sent back by a later step restored from JSON."""
    client, transport = started(
        ok({"Summary": "StartNextChallenge"}),
        ok({"Summary": "OobPending"}, cookies={"sessdata": "rotated"}),
        ok(login_success(Token="tok"), cookies={".ASPXAUTH": "cookie-value"}),
        first=ok(package([UP], [OTP]), cookies={"sessdata": "first"}),
    )
    client.send("submit_first_factor", answer="pw")
    assert transport.requests[1].headers["Cookie"] == "sessdata=first"
    assert transport.requests[2].headers["Cookie"] == "sessdata=first"
    view = client.send("poll")
    assert transport.requests[3].headers["Cookie"] == "sessdata=rotated"
    assert view.result is not None and view.result.cookies == {".ASPXAUTH": "cookie-value"}


def test_answer_request_is_exactly_the_documented_body() -> None:
    """An Answer sends TenantId, SessionId, MechanismId, Action and Answer, nothing else."""
    client, transport = started(
        ok({"Summary": "StartNextChallenge"}), ok({"Summary": "OobPending"})
    )
    client.send("submit_first_factor", answer="pw")
    assert transport.requests[1].json == {
        "TenantId": "ABC1234",
        "SessionId": SESSION,
        "MechanismId": "id-UP",
        "Action": "Answer",
        "Answer": "pw",
    }
    assert transport.requests[2].json["Action"] == "StartOOB"


def test_failed_automatic_start_offers_the_mechanism() -> None:
    """If the StartOOB that follows an accepted password fails in transit, the step still
    moves on (CyberArk took the password), offering that mechanism to start again."""
    client, _ = started(
        ok({"Summary": "StartNextChallenge"}), network_down(), ok({"Summary": "OobPending"})
    )
    view = client.send("submit_first_factor", answer="pw")
    assert view.state == "AwaitingSecondFactor"
    assert [choice.id for choice in view.choices] == ["id-OTP"]
    assert client.send("select_second_factor", factor="id-OTP").state == "OobPending"


def test_noncommital_success_is_no_login() -> None:
    """NoncommitalSuccess ends Failed(idp_error) with CyberArk's message, never Completed."""
    message = "Your password has been reset. Sign in with the new password."
    client, _ = started(
        ok({"Summary": "NoncommitalSuccess", "ClientMessage": message}), first=ok(package([UP]))
    )
    view = client.send("submit_first_factor", answer="pw")
    assert (view.state, view.failure, view.failure_detail) == ("Failed", "idp_error", message)
    assert view.result is None


def test_refused_request_is_an_idp_error() -> None:
    """success false with Result null (the request itself refused) ends Failed(idp_error)."""
    refused = json_reply({"success": False, "Result": None, "Message": "Missing parameter."})
    client, _ = started(refused)
    view = client.send("submit_first_factor", answer="pw")
    assert (view.state, view.failure) == ("Failed", "idp_error")
    assert client.restore().snapshot().context.session_id is None


@pytest.mark.parametrize(
    ("first", "reply", "event"),
    [
        (package([OTP]), ok(login_success(Token="t")), "submit_first_factor"),
        (package([UP], [OTP]), ok({"Summary": "OobPending"}), "submit_first_factor"),
        (package([UP]), ok({"Summary": "LoginSuccess", "UserId": "u"}), "submit_first_factor"),
        (package([UP]), ok({"Summary": "NewPackage", "Challenges": []}), "submit_first_factor"),
    ],
    ids=[
        "StartOOB-answered-LoginSuccess",
        "OobPending-after-password",
        "login-without-token",
        "empty-new-package",
    ],
)
def test_replies_that_make_no_sense_change_nothing(
    first: dict[str, Any], reply: HttpResponse, event: str
) -> None:
    """A reply the flow cannot act on is IdpReplyError and the snapshot is unchanged."""
    client, _ = started(reply, first=ok(first))
    before = client.saved
    data = (
        {"answer": "pw"}
        if client.view.challenge and client.view.challenge.kind == "password"
        else {}
    )
    with pytest.raises(IdpReplyError):
        client.send(event, **data)
    assert client.saved == before


def test_next_challenge_past_the_package() -> None:
    """StartNextChallenge after the last challenge is IdpReplyError."""
    client, _ = started(ok({"Summary": "StartNextChallenge"}), first=ok(package([UP])))
    with pytest.raises(IdpReplyError, match="past the last challenge"):
        client.send("submit_first_factor", answer="pw")


def test_auth_is_the_token_when_token_is_absent() -> None:
    """Without Result.Token the result's token is Result.Auth."""
    client, _ = started(ok(login_success(Auth="auth-value")), first=ok(package([UP])))
    view = client.send("submit_first_factor", answer="pw")
    assert view.result is not None and view.result.token == "auth-value"
    assert client.restore().snapshot().context.pod_fqdn is None


def test_new_package_may_bring_a_new_session() -> None:
    """A NewPackage's SessionId replaces the held one."""
    client, transport = started(
        ok(package([UP], session="second-session")),
        ok(login_success(Token="t")),
        first=ok(package([UP])),
    )
    assert client.send("submit_first_factor", answer="pw").state == "AwaitingFirstFactor"
    client.send("submit_first_factor", answer="pw")
    assert transport.requests[2].json["SessionId"] == "second-session"


def test_login_success_at_start_completes_at_version_zero() -> None:
    """StartAuthentication answering LoginSuccess (an earlier session) completes at once."""
    client, _ = started(first=ok(login_success(Token="tok")))
    assert (client.view.state, client.view.version) == ("Completed", 0)


def test_federated_user_is_refused_at_start() -> None:
    """A user sent to an external IdP is a UsageError: this flow cannot drive that login."""
    with pytest.raises(UsageError, match="federation"):
        started(first=ok({"IdpRedirectUrl": "https://idp.example/sso", "IdpLoginSessionId": "x"}))


def test_start_without_package_or_login() -> None:
    """A StartAuthentication success with neither package nor login is IdpReplyError."""
    with pytest.raises(IdpReplyError):
        started(first=ok({"Summary": "StartNextChallenge"}))
