"""The login pages over real HTTP in every web framework: the same tests, parametrised over
the Flask blueprint (Engine/SealedEngine, werkzeug's threaded server) and the Starlette
router (AsyncEngine/AsyncSealedEngine, uvicorn on one event loop). The test applications
are in tests/support/web_apps/.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from mfa_fsm import EntrustConfig
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.support.web import Client
from tests.support.web_apps import ADAPTER_APPS as FRAMEWORKS
from tests.support.web_apps import PREFIX

SECURITY = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> ModuleType:
    """The test application module of one framework (flask_app, starlette_app)."""
    return importlib.import_module(f"tests.support.web_apps.{request.param}_app")


Live = Callable[..., Any]


@pytest.fixture
def live(framework: ModuleType, entrust_emulator: EntrustEmulator) -> Iterator[Live]:
    """Start the framework's app over the Entrust emulator: ``live(sealed=, throttle=,
    **options)`` returns its base URL; every app is stopped after the test."""
    yield from starter(framework, entrust_emulator)


@pytest.fixture
def starlette_live(entrust_emulator: EntrustEmulator) -> Iterator[Live]:
    """``live`` for the Starlette application only."""
    module = importlib.import_module("tests.support.web_apps.starlette_app")
    yield from starter(module, entrust_emulator)


def starter(framework: ModuleType, entrust_emulator: EntrustEmulator) -> Iterator[Live]:
    stack: list[Any] = []

    def start(*, sealed: bool = False, throttle: Throttle | None = None, **options: Any) -> str:
        config = EntrustConfig(
            base_url=entrust_emulator.base_url,
            application_id=entrust_emulator.application_id,
            retry=RetryPolicy(attempts=1),
        )
        engine = framework.make_engine([config], sealed=sealed, throttle=throttle)
        options.setdefault("secure_cookies", False)  # plain-HTTP loopback
        if throttle is None:
            options.setdefault("throttle", None)
        running = framework.live(engine, **options)
        base: str = running.__enter__()
        stack.append(running)
        return base

    yield start
    for running in reversed(stack):
        running.__exit__(None, None, None)


def heading(reply: requests.Response) -> str:
    """The text of the page's <h1>."""
    found = re.search(r"<h1[^>]*>(.*?)</h1>", reply.text, re.S)
    assert found, reply.text[:500]
    return re.sub(r"\s+", " ", found.group(1)).strip()


def state(reply: requests.Response) -> str:
    """The state the page renders (its data-state)."""
    found = re.search(r'data-state="([A-Za-z]+)"', reply.text)
    assert found, reply.text[:500]
    return found.group(1)


def check_security_headers(reply: requests.Response) -> None:
    for name, value in SECURITY.items():
        assert reply.headers.get(name) == value, (name, reply.url)
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
def test_code_login_signs_the_app_in(live: Live, sealed: bool) -> None:
    """The application's sign-in begins the second factor; a typed code completes it, and
    on_complete's redirect (with its session cookie) lands the user in the application."""
    calls: list[FlowView] = []
    client = Client(live(sealed=sealed, calls=calls))
    assert client.begin("entrust", "jsmith").status_code == 303
    page = client.get(client.flow_url)
    check_security_headers(page)
    assert state(page) == "AwaitingSecondFactor"
    assert client.step("factor", factor="TOKEN").status_code == 303
    done = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert done.status_code == 302
    assert done.headers["Location"] == "/app/home"
    check_security_headers(done)
    assert client.get("/app/whoami").text == "signed in as jsmith"
    assert len(calls) == 1 and calls[0].result is not None and calls[0].result.token


def test_push_is_polled_to_completion_in_json(
    live: Live, entrust_emulator: EntrustEmulator
) -> None:
    """The page's script polls a push: pending JSON with the times, then, once approved,
    ``location`` where on_complete redirects and the application's session cookie."""
    client = Client(live())
    client.begin("entrust", "pushmc")
    client.step("factor", factor="TOKENPUSH")
    headers = {"Accept": "application/json", "X-CSRF-Token": client.csrf}
    url = client.base + client.flow_url + "/poll"
    pending = client.session.post(url, headers=headers, timeout=10)
    assert pending.headers["Content-Type"].startswith("application/json")
    body = pending.json()
    assert body["state"] == "OobPending" and body["deadline"] > body["now"]
    entrust_emulator.approve_push("pushmc")
    time.sleep(max(0.0, body["next_poll_at"] - body["now"]) + 0.05)
    done = client.session.post(url, headers=headers, timeout=10, allow_redirects=False)
    assert done.status_code == 200
    assert done.json() == {
        "state": "Completed",
        "location": "/app/home",
        "message": "Approved. Signing you in.",
    }
    check_security_headers(done)
    assert client.get("/app/whoami").text == "signed in as pushmc"


