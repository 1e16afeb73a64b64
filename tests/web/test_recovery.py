"""The blueprint when things go wrong for a real browser: lost races on sealed state, a store
failing during the hand-off, script requests that must get JSON, malformed URL handles,
werkzeug's own error answers under the prefix, and misconfiguration the operator must see."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import redirect, session
from itsdangerous import URLSafeTimedSerializer
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from mfa_fsm import (
    Engine,
    EntrustConfig,
    FlowView,
    MemoryStore,
    SealedEngine,
    SealedStateStale,
    StoreLedger,
    StoreUnavailable,
    UsageError,
)
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.support.web import (
    PREFIX,
    Client,
    Visitor,
    flow_cookie,
    make_app,
    serve,
    set_cookies,
    state,
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def assert_security_headers(reply: TestResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, (reply.status_code, name)
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]


def body(reply: TestResponse) -> dict[str, Any]:
    """The JSON object a reply carries."""
    data = reply.get_json()
    assert isinstance(data, dict), reply.get_data(as_text=True)[:200]
    return data


def entrust(emulator: EntrustEmulator) -> list[object]:
    return [EntrustConfig(base_url=emulator.base_url, application_id=emulator.application_id)]


class Completions:
    """An application's on_complete: records each call, signs the user in, redirects home."""

    def __init__(self) -> None:
        self.seen: list[FlowView] = []

    def __call__(self, view: FlowView) -> Response:
        self.seen.append(view)
        assert view.result is not None
        session["signed_in"] = view.result.user_id
        return redirect("/home")


