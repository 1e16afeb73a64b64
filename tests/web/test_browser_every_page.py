"""Every page the login can show, reached in a real browser and photographed, so axe-core
checks each (the ``shot`` fixture fails a test on any violation). The other browser tests
photograph the pages of the flows they drive; this file reaches the rest: the first
factor's "Choose how to sign in" list and its typed password, the new-password page, and
the problem pages (404, 405, 413, 400 refused form, 503 store unavailable).

The pages of ``templates/mfa_fsm/`` and the browser test that photographs each:

* ``start.html``: test_browser (start, start-signed-in, typed-external-refused)
* ``choose_factor.html``: test_browser (choose-factor, choose-mechanism)
* ``code.html``: test_browser (code, token, code-rejected, security-questions)
* ``approve.html``: test_browser (approve-on-device, sms-sent, approve-no-script)
* ``completed.html``: test_browser (completed, completed-no-script)
* ``failed.html``: test_browser (failed-rejected, failed-denied, failed-expired, ...)
* ``first_factor.html``: test_browser (passwordless-first-factor); here: the list of first
  factors, the typed password, the new password
* ``problem.html``: test_browser (start-again: 410, unavailable: the IdP's 503),
  test_browser_recovery (resend-too-soon: 429); here: 404, 405, 413, 400, the store's 503
* ``demo/signin.html``, ``demo/home.html``, ``demo/emulator.html``: test_browser
  (demo-signin, app-home-after-push-*, emulator-control)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import LocatorAssertions, Page, expect

from mfa_fsm.web.core import DEFAULT_MAX_FIELD_CHARS
from mfa_fsm.web.demo import Demo
from tests.support.web_apps import FRAMEWORKS, LiveApp
from tests.web.conftest import Shot
from tests.web.test_browser import start
from tests.web.test_recovery import OutageStore


def h1(page: Page) -> LocatorAssertions:
    return expect(page.get_by_role("heading", level=1))


def test_first_factor_list_then_typed_password(page: Page, demo: Demo, shot: Shot) -> None:
    """A CyberArk first challenge offering a password or a push: the page lists them under
    "Choose how to sign in"; choosing the password asks for it, typed hidden."""
    demo.emulator("cyberark").add_user(
        "henry", password="henry-password", challenges=[["UP", "OTP"], ["SMS"]]
    )
    start(page, demo, "cyberark", "henry", "henry-password")
    h1(page).to_have_text("Choose how to sign in")
    shot(page, "first-factor-choices")
    page.get_by_role("button", name="Password").click()
    h1(page).to_have_text("Enter your password")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute("type", "password")
    shot(page, "first-factor-password")
    page.get_by_label("Password", exact=True).fill("henry-password")
    page.get_by_role("button", name="Continue").click()
    h1(page).to_have_text("Approve the sign-in on your device")


def test_new_password(page: Page, demo: Demo, shot: Shot) -> None:
    """CyberArk asks for a new password after the old one (a ``NewPackage`` with ``RESET``):
    the page asks for it (CyberArk's prompt as its hint), typed hidden; the new one signs in."""
    demo.emulator("cyberark").add_user(
        "irene", password="irene-password", challenges=[["UP"]], new_package=[["RESET"]]
    )
    start(page, demo, "cyberark", "irene", "irene-password")
    h1(page).to_have_text("Choose a new password")
    field = page.get_by_label("New password")
    expect(field).to_have_attribute("autocomplete", "new-password")
    expect(field).to_have_accessible_description("Enter a new password")  # the prompt
    shot(page, "new-password")
    field.fill("irene-new-password")
    page.get_by_role("button", name="Continue").click()
    h1(page).to_have_text("You are signed in")


def test_page_not_found(page: Page, demo: Demo, shot: Shot) -> None:
    """A flow address that cannot be one (not a handle): 404, with a new start."""
    answer = page.goto(demo.url + "login/f/not!a!handle")
    assert answer is not None and answer.status == 404
    h1(page).to_have_text("Page not found")
    expect(page.get_by_role("link", name="Start again")).to_be_visible()
    shot(page, "not-found-404")


def test_method_not_allowed(page: Page, demo: Demo, shot: Shot) -> None:
    """Opening a step's address (it only takes a form's POST): 405."""
    answer = page.goto(demo.url + "login/f/aaaaaaaaaaaa/select")
    assert answer is not None and answer.status == 405
    h1(page).to_have_text("Method not allowed")
    shot(page, "method-not-allowed-405")


def test_too_much_data(page: Page, demo: Demo, shot: Shot) -> None:
    """A start form whose user id is longer than a field may be: 413, nothing done."""
    page.goto(demo.url + "login/")
    page.get_by_label("User id").evaluate(
        "(field, size) => { field.value = 'x'.repeat(size); }", DEFAULT_MAX_FIELD_CHARS + 1
    )
    page.get_by_label("Password", exact=True).fill("any-password")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Continue", exact=True).click()
    assert answer.value.status == 413
    h1(page).to_have_text("Too much data")
    shot(page, "too-much-data-413")


def test_forged_form_is_refused(page: Page, demo: Demo, shot: Shot) -> None:
    """A start form whose CSRF token is not the one the page gave: 400, "The form has
    expired", nothing done."""
    page.goto(demo.url + "login/")
    page.get_by_label("User id").fill("alice")
    page.get_by_label("Password", exact=True).fill("alice-password")
    page.locator("input[type=hidden][name*=csrf]").evaluate_all(
        "fields => fields.forEach(field => { field.value = 'forged'; })"
    )
    calls = len(demo.emulator("cyberark").calls)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Continue", exact=True).click()
    assert answer.value.status == 400
    # Django's own CSRF check refuses first there, through the core's page: its heading
    # goes on ("...: reload the page and try again").
    h1(page).to_contain_text("The form has expired")
    assert len(demo.emulator("cyberark").calls) == calls
    shot(page, "form-refused-400")


@pytest.fixture(scope="module", params=[name for name in FRAMEWORKS if name != "fastapi"])
def outage_demo(request: pytest.FixtureRequest) -> Iterator[tuple[Demo, OutageStore]]:
    """The demo over a flow store that fails while its ``down`` is set, on each framework
    whose app runs the synchronous engine over the demo's store: FastAPI's test app makes
    its own AsyncMemoryStore (tests/support/web_apps), so it is not in this test."""
    store = OutageStore()
    with LiveApp(request.param, store=store) as running:
        yield running, store


def test_store_unavailable(page: Page, outage_demo: tuple[Demo, OutageStore], shot: Shot) -> None:
    """The flow store down: at the start (CyberArk was asked, nothing recorded) 503 "could
    not be recorded" with a new start; on a flow's page 503 "briefly unavailable" with
    Retry-After and a way back, which works once the store is back."""
    demo, store = outage_demo
    store.down = True
    try:
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            start(page, demo, "cyberark", "alice", "alice-password")
        assert answer.value.status == 503
        h1(page).to_have_text("Sign-in could not be recorded")
        expect(page.get_by_role("link", name="Start again")).to_be_visible()
        shot(page, "step-not-saved-503")
    finally:
        store.down = False
    start(page, demo, "cyberark", "alice", "alice-password")
    h1(page).to_have_text("Choose a second factor")
    store.down = True
    try:
        answer = page.reload()
        assert answer is not None and answer.status == 503
        assert answer.headers.get("retry-after") == "5"
        h1(page).to_have_text("Sign-in is briefly unavailable")
        shot(page, "store-unavailable-503")
    finally:
        store.down = False
    page.get_by_role("link", name="Go back and try again").click()
    h1(page).to_have_text("Choose a second factor")