def test_pushes_polled_at_once_hold_no_thread(
    starlette_live: Live, entrust_emulator: EntrustEmulator
) -> None:
    """Eight pushes polled at once while the IdP takes a second to answer each: under
    Starlette one event-loop thread serves them all side by side (the polls overlap: well
    under eight seconds in all), and the app's process starts no thread for them (werkzeug's
    server, by contrast, holds a thread per request: Starlette only)."""
    base = starlette_live()
    clients = []
    for _ in range(8):
        client = Client(base)
        client.begin("entrust", "pushmc")
        client.step("factor", factor="TOKENPUSH")
        clients.append(client)
    entrust_emulator.faults.inject("slow", path="complete", delay=1.0, times=None)
    results: list[int] = []
    before = threading.active_count()

    def poll(client: Client) -> None:
        headers = {"Accept": "application/json", "X-CSRF-Token": client.csrf}
        reply = client.session.post(
            client.base + client.flow_url + "/poll", headers=headers, timeout=30
        )
        results.append(reply.status_code)

    started = time.monotonic()
    pollers = [threading.Thread(target=poll, args=(c,)) for c in clients]
    for thread in pollers:
        thread.start()
    during = threading.active_count() - len(pollers)
    for thread in pollers:
        thread.join()
    elapsed = time.monotonic() - started
    print(f"\n8 polls, 1 s IdP delay each, one event loop: {elapsed:.2f} s in all")
    assert results == [200] * 8
    assert elapsed < 4.0, elapsed  # eight one-second IdP calls, side by side
    assert during <= before


def test_csrf_is_required_and_nothing_changes(live: Live) -> None:
    """A step without the page's CSRF token is refused (400) and the flow is as it was."""
    client = Client(live())
    client.begin("entrust", "jsmith")
    refused = client.request("POST", f"{client.flow_url}/factor", factor="TOKEN")
    assert refused.status_code == 400
    check_security_headers(refused)
    assert state(client.get(client.flow_url)) == "AwaitingSecondFactor"


