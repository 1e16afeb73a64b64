"""The CyberArk flow against scripted replies: the cases the emulator does not produce."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfa_fsm import (
    CyberArkConfig,
    CyberArkFlow,
    HttpResponse,
    IdpReplyError,
    MfaError,
    Snapshot,
    UsageError,
)
from mfa_fsm.core.retry import NO_RETRY
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply, network_down
from tests.support.cyberark_strategies import responses
from tests.support.stateless import StatelessClient

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


@pytest.mark.parametrize(
    "named",
    [
        {},
        {"User": "tuser@example.com"},
        {"User": "TUser@Example.com"},
        {"User": "t.user@example.com", "EmailAddress": "tuser"},
        {"User": "tuser"},
    ],
    ids=["no-user-named", "login-with-suffix", "any-case", "e-mail-typed", "no-suffix"],
)
def test_login_success_for_this_user_completes(named: dict[str, str]) -> None:
    """A LoginSuccess naming the flow's user (its login, with or without suffix, or e-mail),
    or naming none, completes the flow."""
    client, _ = started(ok(login_success(Token="t", **named)), first=ok(package([UP])))
    assert client.send("submit_first_factor", answer="pw").state == "Completed"


@pytest.mark.parametrize("first", [None, package([UP])], ids=["at-start", "after-answer"])
def test_login_success_for_another_user_is_refused(first: dict[str, Any] | None) -> None:
    """A LoginSuccess naming another user (a replayed reply of another session) is never this
    user's login: IdpReplyError, nothing changes, and the same event can be sent again."""
    replayed = ok(login_success(Token="t", User="mallory@example.com", EmailAddress="m@x.y"))
    if first is None:
        with pytest.raises(IdpReplyError, match="another user"):
            started(first=replayed)
        return
    client, transport = started(replayed, first=ok(first))
    before = client.saved
    with pytest.raises(IdpReplyError, match="another user"):
        client.send("submit_first_factor", answer="pw")
    assert client.saved == before
    transport.add(ok(login_success(Token="t", User="tuser@example.com")))
    assert client.send("submit_first_factor", answer="pw").state == "Completed"


# -- any reply at any step -----------------------------------------------------------------

SQ = {**mechanism("SQ", "Text"), "Question": "Pet?"}
PF = mechanism("PF", "StartOob")
PACKAGES = [package([UP], [OTP]), package([UP, SQ]), package([OTP, PF]), package([UP], [SQ, PF])]
#: the answers a step may get, well-formed, so that sessions get deep between fuzzed ones
PLAUSIBLE = [
    ok({"Summary": "StartNextChallenge"}),
    ok({"Summary": "OobPending"}),
    ok({"Summary": "OobPending", "GeneratedAuthValue": 42}),
    ok(login_success(Token="t")),
    ok(login_success(Token="t", TokenLifetime=3600, User="tuser@example.com")),
    ok(package([OTP, PF], [SQ])),
    json_reply({"success": False, "Result": {"Summary": "Failure"}}),
]
step_replies = st.sampled_from(PLAUSIBLE) | responses


def data_for(flow: CyberArkFlow, event: str) -> dict[str, Any]:
    """Well-formed input for ``event`` in the flow's state (the replies are what is fuzzed)."""
    view = flow.view()
    if event == "select_second_factor":
        offered = [choice.id for choice in view.choices if choice.supported]
        return {"factor": offered[0] if offered else "none"}
    challenge = view.challenge
    if event == "submit_first_factor" and challenge is not None and challenge.accepts_code:
        return {"answer": "pw"} if challenge.kind in ("password", "kba", "text") else {}
    if event == "submit_response":
        return {"answer": "123456"}
    return {}


def assert_sound(snapshot: Snapshot) -> None:
    """A snapshot a store can write (UTF-8 JSON) and read back as the same value."""
    text = snapshot.to_json()
    assert Snapshot.from_json(text.encode("utf-8")) == snapshot


@settings(max_examples=300, deadline=None)
@given(
    first=st.sampled_from(PACKAGES).map(ok) | responses,
    data=st.data(),
    picks=st.lists(st.integers(0, 4), min_size=4, max_size=4),
)
def test_any_reply_moves_the_flow_or_changes_nothing(
    first: HttpResponse, data: st.DataObject, picks: list[int]
) -> None:
    """Whatever CyberArk answers, only MfaErrors escape; a failed step changes nothing, and
    a successful one adds one to version and leaves a snapshot that round-trips exactly."""

    def any_reply(request: Any) -> HttpResponse:
        return data.draw(step_replies)

    transport = ScriptedTransport([first] + [any_reply] * 20)  # redirects take some too
    config = attrs.evolve(CONFIG, retry=NO_RETRY)  # retries would sleep; one call each
    try:
        flow = CyberArkFlow.start(
            config=config, user="tuser", transport=transport, clock=lambda: NOW
        )
    except MfaError:
        return
    assert_sound(flow.snapshot())
    for pick in picks:
        # cancel calls nothing, and a select needs something to select.
        allowed = [e for e in flow.allowed_events() if e != "cancel"]
        if not flow.view().choices and "select_second_factor" in allowed:
            allowed.remove("select_second_factor")
        if not allowed:
            return
        event = allowed[pick % len(allowed)]
        before = flow.snapshot()
        try:
            flow.send(event, **data_for(flow, event))
        except MfaError:
            assert flow.snapshot() == before
            continue
        after = flow.snapshot()
        assert after.version in (before.version, before.version + 1)
        assert after.version == before.version + 1 or after == before
        assert_sound(after)


def test_reply_text_that_is_no_unicode_is_refused() -> None:
    r"""A label holding a lone surrogate (JSON "\ud800") is IdpReplyError, rather than a
    snapshot that no store can write as UTF-8."""
    body = json.dumps({"success": True, "Result": package([{**UP, "PromptSelectMech": "\ud800"}])})
    with pytest.raises(IdpReplyError):
        started(first=HttpResponse(200, {}, body.encode()))


def test_two_different_full_login_names_are_two_users() -> None:
    """A flow started as tuser@example.com takes no LoginSuccess for tuser@other.example."""
    other = ok(login_success(Token="t", User="tuser@other.example"))
    with pytest.raises(IdpReplyError, match="another user"):
        CyberArkFlow.start(
            config=CONFIG,
            user="tuser@example.com",
            transport=ScriptedTransport([other]),
            clock=lambda: NOW,
        )
