"""Every value type that can hold a secret keeps it out of repr() and str(), with the secret
present (a repr test with the secret absent proves nothing)."""

from __future__ import annotations

import json

import attrs

from mfa_fsm import HttpResponse, Snapshot
from mfa_fsm.core.snapshot import Result
from mfa_fsm.core.transport import HttpRequest
from mfa_fsm.cyberark.flow import CyberArkContext
from mfa_fsm.cyberark.replies import decipher as cyberark_decipher
from mfa_fsm.cyberark.replies import parse_reply
from mfa_fsm.entrust.flow import EntrustContext
from mfa_fsm.entrust.replies import decipher, parse_authenticated, parse_query
from mfa_fsm.stores.base import Record
from tests.support.stores import make_snapshot

SECRET = "S3CRET-7f3a9c1e5b"


def shown(value: object) -> str:
    return repr(value) + str(value)


def json_reply(body: object) -> HttpResponse:
    return HttpResponse(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


def test_entrust_reply_types_hide_the_token() -> None:
    query = parse_query(
        decipher(json_reply({"authenticationTypes": ["OTP"], "token": SECRET}), "/q")
    )
    assert query.token == SECRET and SECRET not in shown(query)
    auth = parse_authenticated(decipher(json_reply({"token": SECRET}), "/a"))
    assert auth.token == SECRET and SECRET not in shown(auth)


def test_cyberark_reply_hides_session_id_cookies_and_tokens() -> None:
    body = {
        "success": True,
        "Result": {
            "Summary": "LoginSuccess",
            "Token": SECRET + "t",
            "Auth": SECRET + "a",
            "SessionId": SECRET + "s",
            "User": "u@example.com",
        },
    }
    reply = parse_reply(cyberark_decipher(json_reply(body), "/x"))
    reply = attrs.evolve(reply, cookies={".ASPXAUTH": SECRET + "c", "sessdata": SECRET + "d"})
    assert reply.login is not None and reply.login.token == SECRET + "t"
    assert reply.session_id == SECRET + "s" and reply.cookies[".ASPXAUTH"] == SECRET + "c"
    assert SECRET not in shown(reply) and SECRET not in shown(reply.login)


def test_flow_contexts_hide_their_secrets() -> None:
    cyberark = CyberArkContext(
        base_url="https://t.example", session_id=SECRET, cookies={".ASPXAUTH": SECRET}
    )
    assert SECRET not in shown(cyberark)
    entrust = EntrustContext(first_factor="EXTERNAL", token=SECRET, first_factor_token=SECRET)
    assert SECRET not in shown(entrust)


def test_results_snapshots_and_records_hide_tokens_and_cookies() -> None:
    result = Result(user_id="u", token=SECRET, cookies={".ASPXAUTH": SECRET})
    assert SECRET not in shown(result)
    snapshot: Snapshot = attrs.evolve(make_snapshot(session=SECRET), result=result)
    assert SECRET in snapshot.to_json()  # present, and still not shown
    assert SECRET not in shown(snapshot)
    record = Record(version=1, payload=snapshot.to_json(), expires_at=0.0)
    assert SECRET not in shown(record)


def test_http_values_hide_headers_bodies_and_cookies() -> None:
    request = HttpRequest(
        "POST",
        "https://i.example/p",
        "/p",
        {"Authorization": f"Bearer {SECRET}"},
        {"response": SECRET},
    )
    response = HttpResponse(200, {"Set-Cookie": f"a={SECRET}"}, SECRET.encode(), {"a": SECRET})
    assert SECRET not in shown(request) and SECRET not in shown(response)
