"""The demo application: its control page (the user's phone) and the live diagram."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
import requests

from mfa_fsm.core.errors import UsageError
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.testing.demo_idps import NUMBER_CHOICES
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from mfa_fsm.web import demo as demo_module
from mfa_fsm.web.demo import Demo
from tests.support.demo_client import DemoUserAgent, demo_process


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    with Demo() as running:
        yield running


@pytest.fixture(scope="module")
def unthrottled() -> Iterator[Demo]:
    """A demo without throttles: one person may ask for several pushes in a row here."""
    with Demo(throttle=None) as running:
        yield running


def control_token(session: requests.Session, demo: Demo) -> str:
    page = session.get(demo.url + "emulator", timeout=5).text
    found = re.search(r'data-control-token="([^"]+)"', page)
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
        "First factor: jsmith, checked by the mfa_fsm demo application "
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


def test_live_diagram_is_drawn_with_graphviz_or_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a flow the demo draws its diagram with the state filled: SVG; without
    Graphviz, the state's next events as a list (never Mermaid source text)."""
    assert shutil.which("dot"), "Graphviz's dot is missing: run scripts/setup.sh"
    drawn = demo_module._diagram("entrust", "OobPending")
    assert drawn.startswith('<div role="img"')
    assert "<svg" in drawn
    assert "class OobPending current" in drawn
    demo_module._diagram.cache_clear()
    monkeypatch.setattr(demo_module.shutil, "which", lambda name: None)
    try:
        ended = demo_module._diagram("cyberark", "Failed")
        assert ended == "<p>Failed is a final state: the flow has ended.</p>"
        listed = demo_module._diagram("entrust", "OobPending")
        assert '<ul class="mfa-flow-next">' in listed
        assert "poll [completed] → <strong>Completed</strong>" in listed
        assert "cancel [cancelled]; expire [expired] → <strong>Failed</strong>" in listed
        assert "<pre>" not in listed and "&lt;br" not in listed and "classDef" not in listed
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
    signed in; its answer expires the flow's cookie, so the flow's page afterwards says
    start again, while a browser whose reply was lost (it still holds the cookie) sees the
    completed page, which says who checked the first factor (sealed: "out of date", 409, as
    the hand-off superseded that cookie's sealed token)."""
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
        lost = requests.Session()  # the same browser, had the completing reply been lost
        lost.cookies.update(session.cookies)
        home = session.post(
            flow_url + "/response",
            data={"response": DEMO_TOKEN_CODE, "csrf_token": csrf.group(1)},
            timeout=5,
        )
        assert home.url == running.url
        assert 'data-state="DemoHome"' in home.text
        assert "signed you in as\n  <code>jsmith</code>" in home.text
        assert session.get(flow_url, timeout=5).status_code == 410
        completed = lost.get(flow_url, timeout=5)
        if sealed:  # the lost cookie's sealed token was superseded by the hand-off's
            assert completed.status_code == 409
            return
        assert 'data-state="Completed"' in completed.text
        assert "First factor: jsmith, checked by the mfa_fsm demo application" in completed.text


NUMBER_SHOWN = re.compile(r'id="mfa-number">(\d+)<')


def test_number_matching_offers_the_page_number_among_decoys(unthrottled: Demo) -> None:
    """The control page offers the number the login page shows among two decoys, as phones
    do; tapping a decoy refuses the push (the login fails as denied), tapping the right one
    signs the user in."""
    wrong = DemoUserAgent(unthrottled.url)
    assert wrong.sign_in("pushmc", "pushmc-app-password") == "AwaitingSecondFactor"
    assert wrong.step("factor", factor="TOKENPUSH") == "OobPending"
    shown = NUMBER_SHOWN.search(wrong.page)
    assert shown
    offered = wrong.numbers_offered("pushmc")
    assert len(offered) == NUMBER_CHOICES
    assert len(set(offered)) == NUMBER_CHOICES
    assert shown.group(1) in offered
    assert offered == sorted(offered)  # the position tells nothing
    assert wrong.numbers_offered("pushmc") == offered  # a reload offers the same numbers
    assert "Approve pushmc" not in wrong.control_page()  # no plain approve: pick a number
    decoy = next(number for number in offered if number != shown.group(1))
    done = wrong.on_phone("entrust", "pushmc", "approve", number=decoy)
    assert "is not the number the login page shows" in done
    assert wrong.poll_until_settled() == "Failed"
    assert unthrottled.emulator("entrust").pending_mutual_challenge("pushmc") is None

    right = DemoUserAgent(unthrottled.url)
    right.sign_in("pushmc", "pushmc-app-password")
    right.step("factor", factor="TOKENPUSH")
    shown = NUMBER_SHOWN.search(right.page)
    assert shown
    assert shown.group(1) in right.numbers_offered("pushmc")
    done = right.on_phone("entrust", "pushmc", "approve", number=shown.group(1))
    assert "approved the request for pushmc" in done
    assert right.poll_until_settled() == "DemoHome"


def test_cyberark_number_matching_on_the_phone(unthrottled: Demo) -> None:
    """CyberArk's bob (passwordless: a push with GeneratedAuthValue) gets the same phone: the
    page's number among decoys of two digits without a leading zero, as CyberArk's are; the
    right tap signs him in."""
    agent = DemoUserAgent(unthrottled.url)
    assert agent.start("cyberark", "bob", "unused") == "AwaitingFirstFactor"
    assert agent.step("first-factor") == "OobPending"
    shown = NUMBER_SHOWN.search(agent.page)
    assert shown
    assert shown.group(1) == unthrottled.emulator("cyberark").number_shown("bob")
    offered = agent.numbers_offered("bob")
    assert len(set(offered)) == NUMBER_CHOICES
    assert shown.group(1) in offered
    assert all(len(number) == 2 and not number.startswith("0") for number in offered)
    agent.on_phone("cyberark", "bob", "approve", number=shown.group(1))
    assert agent.poll_until_settled() == "DemoHome"
    assert unthrottled.emulator("cyberark").number_shown("bob") is None


def test_number_matching_without_a_number_approves_nothing(unthrottled: Demo) -> None:
    """A plain approve (no number picked) of a push with a number leaves it waiting."""
    agent = DemoUserAgent(unthrottled.url)
    agent.sign_in("pushmc", "pushmc-app-password")
    agent.step("factor", factor="TOKENPUSH")
    done = agent.on_phone("entrust", "pushmc", "approve")
    assert "tap the number the login page shows" in done
    assert unthrottled.emulator("entrust").pending_mutual_challenge("pushmc") is not None
    agent.on_phone("entrust", "pushmc", "deny")
    assert agent.poll_until_settled() == "Failed"


def test_control_page_shows_the_grid_card_and_a_grid_login_uses_it(unthrottled: Demo) -> None:
    """jsmith's grid card is on the control page, A1-style with headers; the cells the login
    page asks for, read from it, sign jsmith in."""
    agent = DemoUserAgent(unthrottled.url)
    page = agent.control_page()
    assert 'id="grid-jsmith"' in page
    assert "serial GRID-0001" in page
    emulator = unthrottled.emulator("entrust")
    assert f'data-cell="A1">{emulator.grid_value("jsmith", 0, 0)}<' in page
    assert f'data-cell="J5">{emulator.grid_value("jsmith", 4, 9)}<' in page
    assert '<th scope="col">J</th>' in page
    assert 'id="grid-pwuser"' not in page  # no GRID authenticator
    agent.sign_in("jsmith", "jsmith-app-password")
    assert agent.step("factor", factor="GRID") == "SecondFactorSelected"
    cells = re.findall(r"<li>([A-J][1-5])</li>", agent.page)
    assert len(cells) == 3
    answer = " ".join(
        re.search(rf'data-cell="{cell}">(\w+)<', page).group(1)  # type: ignore[union-attr]
        for cell in cells
    )
    assert agent.step("response", response=answer) == "DemoHome"


def test_control_page_refreshes_itself_when_a_code_is_sent(unthrottled: Demo) -> None:
    """The page loads its same-origin script (and a meta refresh without scripts); the state
    route's fingerprint changes when a code is sent, and never carries the code."""
    agent = DemoUserAgent(unthrottled.url)
    page = agent.control_page()
    script = re.search(r'<script src="([^"]+)" defer>', page)
    assert script
    served = agent.session.get(unthrottled.url.rstrip("/") + script.group(1), timeout=5)
    assert served.status_code == 200
    assert "emulator-pause" in served.text
    assert '<noscript><meta http-equiv="refresh"' in page
    assert 'aria-pressed="false"' in page
    state_url = unthrottled.url + "emulator/state"
    before = agent.session.get(state_url, timeout=5).json()["fingerprint"]
    assert f'data-fingerprint="{before}"' in page
    agent.sign_in("jsmith", "jsmith-app-password")
    assert agent.step("factor", factor="OTP", delivery="SMS") == "SecondFactorSelected"
    after = agent.session.get(state_url, timeout=5)
    assert after.json()["fingerprint"] != before
    code = agent.code_sent("jsmith")
    assert code not in after.text
    assert agent.step("response", response=code) == "DemoHome"


def test_demo_framework_choice_is_checked() -> None:
    """`--framework` takes flask, fastapi or django; one this build cannot serve is a
    UsageError that says to use flask, before anything starts."""
    with pytest.raises(UsageError, match="one of flask, fastapi, django"):
        Demo(framework="bottle").start()
    refused = Demo(framework="fastapi", store=MemoryStore())
    with pytest.raises(UsageError, match="--store URL is for --framework flask or django"):
        refused.start()
    with pytest.raises(RuntimeError, match="emulator not started"):
        refused.emulator("entrust").base_url  # noqa: B018 - stopped again: nothing left running


@pytest.mark.parametrize("framework", ["flask", "fastapi", "django"])
def test_demo_on_each_framework_completes_logins(framework: str) -> None:
    """`demo --framework X` serves the same demo: the application's sign-in (with X's CSRF),
    a push approved by tapping the number on the control page, a code read from it, the home
    page signed in, the demo's security headers on its own pages."""
    with demo_process("--framework", framework) as url:
        push = DemoUserAgent(url)
        assert push.sign_in("pushmc", "pushmc-app-password") == "AwaitingSecondFactor"
        assert push.step("factor", factor="TOKENPUSH") == "OobPending"
        shown = NUMBER_SHOWN.search(push.page)
        assert shown
        assert shown.group(1) in push.numbers_offered("pushmc")
        push.on_phone("entrust", "pushmc", "approve", number=shown.group(1))
        assert push.poll_until_settled() == "DemoHome"
        code = DemoUserAgent(url)
        code.sign_in("jsmith", "jsmith-app-password")
        assert code.step("factor", factor="OTP", delivery="SMS") == "SecondFactorSelected"
        assert code.step("response", response=code.code_sent("jsmith")) == "DemoHome"
        control = code.session.get(url + "emulator", timeout=5)
        assert control.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert control.headers["X-Content-Type-Options"] == "nosniff"
        state = code.session.get(url + "emulator/state", timeout=5)
        assert set(state.json()) == {"fingerprint"}
        wrong = DemoUserAgent(url)
        wrong.session.get(url + "signin", timeout=5)
        refused = wrong.session.post(
            url + "signin",
            data={"user": "jsmith", "password": "jsmith-app-password"},
            timeout=5,
        )
        assert refused.status_code in (400, 403)  # no CSRF token: the core's, or Django's
        assert "AwaitingSecondFactor" not in refused.text


def test_the_fastapi_demo_takes_no_x_forwarded_for() -> None:
    """uvicorn trusts X-Forwarded-For from loopback by default; the FastAPI demo turns that
    off, so a client naming another address in each request still counts as one address:
    the per-client start throttle refuses its third start (429)."""
    from mfa_fsm.core.throttle import Throttle  # noqa: PLC0415
    from tests.support.web import Client  # noqa: PLC0415

    throttle = Throttle(starts_per_client="2/minute")
    with Demo(framework="fastapi", throttle=throttle) as running:
        client = Client(running.url.rstrip("/"))
        statuses = []
        for number in range(3):
            client.session.headers["X-Forwarded-For"] = f"198.51.100.{number + 1}"
            statuses.append(
                client.start("entrust", f"user{number}", "not-the-password").status_code
            )
    assert statuses == [401, 401, 429]


def test_control_page_offers_approve_and_deny_only_while_a_request_waits(
    unthrottled: Demo,
) -> None:
    """Approve and Deny are on the control page only beside a user whose push waits (and
    Deny alone beside the numbers of a push with number matching); once answered they go."""
    agent = DemoUserAgent(unthrottled.url)
    idle = agent.control_page()
    assert "Approve jsmith" not in idle and "Deny jsmith" not in idle
    assert "Approve alice" not in idle and "Deny dsmith" not in idle
    agent.sign_in("jsmith", "jsmith-app-password")
    assert agent.step("factor", factor="TOKENPUSH") == "OobPending"
    waiting = agent.control_page()
    assert "Approve jsmith's entrust request" in waiting
    assert "Deny jsmith's entrust request" in waiting
    assert "Approve pwuser" not in waiting  # nobody else has a request
    agent.on_phone("entrust", "jsmith", "approve")
    assert agent.poll_until_settled() == "DemoHome"
    assert "Approve jsmith" not in agent.control_page()


def test_start_page_lists_the_demo_users_by_provider(unthrottled: Demo) -> None:
    """Beside the start page, one closed details per provider names its users; each user's
    way in is a definition inside it (no wide table)."""
    start = requests.get(unthrottled.url + "login/", timeout=5).text
    assert "<table" not in start
    assert re.search(r"<summary><strong>Duo</strong>: dsmith, dcall", start) or re.search(
        r"<summary><strong>[^<]*Duo[^<]*</strong>: dsmith", start
    )
    assert "<dt><code>pwuser</code></dt><dd>password Passw0rd!" in start
