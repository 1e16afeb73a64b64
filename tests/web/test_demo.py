"""The demo application: its control page (the user's phone) and the live diagram."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
import requests

from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from mfa_fsm.web import demo as demo_module
from mfa_fsm.web.demo import Demo


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    with Demo() as running:
        yield running


def control_token(session: requests.Session, demo: Demo) -> str:
    page = session.get(demo.url + "emulator", timeout=5).text
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found
    return found.group(1)


def test_home_is_the_demo_sign_in_page(demo: Demo) -> None:
    """The demo's root opens its own sign-in page, which prints the demo application's
    passwords; the login start page lists the demo users."""
    reply = requests.get(demo.url, timeout=5)
    assert reply.url.endswith("/signin")
    assert "jsmith-app-password" in reply.text
    start = requests.get(demo.url + "login/", timeout=5)
    assert "Demo users" in start.text
    assert "alice-password" in start.text


def signin_token(session: requests.Session, url: str) -> str:
    """The CSRF token of the demo's sign-in form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url, timeout=5).text)
    assert found
    return found.group(1)


def test_demo_sign_in_vouches_only_after_its_password(demo: Demo) -> None:
    """A wrong demo password is refused (401) and nothing reaches Entrust; the right one
    begins the second factor, and the page says who checked which password."""
    session = requests.Session()
    calls = len(demo.emulator("entrust").calls)
    token = signin_token(session, demo.url + "signin")
    wrong = session.post(
        demo.url + "signin",
        data={"user": "jsmith", "password": "guess", "csrf_token": token},
        timeout=5,
    )
    assert wrong.status_code == 401
    assert "guess" not in wrong.text
    assert len(demo.emulator("entrust").calls) == calls
    right = session.post(
        demo.url + "signin",
        data={"user": "jsmith", "password": "jsmith-app-password", "csrf_token": token},
        timeout=5,
    )
    assert right.status_code == 200
    assert 'data-state="AwaitingSecondFactor"' in right.text
    assert (
        "First factor: jsmith&#39;s password, checked by the mfa_fsm demo application "
        "(not the identity provider)." in right.text
    )


def test_control_page_approves_and_reports_nothing_pending(demo: Demo) -> None:
    """Approve/deny buttons drive the emulators; with no push waiting it says so."""
    session = requests.Session()
    token = control_token(session, demo)
    reply = session.post(
        demo.url + "emulator/entrust/jsmith/approve", data={"token": token}, timeout=5
    )
    assert reply.status_code == 200
    assert "no request is waiting for jsmith" in reply.text
    reply = session.post(
        demo.url + "emulator/cyberark/alice/deny", data={"token": token}, timeout=5
    )
    assert "no request is waiting for alice" in reply.text


def test_control_page_needs_its_token_and_known_users(demo: Demo) -> None:
    """A control POST without the page's token is refused; unknown users and actions are 404."""
    session = requests.Session()
    url = demo.url + "emulator/entrust/jsmith/approve"
    assert session.post(url, data={"token": "forged"}, timeout=5).status_code == 400
    token = control_token(session, demo)
    nobody = demo.url + "emulator/entrust/nobody/approve"
    assert session.post(nobody, data={"token": token}, timeout=5).status_code == 404
    flag = demo.url + "emulator/entrust/jsmith/flag"
    assert session.post(flag, data={"token": token}, timeout=5).status_code == 404


def test_live_diagram_is_drawn_with_graphviz_or_mermaid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a flow the demo draws its diagram with the state filled: SVG, else Mermaid."""
    assert shutil.which("dot"), "Graphviz's dot is missing: run scripts/setup.sh"
    drawn = demo_module._diagram("entrust", "OobPending")
    assert drawn.startswith('<div role="img"')
    assert "<svg" in drawn
    assert "class OobPending current" in drawn
    demo_module._diagram.cache_clear()
    monkeypatch.setattr(demo_module.shutil, "which", lambda name: None)
    try:
        text = demo_module._diagram("cyberark", "Failed")
        assert text.startswith("<pre>")
        assert "class Failed current" in text
        assert demo_module._diagram("okta", "Failed") == ""
    finally:
        demo_module._diagram.cache_clear()


def test_sealed_demo_runs_without_a_store() -> None:
    """`demo --sealed` keeps flows in the cookie: nothing is stored on the server."""
    with Demo(sealed=True) as running:
        assert running.store is None
        assert "sealed" in running.store_description
        session = requests.Session()
        reply = session.post(
            running.url + "signin",
            data={
                "user": "jsmith",
                "password": "jsmith-app-password",
                "csrf_token": signin_token(session, running.url + "signin"),
            },
            timeout=5,
        )
        assert 'data-state="AwaitingSecondFactor"' in reply.text
        cookie = next(c for c in session.cookies if c.name.startswith("mfa_fsm_flow_"))
        assert len(cookie.value or "") > 1000  # the sealed snapshot travels in it


def test_demo_needs_a_store_or_sealed_state() -> None:
    """create_app refuses to run with neither a store nor sealed state."""
    with Demo() as running, pytest.raises(ValueError, match="store"):
        demo_module.create_app(running.idps, store=None)


def test_demo_sign_in_needs_its_csrf_token(demo: Demo) -> None:
    """The demo's own sign-in form carries a CSRF token: a post without it (a cross-site
    form) is refused and reaches no IdP, even with the right password."""
    session = requests.Session()
    calls = len(demo.emulator("entrust").calls)
    for token in (None, "forged"):
        data = {"user": "jsmith", "password": "jsmith-app-password"}
        if token is not None:
            signin_token(session, demo.url + "signin")
            data["csrf_token"] = token
        reply = session.post(demo.url + "signin", data=data, timeout=5)
        assert reply.status_code == 400
        assert "AwaitingSecondFactor" not in reply.text
    assert len(demo.emulator("entrust").calls) == calls


@pytest.mark.parametrize("sealed", [False, True])
def test_demo_on_complete_signs_in_and_lands_home(sealed: bool) -> None:
    """The demo's on_complete makes its own session and lands on its home, which says who is
    signed in; the flow's page afterwards still says who checked the first factor (sealed
    mode too)."""
    with Demo(sealed=sealed) as running:
        session = requests.Session()
        token = signin_token(session, running.url + "signin")
        page = session.post(
            running.url + "signin",
            data={"user": "jsmith", "password": "jsmith-app-password", "csrf_token": token},
            timeout=5,
        )
        flow_url = page.url
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        page = session.post(
            flow_url + "/factor", data={"factor": "TOKEN", "csrf_token": csrf.group(1)}, timeout=5
        )
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        home = session.post(
            flow_url + "/response",
            data={"response": DEMO_TOKEN_CODE, "csrf_token": csrf.group(1)},
            timeout=5,
        )
        assert home.url == running.url
        assert 'data-state="DemoHome"' in home.text
        assert "signed you in as\n  <code>jsmith</code>" in home.text
        completed = session.get(flow_url, timeout=5)
        assert 'data-state="Completed"' in completed.text
        assert (
            "First factor: jsmith&#39;s password, checked by the mfa_fsm demo application"
            in completed.text
        )