def test_errors_are_the_pages_with_their_headers(live: Live) -> None:
    """An unknown flow says start again (410), an unknown page is 404, a wrong method 405
    with Allow; the static files and every error carry the security headers."""
    base = live()
    client = Client(base)
    lost = client.get(f"{PREFIX}/f/AAAAAAAAAAAA")
    assert lost.status_code == 410 and heading(lost) == "Please start again"
    missing = client.get(f"{PREFIX}/nowhere")
    assert missing.status_code == 404
    wrong = client.request("PUT", f"{PREFIX}/begin")
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]
    css = client.get(f"{PREFIX}/_mfa_fsm_static/mfa_fsm.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]
    for reply in (lost, missing, wrong):
        check_security_headers(reply)
    assert css.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in css.headers["Content-Security-Policy"]
    json_lost = client.session.get(
        base + f"{PREFIX}/f/AAAAAAAAAAAA", headers={"Accept": "application/json"}, timeout=10
    )
    assert json_lost.status_code == 410 and json_lost.json()["location"] == f"{PREFIX}/"


def test_idp_unavailable_offers_a_retry_and_keeps_the_flow(
    live: Live, entrust_emulator: EntrustEmulator
) -> None:
    """The IdP fails a step: 503 with a retry form keeping the choice (no secret), and the
    flow is where it was; the script gets JSON with retry_after."""
    client = Client(live())
    client.begin("entrust", "jsmith")
    entrust_emulator.faults.inject("status", status=503, path="authenticate/OTP")
    failed = client.post(f"{client.flow_url}/factor", factor="OTP", delivery="SMS")
    assert failed.status_code == 503
    check_security_headers(failed)
    assert '<input type="hidden" name="delivery" value="SMS">' in failed.text
    assert state(client.get(client.flow_url)) == "AwaitingSecondFactor"
    entrust_emulator.faults.inject("status", status=503, path="authenticate/OTP")
    scripted = client.session.post(
        client.base + client.flow_url + "/factor",
        data={"factor": "OTP", "delivery": "SMS"},
        headers={"Accept": "application/json", "X-CSRF-Token": client.csrf},
        timeout=10,
    )
    assert scripted.status_code in (429, 503)  # the refused send counted (cooldown)
    assert scripted.json()["retry_after"] >= 1


@pytest.mark.parametrize(
    ("user", "status"),
    [("blocked", 401), ("bad user!", 401), ("jsmith", 401), ("otpuser", 401)],
)
def test_the_typed_start_form_refuses_alike(live: Live, user: str, status: int) -> None:
    """A refused account, a malformed id, an EXTERNAL-only account: one refusal (401)."""
    client = Client(live())
    reply = client.start("entrust", user, "wrong-password")
    assert reply.status_code == status
    assert "The user id or password was not accepted." in reply.text


def test_cancel_ends_the_flow_and_head_is_get(live: Live) -> None:
    """Cancel ends the flow on its Failed page; HEAD answers as GET, without a body."""
    base = live()
    client = Client(base)
    client.begin("entrust", "jsmith")
    assert client.step("cancel").status_code == 303
    assert state(client.get(client.flow_url)) == "Failed"
    head = client.session.head(base + client.flow_url, timeout=10)
    assert head.status_code == 200 and head.text == ""
    check_security_headers(head)


@pytest.mark.parametrize("complete", ["page", "raise"])
def test_on_complete_returning_nothing_or_failing(live: Live, complete: str) -> None:
    """on_complete returning nothing: the flow's own success page. on_complete raising: the
    pages' 500, which shows nothing of the error."""
    client = Client(live(complete=complete))
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKEN")
    done = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    check_security_headers(done)
    if complete == "page":
        assert done.status_code == 303 and done.headers["Location"] == client.flow_url
        assert state(client.get(client.flow_url)) == "Completed"
    else:
        assert done.status_code == 500
        assert "on_complete failed" not in done.text


def test_a_form_over_the_size_limit_is_refused(live: Live) -> None:
    """A body over max_form_bytes is refused with 413, never echoed."""
    client = Client(live(max_form_bytes=2048))
    client.get(f"{PREFIX}/")
    reply = client.post(f"{PREFIX}/", provider="entrust", user="x" * 4000, password="p")
    assert reply.status_code == 413
    assert "x" * 100 not in reply.text


def test_throttled_answers_wait_with_retry_after(live: Live) -> None:
    """Wrong codes past the rate answer 429 with Retry-After; no IdP call is made."""
    client = Client(live(throttle=Throttle(answers_per_user="2/minute")))
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKEN")
    for _ in range(2):
        client.post(f"{client.flow_url}/response", response="11111111")
    throttled = client.post(f"{client.flow_url}/response", response="11111111")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1


def test_an_asyncio_throttle_storage_under_starlette(starlette_live: Live) -> None:
    """Under the async adapter the throttle may count in an asyncio ``limits`` storage
    (``async+memory://`` here; ``async+redis://`` in production): awaited, and refusing
    past the rate with 429 and Retry-After."""
    throttle = Throttle("async+memory://", answers_per_user="2/minute")
    client = Client(starlette_live(throttle=throttle))
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKEN")
    for _ in range(2):
        assert client.post(f"{client.flow_url}/response", response="11111111").status_code != 429
    throttled = client.post(f"{client.flow_url}/response", response="11111111")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1


def test_templates_can_be_overridden(live: Live, tmp_path: Path) -> None:
    """A template of the same name in template_dirs replaces the package's."""
    folder = tmp_path / "mfa_fsm"
    folder.mkdir()
    (folder / "start.html").write_text(
        "<!doctype html><title>{{ title }}</title><h1>Our own start</h1>"
        '<form method="post" action="{{ begin_url }}"><input name="csrf_token" '
        'value="{{ csrf }}"></form>'
    )
    client = Client(live(template_dirs=[tmp_path]))
    assert heading(client.get(f"{PREFIX}/")) == "Our own start"


# -- completion replay (issue 11, item 2) ------------------------------------------------


def completed_with_lost_reply(client: Client) -> tuple[dict[str, str], requests.Response]:
    """Submit the right code, keeping the cookies the browser had before: the reply (with
    the application's session cookie) is then "lost" by restoring them."""
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKEN")
    before = client.session.cookies.get_dict()
    kept = list(client.session.cookies)
    first = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    lose_reply(client, kept)
    return before, first


def lose_reply(client: Client, kept: list[Any]) -> None:
    """Put back the cookies the browser had before the last answer (whose reply was lost)."""
    client.session.cookies.clear()
    for cookie in kept:
        client.session.cookies.set_cookie(cookie)


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
def test_a_repeated_completing_step_answers_on_completes_answer_again(
    live: Live, entrust_emulator: EntrustEmulator, sealed: bool
) -> None:
    """The right code is accepted but its reply is lost; the browser sends it again with
    the same cookies and CSRF token: on_complete's answer comes again (the same view), the
    app's session is set, and the IdP is not asked twice."""
    calls: list[FlowView] = []
    client = Client(live(sealed=sealed, calls=calls))
    _, first = completed_with_lost_reply(client)
    assert first.status_code == 302
    assert client.get("/app/whoami").status_code == 401  # the reply was lost
    answered = len(entrust_emulator.calls_to("/complete"))
    again = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert again.status_code == 302 and again.headers["Location"] == "/app/home"
    check_security_headers(again)
    assert client.get("/app/whoami").text == "signed in as jsmith"
    assert len(calls) == 2 and calls[1] is calls[0]
    assert len(entrust_emulator.calls_to("/complete")) == answered


def test_a_lost_completing_poll_is_answered_again_in_json(
    live: Live, entrust_emulator: EntrustEmulator
) -> None:
    """The poll that completed a push lost its reply: the next poll gets the same JSON
    (``location`` and the application's cookie), not the library's own success page."""
    client = Client(live())
    client.begin("entrust", "pushmc")
    client.step("factor", factor="TOKENPUSH")
    entrust_emulator.approve_push("pushmc")
    headers = {"Accept": "application/json", "X-CSRF-Token": client.csrf}
    url = client.base + client.flow_url + "/poll"
    for _ in range(20):
        kept = list(client.session.cookies)
        body = client.session.post(url, headers=headers, timeout=10).json()
        if body["state"] != "OobPending":
            break
        time.sleep(max(0.0, body["next_poll_at"] - body["now"]) + 0.05)
    assert body["location"] == "/app/home"
    lose_reply(client, kept)
    again = client.session.post(url, headers=headers, timeout=10)
    assert again.json()["location"] == "/app/home"
    assert client.get("/app/whoami").text == "signed in as pushmc"


def test_replay_is_bounded_and_needs_the_same_browser(live: Live) -> None:
    """At most replay_limit repeats; a request with the flow cookie but another browser's
    CSRF cookie is refused; with replay_window=0 a repeat goes to the flow's page."""
    calls: list[FlowView] = []
    client = Client(live(calls=calls, replay_limit=1))
    before, _ = completed_with_lost_reply(client)
    thief = Client(client.base)
    thief.get(f"{PREFIX}/")  # a CSRF cookie of its own
    for name, value in before.items():
        if "_flow_" in name:
            thief.session.cookies.set(name, value)
    stolen = thief.request(
        "POST", f"{client.flow_url}/response", response=DEMO_TOKEN_CODE, csrf_token=client.csrf
    )
    assert stolen.status_code == 400
    kept = list(client.session.cookies)
    assert client.post(f"{client.flow_url}/response", response="1").status_code == 302
    lose_reply(client, kept)  # the replay's reply (expiring the flow cookie) is lost too
    spent = client.post(f"{client.flow_url}/response", response="1")
    assert spent.status_code == 303 and spent.headers["Location"] == client.flow_url
    assert len(calls) == 2

    off = Client(live(calls=calls, replay_window=0))
    completed_with_lost_reply(off)
    repeat = off.post(f"{off.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert repeat.status_code == 303 and len(calls) == 3


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
def test_try_again_keeps_the_flows_provider_and_user(
    live: Live, sealed: bool, framework: ModuleType
) -> None:
    """The failed page's "Try again" is the engine's ``again`` for that flow and the signed-in
    user: a new flow (new handle, new cookie) of the same provider, straight to the picker,
    "Signing in as" the same user; a user id typed at the start page is no one to vouch for,
    so a flow started there offers no "Try again"."""
    client = Client(live(sealed=sealed))
    client.begin("entrust", "jsmith")
    client.step("cancel")
    failed = client.get(client.flow_url)
    assert state(failed) == "Failed"
    again_url = f"{client.flow_url}/again"
    assert f'action="{again_url}"' in failed.text and "Try again</button>" in failed.text
    assert "Signing in as" not in failed.text  # the flow has ended
    old_url = client.flow_url
    moved = client.post(again_url)
    assert moved.status_code == 303
    client.flow_url = moved.headers["Location"].removeprefix(client.base)
    assert client.flow_url != old_url and client.flow_url.startswith(f"{PREFIX}/f/")
    assert "mfa_fsm_flow_" in moved.headers["Set-Cookie"]
    page = client.get(client.flow_url)
    assert state(page) == "AwaitingSecondFactor"  # the app vouched: no first factor asked
    assert "Signing in as <strong>jsmith</strong>" in page.text
    assert client.step("factor", factor="TOKEN").status_code == 303
    done = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert done.status_code == 302 and done.headers["Location"] == "/app/home"
    if not framework.__name__.endswith("django_app"):
        # The core's CSRF token is bound to its flow's handle: not good for the old page.
        # (Django's own CSRF token is one per browser, for every form: not bound to a flow.)
        assert client.post(again_url).status_code == 400
    # The old, failed flow's page still offers "Try again": another new flow, not an error.
    assert state(client.get(old_url)) == "Failed"
    assert client.post(again_url).status_code == 303


def test_try_again_needs_the_flows_own_user(live: Live) -> None:
    """A flow typed at the start page, the application signing nobody in: its failed page
    offers "Start again" only, and a forced ``again`` POST is refused (403) with no flow."""
    client = Client(live())
    client.start("entrust", "pwuser", "Passw0rd!")
    client.step("cancel")
    failed = client.get(client.flow_url)
    assert state(failed) == "Failed" and "/again" not in failed.text
    refused = client.post(f"{client.flow_url}/again")
    assert refused.status_code == 403
    assert heading(refused) == "Sign in first"


def test_a_pending_push_offers_the_token_code_instead(live: Live) -> None:
    """While an Entrust TOKENPUSH is pending (it takes no code), the page offers the code of
    the user's token app (TOKEN) at once; choosing it asks for the code, which signs in."""
    client = Client(live())
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKENPUSH")
    pending = client.get(client.flow_url)
    assert state(pending) == "OobPending"
    assert "Type the code from your token or authenticator app instead" in pending.text
    assert 'name="response"' not in pending.text  # a push takes no code itself
    assert client.step("factor", factor="TOKEN").status_code == 303
    asked = client.get(client.flow_url)
    assert state(asked) == "SecondFactorSelected"
    assert "Type the code from your token" not in asked.text
    done = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert done.status_code == 302 and done.headers["Location"] == "/app/home"


# -- found by the security review of the pages ---------------------------------------------


def flow_cookie_of(client: Client) -> tuple[str, str]:
    """The (name, value) of the client's flow cookie."""
    return next((c.name, c.value or "") for c in client.session.cookies if "_flow_" in c.name)


def set_cookie_headers(reply: requests.Response) -> list[str]:
    """Every Set-Cookie header of ``reply``, one per cookie."""
    return list(reply.raw.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
def test_a_stolen_flow_cookie_with_its_own_csrf_gets_no_replay(live: Live, sealed: bool) -> None:
    """Another browser holding the flow's cookie and a valid CSRF token of its own (it loaded
    the flow's page before the completion; under Django any token of Django's works) repeats
    the completing step: no on_complete (the replay is bound to the browser that completed),
    just the flow's page; the browser that completed still gets its replay."""
    calls: list[FlowView] = []
    client = Client(live(sealed=sealed, calls=calls))
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKEN")
    thief = Client(client.base)
    name, value = flow_cookie_of(client)
    thief.session.cookies.set(name, value)
    assert state(thief.get(client.flow_url)) == "SecondFactorSelected"
    assert thief.csrf and thief.csrf != client.csrf
    kept = list(client.session.cookies)
    first = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert first.status_code == 302 and len(calls) == 1
    lose_reply(client, kept)
    stolen = thief.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert stolen.status_code == 303 and stolen.headers["Location"] == client.flow_url
    assert len(calls) == 1
    assert thief.get("/app/whoami").status_code == 401
    again = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert again.status_code == 302 and len(calls) == 2
    assert client.get("/app/whoami").text == "signed in as jsmith"


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
def test_the_completing_answer_expires_the_flow_cookie(live: Live, sealed: bool) -> None:
    """on_complete's answer expires the flow's cookie (Max-Age=0), and so does a replay's:
    after the application's logout, Back and resubmit finds no flow ("start again", 410)
    and signs nobody in again."""
    calls: list[FlowView] = []
    client = Client(live(sealed=sealed, calls=calls))
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKEN")
    name, _ = flow_cookie_of(client)
    kept = list(client.session.cookies)
    done = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert done.status_code == 302
    expired = [c for c in set_cookie_headers(done) if c.startswith(f"{name}=")]
    assert len(expired) == 1 and "max-age=0" in expired[0].lower(), expired
    assert name not in client.session.cookies.get_dict()
    for cookie in list(client.session.cookies):  # the application's logout: no session
        if not cookie.name.startswith(("mfa_fsm_", "csrftoken")):
            client.session.cookies.clear(cookie.domain, cookie.path, cookie.name)
    assert client.get("/app/whoami").status_code == 401
    resubmitted = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert resubmitted.status_code == 410 and len(calls) == 1
    assert client.get("/app/whoami").status_code == 401
    lose_reply(client, kept)  # a browser whose reply was lost still holds it: the replay
    again = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert again.status_code == 302 and len(calls) == 2
    expired = [c for c in set_cookie_headers(again) if c.startswith(f"{name}=")]
    assert len(expired) == 1 and "max-age=0" in expired[0].lower(), expired
    assert name not in client.session.cookies.get_dict()


def test_a_form_with_too_many_fields_is_refused(live: Live) -> None:
    """A form of more than MAX_FORM_PARTS fields is refused with 413 (with a valid CSRF
    token), and the flow is as it was."""
    client = Client(live())
    client.begin("entrust", "jsmith")
    padding = {f"extra{i}": "x" for i in range(70)}
    reply = client.post(f"{client.flow_url}/factor", factor="TOKEN", **padding)
    assert reply.status_code == 413
    check_security_headers(reply)
    assert state(client.get(client.flow_url)) == "AwaitingSecondFactor"


def test_a_throttle_storage_that_goes_down_answers_503(
    live: Live, framework: ModuleType, entrust_emulator: EntrustEmulator
) -> None:
    """The throttle counts in a real Redis (``redis://``; ``async+redis://`` under Starlette)
    that stops while a flow runs: the next step answers 503 with Retry-After (JSON with
    ``retry_after`` to the script), the IdP is not called and the flow is as it was."""
    from tests.support.servers import redis_server  # noqa: PLC0415

    asynchronous = framework.__name__.endswith("starlette_app")
    with redis_server() as server:
        client = Client(live(throttle=Throttle(("async+" if asynchronous else "") + server.url)))
        assert client.begin("entrust", "jsmith").status_code == 303
        client.step("factor", factor="TOKEN")  # no count: nothing is sent or answered
    calls = len(entrust_emulator.calls)
    failed = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
    assert failed.status_code == 503 and int(failed.headers["Retry-After"]) >= 1
    check_security_headers(failed)
    scripted = client.session.post(
        client.base + client.flow_url + "/response",
        data={"response": DEMO_TOKEN_CODE},
        headers={"Accept": "application/json", "X-CSRF-Token": client.csrf},
        timeout=10,
    )
    assert scripted.status_code == 503 and scripted.json()["retry_after"] >= 1
    assert len(entrust_emulator.calls) == calls
    assert state(client.get(client.flow_url)) == "SecondFactorSelected"
    assert client.begin("entrust", "jsmith").status_code == 503  # a start counts too


def test_another_way_sends_at_once_and_the_running_one_is_shown_again(live: Live) -> None:
    """With the default throttle, "Try another way" sends another channel or factor at once
    (a push, then an SMS code, then the code by e-mail, within seconds); picking the one
    running again shows its page, nothing sent; an early "Send a new code" is a notice on
    the same page."""
    client = Client(live(throttle=Throttle()))
    client.begin("entrust", "jsmith")
    for factor, delivery, expected in [
        ("TOKENPUSH", "", "OobPending"),
        ("OTP", "SMS", "SecondFactorSelected"),
        ("OTP", "EMAIL", "SecondFactorSelected"),
    ]:
        form = {"factor": factor, **({"delivery": delivery} if delivery else {})}
        assert client.step("factor", **form).status_code == 303, (factor, delivery)
        assert state(client.get(client.flow_url)) == expected
    # The running factor picked again: its page, no send (a send would be ResendTooSoon).
    again = client.step("factor", factor="OTP", delivery="EMAIL")
    assert again.status_code == 303
    assert again.headers["Location"].endswith(client.flow_url)
    # "Send a new code" before resend_at: the code page again, with an inline notice.
    early = client.step("resend")
    assert early.status_code == 429 and int(early.headers["Retry-After"]) >= 1
    assert state(early) == "SecondFactorSelected"
    assert 'id="mfa-notice"' in early.text and "Nothing was sent" in early.text
    assert 'name="response"' in early.text  # the code already sent still works


def test_a_throttled_switch_is_a_notice_on_the_same_page(live: Live) -> None:
    """Past the per-user send rate, another factor is refused on the running challenge's
    own page (429, Retry-After), not a separate error page."""
    client = Client(live(throttle=Throttle(sends_per_user="1/15 minutes")))
    client.begin("entrust", "jsmith")
    client.step("factor", factor="OTP", delivery="SMS")
    refused = client.step("factor", factor="OTP", delivery="EMAIL")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert state(refused) == "SecondFactorSelected"
    assert "Too many requests were sent to your device" not in heading(refused)
    assert "Nothing was sent" in refused.text


def test_resend_button_waits_for_the_script(live: Live) -> None:
    """Before resend_at the button says how long to wait (in seconds, no server clock) and
    carries the wait for the page's script, which disables and then enables it."""
    client = Client(live())
    client.begin("entrust", "jsmith")
    client.step("factor", factor="OTP", delivery="SMS")
    page = client.get(client.flow_url)
    found = re.search(r'id="mfa-resend"[^>]*data-mfa-resend-in="(\d+)"', page.text)
    assert found and 1 <= int(found.group(1)) <= 31  # resend_at is rounded up
    assert "available in" in page.text and "mfa_fsm.js" in page.text


def test_the_failed_page_says_it_once_with_one_primary(
    live: Live, entrust_emulator: EntrustEmulator
) -> None:
    """A push declined on the device: the failed page gives the reason once (not again in
    the IdP's words), one next step, one primary button ("Try again", for the signed-in
    user) and "Start over" as a plain link; it does not say the user is signed in."""
    client = Client(live())
    client.begin("entrust", "jsmith")
    client.step("factor", factor="TOKENPUSH")
    entrust_emulator.deny_push("jsmith")
    deadline = time.monotonic() + 10
    failed = client.get(client.flow_url)
    while state(failed) == "OobPending" and time.monotonic() < deadline:
        time.sleep(0.5)
        client.post(f"{client.flow_url}/poll")  # "Check now" (a poll before it is due waits)
        failed = client.get(client.flow_url)
    assert state(failed) == "Failed"
    text = re.sub(r"<[^>]+>", " ", failed.text).lower()
    assert text.count("declined") == 1, text
    assert "signed in to the application" not in text
    assert len(re.findall(r'class="[^"]*mfa-primary', failed.text)) == 1
    assert "Try again</button>" in failed.text
    assert ">Start over from the sign-in page</a>" in failed.text
