"""The Django adapter (mfa_fsm.web.django) over real HTTP: Django's own CSRF check guards
every step, the pages' script's X-CSRF-Token is accepted by it, the size limit comes before
anything reads the body, static files and unknown paths, completion by a poll (JSON with
the application's redirect and session cookie), and configuration from settings.

The browser suite (tests/web/test_browser*.py) runs every flow on the same Django app in
Chromium; these tests check what a browser does not show."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mfa_fsm import EntrustConfig
from mfa_fsm.core.errors import VerifiedUserRequired
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_APP_PASSWORDS
from tests.support.web import Client, serve
from tests.support.web_apps import LiveApp, demo_pages, django_app
from tests.support.web_apps.django_app import configure


@pytest.fixture(scope="module", params=["sync", "async"])
def live(request: pytest.FixtureRequest) -> Iterator[LiveApp]:
    """The Django test app: blocking views over an Engine under WSGI, or async views over an
    AsyncEngine under ASGI (uvicorn)."""
    with LiveApp("django", asynchronous=request.param == "async") as running:
        yield running


def signed_in_to_the_app(live: LiveApp, user: str) -> tuple[requests.Session, str, str]:
    """A browser that signed in on the Django app's own page: (session, the flow's URL,
    Django's CSRF token from the flow's page)."""
    browser = requests.Session()
    page = browser.get(live.url + "signin", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    form = {"csrfmiddlewaretoken": token.group(1), "user": user}
    form["password"] = DEMO_APP_PASSWORDS[user]
    begun = browser.post(live.url + "signin", data=form, timeout=10, allow_redirects=False)
    assert begun.status_code == 303, begun.text[:500]
    flow_url = live.url.rstrip("/") + begun.headers["Location"]
    flow_page = browser.get(flow_url, timeout=10)
    csrf = re.search(r'name="(?:csrfmiddlewaretoken|csrf_token)" value="([^"]+)"', flow_page.text)
    assert csrf, flow_page.text[:500]
    return browser, flow_url, csrf.group(1)


def test_a_step_without_djangos_csrf_token_is_refused(live: LiveApp) -> None:
    """A step posted without Django's token (a cross-site form), or with a forged one, is
    refused by Django's check: 400 with the pages' problem page; the IdP is not asked; the
    same step with the token goes through."""
    browser, flow_url, csrf = signed_in_to_the_app(live, "jsmith")
    calls = len(live.emulator("entrust").calls)
    refused = browser.post(
        flow_url + "/factor", data={"factor": "TOKEN"}, timeout=10, allow_redirects=False
    )
    assert refused.status_code == 400
    assert "The form has expired" in refused.text
    assert "frame-ancestors 'none'" in refused.headers["Content-Security-Policy"]
    forged = browser.post(
        flow_url + "/factor",
        data={"factor": "TOKEN", "csrfmiddlewaretoken": "x" * 64},
        timeout=10,
        allow_redirects=False,
    )
    assert forged.status_code == 400
    assert len(live.emulator("entrust").calls) == calls
    accepted = browser.post(
        flow_url + "/factor",
        data={"factor": "TOKEN", "csrfmiddlewaretoken": csrf},
        timeout=10,
        allow_redirects=False,
    )
    assert accepted.status_code == 303
    assert len(live.emulator("entrust").calls) == calls + 1


def test_a_poll_completes_with_the_apps_redirect_and_session(live: LiveApp) -> None:
    """The pages' script polls with X-CSRF-Token (Django's check takes it); the poll that
    completes answers JSON pointing where on_complete redirects, with the app's new session
    cookie, and the app's home then knows the user."""
    browser, flow_url, csrf = signed_in_to_the_app(live, "pushmc")
    picked = browser.post(
        flow_url + "/factor",
        data={"factor": "TOKENPUSH", "csrfmiddlewaretoken": csrf},
        timeout=10,
        allow_redirects=False,
    )
    assert picked.status_code == 303
    json_headers = {"Accept": "application/json", "X-CSRF-Token": csrf}
    no_token = browser.post(flow_url + "/poll", headers={"Accept": "application/json"}, timeout=10)
    assert no_token.status_code == 400
    assert "The form has expired" in no_token.json()["heading"]
    live.emulator("entrust").approve_push("pushmc")
    answer: dict[str, Any] = {}
    for _ in range(20):
        reply = browser.post(flow_url + "/poll", headers=json_headers, timeout=10)
        assert reply.status_code == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        answer = reply.json()
        if "location" in answer:
            assert "sessionid" in reply.cookies
            break
        time.sleep(max(0.05, answer.get("next_poll_at", 0) - answer.get("now", 0)))
    assert answer.get("location") == "/", answer
    home = browser.get(live.url, timeout=10)
    assert "signed you in as" in home.text
    assert "pushmc" in home.text


