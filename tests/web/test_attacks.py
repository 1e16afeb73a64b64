"""Attacks on a running app with the web integration, over real HTTP on loopback.

Each attack is bounded: a fixed, small number of requests, each with a timeout. The IdP is the
emulator, whose call log shows what reached it. The app is the README's safe example: its own
sign-in (``/app/signin``, tests/support/web.py) vouches for the user through ``current_user``
and ``begin()``; the blueprint's throttles are on with their default rates unless a test says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from mfa_fsm import (
    Engine,
    EntrustConfig,
    MemoryStore,
    SealedEngine,
    StoreLedger,
    VerifiedUserRequired,
)
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from mfa_fsm.web import mfa_blueprint
from tests.support.web import PREFIX, Client, make_app, serve

#: The headers every page of the blueprint carries, error pages included.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NOT_ACCEPTED = "The user id or password was not accepted."


def entrust_engine(emulator: EntrustEmulator, **options: object) -> Engine:
    config = EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
    )
    return Engine(MemoryStore(), [config], **options)  # type: ignore[arg-type]


def live(app: Flask) -> Iterator[str]:
    with serve(app) as base:
        yield base


@pytest.fixture
def base(entrust_emulator: EntrustEmulator) -> Iterator[str]:
    """The safe app (default throttles) served on loopback."""
    yield from live(make_app(entrust_engine(entrust_emulator), secure_cookies=False))


def idp_calls(emulator: EntrustEmulator, fragment: str = "") -> int:
    return len(emulator.calls_to(fragment))


def assert_security_headers(reply: requests.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, (reply.status_code, name)
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]


# -- the application owns the first factor ----------------------------------------------------


def test_external_is_unreachable_with_a_typed_user_id(
    base: str, entrust_emulator: EntrustEmulator
) -> None:
    """Typing an EXTERNAL user's id (any password) gets the one refusal and no flow; EXTERNAL
    is never completed at the IdP; /begin without the app's session is 403."""
    attacker = Client(base)
    for password in ("", "x", "guess"):
        reply = attacker.start("entrust", "jsmith", password)
        assert reply.status_code in (401, 422)
        assert not any(c.name.startswith("mfa_fsm_flow") for c in attacker.session.cookies)
    assert idp_calls(entrust_emulator, "EXTERNAL") == 0
    attacker.get(f"{PREFIX}/")
    begun = attacker.post(f"{PREFIX}/begin", provider="entrust")
    assert begun.status_code == 403
    assert idp_calls(entrust_emulator, "EXTERNAL") == 0


def test_mounting_without_the_user_callable_fails(entrust_emulator: EntrustEmulator) -> None:
    """An engine that runs Entrust (EXTERNAL) cannot be mounted without current_user=."""
    with pytest.raises(VerifiedUserRequired, match="pass current_user="):
        mfa_blueprint(entrust_engine(entrust_emulator))


# -- throttles ------------------------------------------------------------------------------


def test_push_bombing_is_throttled(base: str, entrust_emulator: EntrustEmulator) -> None:
    """15 push attempts in a few seconds (new flow, push, again): the default send burst
    (3 a minute per user) reaches the IdP, the rest answer 429 with Retry-After and the
    flow's page saying when to try again (5 in 15 minutes caps the pushes after that)."""
    victim_app = Client(base)  # the attacker has the victim's app session (the worst case)
    started = time.monotonic()
    statuses = []
    for _ in range(15):
        began = victim_app.begin("entrust", "jsmith")
        if began.status_code != 303:
            statuses.append(began.status_code)
            continue
        statuses.append(victim_app.step("factor", factor="TOKENPUSH").status_code)
    assert time.monotonic() - started < 15
    assert idp_calls(entrust_emulator, "/authenticate/TOKENPUSH") == 3
    assert statuses[:3] == [303, 303, 303]
    assert set(statuses[3:]) == {429}
    refused = victim_app.step("factor", factor="TOKENPUSH")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 15 * 60
    assert re.search(r"Nothing was sent: .* try again in \d+ seconds", refused.text)
    assert_security_headers(refused)


def test_guessing_is_throttled(entrust_emulator: EntrustEmulator) -> None:
    """Wrong codes past the rate answer 429 and never reach the IdP (here 3 per minute)."""
    throttle = Throttle(answers_per_user="3/minute")
    app = make_app(entrust_engine(entrust_emulator), secure_cookies=False, throttle=throttle)
    with serve(app) as base:
        guesser = Client(base)
        guesser.begin("entrust", "jsmith")
        guesser.step("factor", factor="TOKEN")
        answers = idp_calls(entrust_emulator, "/authenticate/TOKEN/complete")
        statuses = [guesser.step("response", response="00000000").status_code for _ in range(6)]
        assert statuses == [303, 303, 303, 429, 429, 429]
        assert idp_calls(entrust_emulator, "/authenticate/TOKEN/complete") == answers + 3
        assert not entrust_emulator.users["jsmith"].locked_at  # the IdP lockout never came


def test_start_is_throttled_per_user(base: str, entrust_emulator: EntrustEmulator) -> None:
    """Ten typed starts for one user, then 429 with no IdP call (default: 10 per 10 minutes)."""
    attacker = Client(base)
    for _ in range(10):
        assert attacker.start("entrust", "pwuser", "guess").status_code == 401
    calls = idp_calls(entrust_emulator)
    reply = attacker.start("entrust", "pwuser", "guess")
    assert reply.status_code == 429
    assert "Retry-After" in reply.headers
    assert idp_calls(entrust_emulator) == calls