class FailingOnceStore(MemoryStore):
    """A memory store whose save of a handed-off snapshot fails once, as a database
    connection that drops would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def save(self, snapshot: Snapshot, *, expected_version: int) -> None:
        result = snapshot.result
        if result is not None and result.handed_off and self.failures:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        super().save(snapshot, expected_version=expected_version)


@pytest.fixture
def sealed_engine(entrust_emulator: EntrustEmulator) -> SealedEngine:
    keys = {"k1": SealedState.generate_key()}
    return SealedEngine(
        SealedState(keys, ledger=StoreLedger(MemoryStore())), entrust(entrust_emulator)
    )


def to_token_form(visitor: Visitor) -> None:
    visitor.begin("entrust", "jsmith")
    assert state(visitor.page()) == "AwaitingSecondFactor"


def json_step(visitor: Visitor, step: str, **form: str) -> TestResponse:
    headers = {"Accept": "application/json", "X-CSRF-Token": visitor.csrf}
    return visitor.client.post(f"{visitor.flow_url}/{step}", data=form, headers=headers)


# -- attack #5: a lost race on sealed state keeps the login ----------------------------------


def test_double_click_on_sealed_state_keeps_the_flow_cookie(sealed_engine: SealedEngine) -> None:
    """Two requests carry the same sealed token (a double click, two tabs): the loser is sent
    back to the flow's page (303; JSON "try again" for the script) and its answer neither
    deletes nor overwrites the cookie the winner set; the login then goes on."""
    visitor = Visitor(make_app(sealed_engine).test_client())
    to_token_form(visitor)
    name = flow_cookie(visitor)
    older = visitor.client.get_cookie(name, path="/")
    assert older is not None
    assert visitor.step("factor", factor="TOKEN").status_code == 303  # the winner
    newest = visitor.client.get_cookie(name, path="/")
    assert newest is not None
    assert newest.value != older.value

    visitor.client.set_cookie(name, older.value, path="/")  # the loser's request
    loser = visitor.step("factor", factor="TOKEN")
    assert loser.status_code == 303
    assert loser.headers["Location"] == visitor.flow_url
    assert set_cookies(loser, name) == []
    poll = visitor.poll_json()
    assert poll.status_code == 409
    assert body(poll)["retry_after"] >= 1
    assert "try" in body(poll)["message"].lower()
    assert set_cookies(poll, name) == []

    visitor.client.set_cookie(name, newest.value, path="/")  # what the browser holds
    assert state(visitor.page()) == "SecondFactorSelected"
    done = visitor.step("response", response=DEMO_TOKEN_CODE)
    assert done.status_code == 303
    assert state(visitor.page()) == "Completed"


def test_tampered_sealed_token_still_means_start_again(sealed_engine: SealedEngine) -> None:
    """Only a superseded token is a lost race: an altered one still ends the flow (410) and
    drops its cookie."""
    app = make_app(sealed_engine)
    visitor = Visitor(app.test_client())
    to_token_form(visitor)
    name = flow_cookie(visitor)
    cookie = visitor.client.get_cookie(name, path="/")
    assert cookie is not None
    signer = URLSafeTimedSerializer(app.secret_key or "", salt="mfa_fsm.web.flow")
    payload: dict[str, Any] = signer.loads(cookie.value)
    token = payload["t"]
    payload["t"] = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    visitor.client.set_cookie(name, signer.dumps(payload), path="/")
    reply = visitor.page()
    assert reply.status_code == 410
    assert any("Max-Age=0" in header for header in set_cookies(reply, name))


def test_stale_token_is_its_own_error(sealed_engine: SealedEngine) -> None:
    """The engine says which tokens are merely superseded: SealedStateStale."""
    view, first = sealed_engine.start("entrust", user="pwuser")
    _, second = sealed_engine.send(first, view.flow_id, "submit_first_factor", answer="Passw0rd!")
    assert second != first
    with pytest.raises(SealedStateStale, match="reload the page"):
        sealed_engine.view(first, view.flow_id)


# -- attack #6: a store failing during the hand-off ------------------------------------------


@pytest.mark.parametrize("script", [False, True])
def test_store_failing_during_hand_off_is_recovered_on_the_next_request(
    entrust_emulator: EntrustEmulator, script: bool
) -> None:
    """The save of the hand-off fails once: the completing request answers 503 with
    Retry-After (JSON to the script) and on_complete is not called; the flow's page (or the
    next poll) in the same browser hands off and calls on_complete then, once."""
    store = FailingOnceStore()
    completions = Completions()
    engine = Engine(store, entrust(entrust_emulator))
    visitor = Visitor(make_app(engine, on_complete=completions).test_client())
    to_token_form(visitor)
    visitor.step("factor", factor="TOKEN")
    if script:
        failed = json_step(visitor, "response", response=DEMO_TOKEN_CODE)
        assert failed.is_json
        assert body(failed)["retry_after"] >= 1
    else:
        failed = visitor.step("response", response=DEMO_TOKEN_CODE)
        assert "Almost signed in" in failed.text
    assert failed.status_code == 503
    assert int(failed.headers["Retry-After"]) >= 1
    assert completions.seen == []

    if script:
        again = visitor.poll_json()
        assert again.status_code == 200
        assert body(again)["location"] == "/home"
    else:
        again = visitor.page()
        assert again.status_code == 302
        assert again.headers["Location"] == "/home"
    assert len(completions.seen) == 1
    assert completions.seen[0].result is not None
    assert completions.seen[0].result.token
    token = completions.seen[0].result.token
    assert token not in repr(store._records)  # handed off: the store keeps no IdP token
    # on_complete's answer expired the flow's cookie: the flow's page now says start again
    # (a Back and resubmit finds no flow), and on_complete is not called again.
    assert visitor.page().status_code == 410
    assert len(completions.seen) == 1


# -- attack #7: every request that asks for JSON gets JSON ------------------------------------


def test_completion_answers_a_script_with_json_location_and_session_cookie(
    entrust_emulator: EntrustEmulator,
) -> None:
    """on_complete's redirect becomes {"location": ...} for a script, with the cookies the
    application set (its session) on the same answer."""
    completions = Completions()
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    visitor = Visitor(make_app(engine, on_complete=completions).test_client())
    to_token_form(visitor)
    visitor.step("factor", factor="TOKEN")
    reply = json_step(visitor, "response", response=DEMO_TOKEN_CODE)
    assert reply.status_code == 200
    assert reply.is_json
    assert body(reply)["location"] == "/home"
    assert body(reply)["state"] == "Completed"
    assert set_cookies(reply, "session")
    assert len(completions.seen) == 1


def test_every_error_answer_to_a_script_is_json(entrust_emulator: EntrustEmulator) -> None:
    """400 (CSRF), 404 (no such step), 410 (unknown flow) and 422 (bad input) alike."""
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    visitor = Visitor(make_app(engine).test_client())
    to_token_form(visitor)
    accept = {"Accept": "application/json"}
    replies = {
        400: visitor.poll_json(csrf="forged"),
        404: visitor.client.post(f"{visitor.flow_url}/teleport", headers=accept),
        410: visitor.client.post(
            f"{PREFIX}/f/AAAAAAAAAAAA/poll", headers={**accept, "X-CSRF-Token": "x"}
        ),
    }
    visitor.step("factor", factor="TOKEN")
    replies[422] = json_step(visitor, "response", response="")
    for status, reply in replies.items():
        assert reply.status_code in (status, 400), (status, reply.status_code)
        assert reply.is_json, (status, reply.get_data(as_text=True)[:200])
        assert body(reply)["message"]
    assert replies[404].status_code == 404
    assert replies[422].status_code == 422


# -- attack #10: the URL handle is validated before it names a cookie -------------------------


@pytest.mark.parametrize(
    "handle",
    [
        "x%3Dv%3B%20Max-Age%3D9999",
        "AAAAAAAAAAAA%3D",
        "AAAAAAAAAAA%0D%0ASet-Cookie:%20a=b",
        "short",
        "AAAAAAAAAAAAA",
    ],
)
def test_malformed_handle_is_404_and_names_no_cookie(
    entrust_emulator: EntrustEmulator, handle: str
) -> None:
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    client = make_app(engine).test_client()
    for reply in (
        client.get(f"{PREFIX}/f/{handle}"),
        client.post(f"{PREFIX}/f/{handle}/poll", headers={"Accept": "application/json"}),
    ):
        assert reply.status_code == 404
        assert not [h for h in reply.headers.getlist("Set-Cookie") if "_flow_" in h]
        assert_security_headers(reply)


# -- attack #11: werkzeug's own answers under the prefix carry the headers -------------------


def test_werkzeug_answers_under_the_prefix_carry_the_headers(
    entrust_emulator: EntrustEmulator,
) -> None:
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    app = make_app(engine)
    app.add_url_rule("/elsewhere", "elsewhere", lambda: "the app's own page")
    client = app.test_client()
    replies = [
        client.open(f"{PREFIX}/f/AAAAAAAAAAAA", method="TRACE"),
        client.open(f"{PREFIX}/", method="OPTIONS"),
        client.get(f"{PREFIX}/_mfa_fsm_static/no-such-file.js"),
        client.get(PREFIX),
    ]
    assert {reply.status_code for reply in replies} >= {404, 405}
    for reply in replies:
        assert_security_headers(reply)
    # A static file keeps its own caching (revalidated), and the other headers.
    script = client.get(f"{PREFIX}/_mfa_fsm_static/mfa_fsm.js")
    script.close()
    assert script.status_code == 200
    assert script.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in script.headers["Content-Security-Policy"]
    # The application's own pages are its business.
    assert "Content-Security-Policy" not in client.get("/elsewhere").headers


# -- newuser #5 and #9: what the operator sees --------------------------------------------------


def test_missing_secure_cookie_over_plain_http_is_logged(
    entrust_emulator: EntrustEmulator, leak_guard: list[dict[str, object]]
) -> None:
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    client = make_app(engine).test_client()  # secure cookies, and http://localhost
    assert client.get(f"{PREFIX}/f/AAAAAAAAAAAA").status_code == 410
    (event,) = [e for e in leak_guard if e["event"] == "mfa_fsm.web.flow_cookie_missing_over_http"]
    assert event["log_level"] == "warning"
    assert "secure_cookies=False" in str(event["hint"])
    https = make_app(engine).test_client()
    https.get(f"{PREFIX}/f/AAAAAAAAAAAA", base_url="https://localhost")
    assert len([e for e in leak_guard if "over_http" in str(e["event"])]) == 1


def test_begin_with_an_unknown_provider_is_a_usage_error(
    entrust_emulator: EntrustEmulator,
) -> None:
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    client = make_app(engine).test_client()
    with pytest.raises(UsageError, match="okta"):
        client.post(
            "/app/signin", data={"user": "jsmith", "password": "app-password", "provider": "okta"}
        )


def test_server_error_logs_the_traceback_but_shows_nothing(
    entrust_emulator: EntrustEmulator, leak_guard: list[dict[str, object]]
) -> None:
    class BrokenStore(MemoryStore):
        broken = False

        def load(self, flow_id: str) -> Any:
            if self.broken:
                raise RuntimeError("the database is on fire")
            return super().load(flow_id)

    store = BrokenStore()
    app = make_app(Engine(store, entrust(entrust_emulator)))
    app.config["TESTING"] = False
    visitor = Visitor(app.test_client())
    to_token_form(visitor)
    store.broken = True
    reply = visitor.page()
    assert reply.status_code == 500
    assert "on fire" not in reply.text
    (event,) = [e for e in leak_guard if e["event"] == "mfa_fsm.web.server_error"]
    assert isinstance(event["exc_info"], RuntimeError)


def test_start_refusals_answer_a_script_with_json(entrust_emulator: EntrustEmulator) -> None:
    """The start routes too: a refused typed start and a CSRF refusal are JSON when asked."""
    engine = Engine(MemoryStore(), entrust(entrust_emulator))
    client = make_app(engine).test_client()
    accept = {"Accept": "application/json"}
    refused = client.post(f"{PREFIX}/", data={"provider": "entrust"}, headers=accept)
    assert refused.status_code == 400
    assert body(refused)["message"]
    page = client.get(f"{PREFIX}/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    wrong = client.post(
        f"{PREFIX}/",
        data={"provider": "entrust", "user": "pwuser", "password": "wrong", "csrf_token": token},
        headers=accept,
    )
    assert wrong.status_code == 401
    assert body(wrong)["message"] == "The user id or password was not accepted."


def test_two_tabs_polling_one_sealed_flow_never_lose_it(entrust_emulator: EntrustEmulator) -> None:
    """Two tabs poll one pending push at once over real HTTP, sharing the browser's cookies:
    every answer is 200 or 409 "try again", none deletes the flow cookie, and the login goes
    on (the SQL store gives 200s only; sealed state must not be worse than "try again")."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url,
        application_id=entrust_emulator.application_id,
        poll_interval=0.0,
    )
    keys = {"k1": SealedState.generate_key()}
    engine = SealedEngine(SealedState(keys, ledger=StoreLedger(MemoryStore())), [config])
    app = make_app(engine, secure_cookies=False, throttle=None)
    with serve(app) as base:
        tab = Client(base)
        tab.begin("entrust", "jsmith")
        tab.step("factor", factor="TOKENPUSH")
        assert 'data-state="OobPending"' in tab.get(tab.flow_url).text
        name = "mfa_fsm_flow_" + tab.flow_url.rsplit("/", 1)[1]
        headers = {"Accept": "application/json", "X-CSRF-Token": tab.csrf}
        answers: list[tuple[int, bool]] = []

        def poll() -> None:
            for _ in range(8):
                reply = tab.session.post(f"{base}{tab.flow_url}/poll", headers=headers, timeout=10)
                dropped = any(
                    c.startswith(f"{name}=") and "Max-Age=0" in c
                    for c in reply.raw.headers.getlist("Set-Cookie")
                )
                answers.append((reply.status_code, dropped))

        threads = [threading.Thread(target=poll) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert {status for status, _ in answers} <= {200, 409}, answers
        assert not any(dropped for _, dropped in answers)
        assert name in tab.session.cookies
        entrust_emulator.approve_push("jsmith")
        final = tab.session.post(f"{base}{tab.flow_url}/poll", headers=headers, timeout=10)
        assert final.status_code == 200
        assert final.json()["state"] == "Completed"


# -- a store outage is a 503 to retry, never "this account cannot sign in" ------------------


class OutageStore(MemoryStore):
    """A store whose backend is down while ``down`` is set: every operation raises the typed
    error the SQL and Redis stores raise (their own outage tests run on the real servers)."""

    down = False

    def _check(self, operation: str) -> None:
        if self.down:
            raise StoreUnavailable("OutageStore", operation, "ConnectionError")

    def create(self, snapshot: Snapshot) -> None:
        self._check("create")
        super().create(snapshot)

    def load(self, flow_id: str) -> Snapshot:
        self._check("load")
        return super().load(flow_id)


def test_store_outage_is_a_503_with_retry_after_on_every_route(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Begin, the flow page, a step and a script's poll each answer 503 with Retry-After while
    the store is down (JSON to a script), keep the flow cookie, and work again once it is
    back."""
    store = OutageStore()
    visitor = Visitor(make_app(Engine(store, entrust(entrust_emulator))).test_client())
    to_token_form(visitor)
    store.down = True
    page = visitor.page()
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert "Set-Cookie" not in page.headers
    step = visitor.step("factor", factor="TOKEN")
    assert step.status_code == 503 and step.headers["Retry-After"]
    poll = json_step(visitor, "poll")
    assert poll.status_code == 503 and poll.is_json and body(poll)["retry_after"] > 0
    # start's IdP call succeeded, so its create is retried for save_retry seconds first.
    engine = Engine(store, entrust(entrust_emulator), save_retry=0.2)
    again = Visitor(make_app(engine).test_client())
    refused = again.begin("entrust", "jsmith")
    assert refused.status_code == 503
    store.down = False
    assert state(visitor.page()) == "AwaitingSecondFactor"