def test_a_body_over_the_limit_is_refused_before_it_is_read(live: LiveApp) -> None:
    browser, flow_url, csrf = signed_in_to_the_app(live, "jsmith")
    calls = len(live.emulator("entrust").calls)
    big = {"factor": "TOKEN", "csrfmiddlewaretoken": csrf, "pad": "x" * 20_000}
    refused = browser.post(flow_url + "/factor", data=big, timeout=10, allow_redirects=False)
    assert refused.status_code == 413
    assert "Too much data" in refused.text
    assert len(live.emulator("entrust").calls) == calls


def test_static_files_and_unknown_paths(live: LiveApp) -> None:
    css = requests.get(live.url + "login/_mfa_fsm_static/mfa_fsm.css", timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    script = requests.get(live.url + "login/_mfa_fsm_static/mfa_fsm.js", timeout=10)
    assert script.status_code == 200
    assert "X-CSRF-Token" in script.text
    for path in ("login/_mfa_fsm_static/nothing.css", "login/no/such/page", "login/f/bad"):
        missing = requests.get(live.url + path, timeout=10)
        assert missing.status_code == 404, path
        assert "Content-Security-Policy" in missing.headers
    escape = requests.get(live.url + "login/_mfa_fsm_static/..%2F__init__.py", timeout=10)
    assert escape.status_code == 404
    assert "import" not in escape.text


def test_a_method_the_route_does_not_take(live: LiveApp) -> None:
    refused = requests.get(live.url + "login/begin", timeout=10)
    assert refused.status_code == 405


#: The engine settings.MFA_FSM names in test_configured_from_settings.
ENGINE: Any = None


def current_user(request: Any) -> object:
    """The current_user settings.MFA_FSM names: the Django test app's signed-in user."""
    return demo_pages.current_user(request.session.get("demo_user"))


def on_complete(request: Any, view: Any) -> Any:
    """The on_complete settings.MFA_FSM names (never reached here)."""
    raise AssertionError("not called")


def test_configured_from_settings(live: LiveApp) -> None:
    """include("mfa_fsm.web.django.urls") builds the pages from settings.MFA_FSM; without
    it, or with a wrong path, Django says what to set."""
    configure()
    from django.core.exceptions import ImproperlyConfigured  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    from mfa_fsm.web.django.views import from_settings  # noqa: PLC0415

    with pytest.raises(ImproperlyConfigured, match="MFA_FSM"):
        from_settings()
    global ENGINE  # noqa: PLW0603 - the dotted path names a module attribute
    ENGINE = live.engine()
    config = {
        "ENGINE": f"{__name__}.ENGINE",
        "ON_COMPLETE": f"{__name__}.on_complete",
        "CURRENT_USER": f"{__name__}.current_user",
        "OPTIONS": {"title": "From settings", "secure_cookies": False},
    }
    with override_settings(MFA_FSM=config):
        mfa = from_settings()
        assert mfa.core.title == "From settings"
        assert {p.name for p in mfa.patterns if p.name} >= {"start_page", "begin", "flow", "step"}
    with (
        override_settings(MFA_FSM={**config, "ENGINE": f"{__name__}.NOTHING"}),
        pytest.raises(ImproperlyConfigured, match="ENGINE"),
    ):
        from_settings()
    without_user = {k: v for k, v in config.items() if k != "CURRENT_USER"}
    with override_settings(MFA_FSM=without_user), pytest.raises(VerifiedUserRequired):
        from_settings()


def test_djangos_csrf_check_without_the_middleware(entrust_emulator: EntrustEmulator) -> None:
    """A project that left CsrfViewMiddleware out still has every step checked by Django's
    CSRF code (the views run it), and the pages still set Django's CSRF cookie."""
    configure()
    from django.conf import settings  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    config = EntrustConfig(
        base_url=entrust_emulator.base_url,
        application_id=entrust_emulator.application_id,
        retry=RetryPolicy(attempts=1),
    )
    without = [m for m in settings.MIDDLEWARE if not m.endswith("CsrfViewMiddleware")]
    assert len(without) == len(settings.MIDDLEWARE) - 1
    with override_settings(MIDDLEWARE=without):
        app = django_app.make_app(
            django_app.make_engine([config]), secure_cookies=False, throttle=None
        )
    with serve(app) as base:
        client = Client(base)
        assert client.begin("entrust", "jsmith").status_code == 303
        assert "csrftoken" in client.session.cookies
        calls = len(entrust_emulator.calls)
        refused = client.request("POST", f"{client.flow_url}/factor", factor="TOKEN")
        assert refused.status_code == 400
        assert len(entrust_emulator.calls) == calls
        assert client.step("factor", factor="TOKEN").status_code == 303
        assert len(entrust_emulator.calls) == calls + 1