# -- replay after cancel ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stored", "sealed"])
def test_replayed_pre_cancel_cookie_does_not_complete(
    kind: str, entrust_emulator: EntrustEmulator
) -> None:
    """A flow cookie saved before a cancel, sent again with the right code, does not sign in:
    the stored flow has ended, and a sealed token is refused by its ledger."""
    engine: Engine | SealedEngine = entrust_engine(entrust_emulator)
    if kind == "sealed":
        keys = {"k": SealedState.generate_key()}
        sealed = SealedState(keys, ledger=StoreLedger(MemoryStore()))
        config = EntrustConfig(
            base_url=entrust_emulator.base_url,
            application_id=entrust_emulator.application_id,
            poll_interval=0.0,
        )
        engine = SealedEngine(sealed, [config])
    with serve(make_app(engine, secure_cookies=False)) as base:
        victim = Client(base)
        victim.begin("entrust", "jsmith")
        victim.step("factor", factor="TOKEN")
        saved = victim.session.cookies.copy()
        victim.step("cancel")
        victim.session.cookies.update(saved)
        replayed = victim.step("response", response=DEMO_TOKEN_CODE)
        page = victim.get(victim.flow_url)
        assert "You are signed in" not in replayed.text + page.text
        assert replayed.status_code in (303, 410)
        successes = [
            c for c in entrust_emulator.calls_to("/authenticate/TOKEN/complete") if c.status == 200
        ]
        assert len(successes) <= 1  # the cancel itself
        assert all(c.body.get("cancel") is True for c in successes)


# -- forms and requests -----------------------------------------------------------------------


def test_oversized_field_is_refused_and_not_echoed(
    base: str, entrust_emulator: EntrustEmulator
) -> None:
    """A field over its limit, or a body over its limit, is refused (413) without being
    repeated, and nothing reaches the IdP."""
    client = Client(base)
    client.get(f"{PREFIX}/")
    marker = "Z" * 5000
    reply = client.post(f"{PREFIX}/", provider="entrust", user=marker, password="x")
    assert reply.status_code == 413
    assert "ZZZZZZZZZZ" not in reply.text
    assert_security_headers(reply)
    huge = client.post(f"{PREFIX}/", provider="entrust", user="pwuser", password="Y" * 40_000)
    assert huge.status_code == 413
    assert "YYYYYYYYYY" not in huge.text
    assert idp_calls(entrust_emulator) == 0


def test_unknown_and_known_user_ids_answer_alike(base: str) -> None:
    """An unknown id, a known id with a wrong password, an EXTERNAL-only id and a refused id
    get the same status and the same page (but for the CSRF token)."""
    pages = {}
    for user in ("nobody", "pwuser", "jsmith", "blocked"):
        reply = Client(base).start("entrust", user, "wrong-password")
        body = re.sub(r'name="csrf_token" value="[^"]+"', "", reply.text)
        pages[user] = (reply.status_code, body)
    assert len(set(pages.values())) == 1
    status, body = pages["nobody"]
    assert status == 401
    assert NOT_ACCEPTED in body


def test_every_page_and_error_page_has_the_security_headers(
    base: str, entrust_emulator: EntrustEmulator
) -> None:
    """Start page, flow pages, and the 400, 404, 405, 410, 413 and 429 pages alike."""
    client = Client(base)
    seen = [client.get(f"{PREFIX}/")]
    client.begin("entrust", "jsmith")
    seen.append(client.get(client.flow_url))
    seen.append(client.step("factor", factor="TOKEN"))
    seen.append(client.get(client.flow_url))
    seen.append(client.post(f"{client.flow_url}/response", csrf_token="forged", response="1"))
    seen.append(client.get(f"{PREFIX}/no/such/page"))
    seen.append(client.post(f"{client.flow_url}/teleport"))
    seen.append(client.request("PUT", f"{PREFIX}/"))
    seen.append(client.request("DELETE", client.flow_url))
    seen.append(client.get(f"{PREFIX}/begin"))
    seen.append(client.get(f"{PREFIX}/f/unknownHandl"))
    client.get(f"{PREFIX}/")  # the start form's own CSRF token
    seen.append(client.post(f"{PREFIX}/", user="u" * 2000, password="x", provider="entrust"))
    seen.append(client.step("factor", factor="TOKENPUSH"))  # an event the state does not take
    assert {reply.status_code for reply in seen} >= {200, 303, 400, 404, 405, 410, 413}
    for reply in seen:
        assert_security_headers(reply)
    assert seen[7].headers["Allow"] == "GET, POST, HEAD"


def test_server_error_page_has_the_security_headers(entrust_emulator: EntrustEmulator) -> None:
    """A bug in a step (here the store failing) is a 500 page with the same headers, and
    shows none of the error's text."""

    class BrokenStore(MemoryStore):
        broken = False

        def load(self, flow_id: str) -> Any:
            if self.broken:
                raise RuntimeError("the database is on fire: secret=hunter2")
            return super().load(flow_id)

    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    store = BrokenStore()
    app = make_app(Engine(store, [config]), secure_cookies=False)
    app.config["TESTING"] = False  # a production app: errors become pages
    with serve(app) as base:
        client = Client(base)
        client.begin("entrust", "jsmith")
        store.broken = True
        reply = client.get(client.flow_url)
    assert reply.status_code == 500
    assert "hunter2" not in reply.text
    assert_security_headers(reply)
