"""Recovery paths in a real browser (Debian's Chromium through Playwright), over real HTTP to
the emulators: "send a new code / another request" on Entrust and CyberArk, its cooldown, a
malformed code refused before the IdP, and a CyberArk challenge nothing can answer here."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from mfa_fsm.core.throttle import Throttle
from mfa_fsm.testing.cyberark import UserMechanism
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from mfa_fsm.web.demo import Demo
from tests.support.web_apps import LiveApp
from tests.web.conftest import Shot
from tests.web.test_browser import last_code, sign_in, start


@pytest.fixture(scope="module")
def quick_demo(framework: str) -> Iterator[Demo]:
    """A demo whose resend cooldown is over at once (the default 30 s is the `demo`'s), and
    whose throttle lets one test user's many sends through (resends count as sends)."""
    options = {"entrust": {"resend_cooldown": 0.0}, "cyberark": {"resend_cooldown": 0.0}}
    throttle = Throttle(send_cooldown="10/second", sends_per_user="100/15 minutes")
    with LiveApp(framework, options=options, throttle=throttle) as running:
        yield running


def after_the_cooldown(page: Page) -> None:
    """``resend_at`` is a whole epoch second (rounded up), so even a cooldown of 0 ends at
    the next second: wait that long before clicking."""
    page.wait_for_timeout(1_000)


def push_selects(demo: Demo) -> int:
    """The TOKENPUSH selects IDaaS has seen (not the page's polls, ``.../complete``)."""
    calls = demo.emulator("entrust").calls
    return sum(1 for call in calls if call.path.endswith("/authenticate/TOKENPUSH"))


def heading(page: Page) -> object:
    return expect(page.get_by_role("heading", level=1))


def test_entrust_send_a_new_code(
    page: Page, context: BrowserContext, quick_demo: Demo, shot: Shot
) -> None:
    """Entrust OTP by SMS: "Send a new code" re-issues the select; the first code is spent
    and the new one signs in."""
    sign_in(page, quick_demo, "jsmith")
    page.get_by_role("button", name="Get a code by text message").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    first = last_code(context, quick_demo, "jsmith")
    shot(page, "code-with-resend")
    after_the_cooldown(page)
    page.get_by_role("button", name="Send a new code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    second = last_code(context, quick_demo, "jsmith")
    assert second != first
    page.get_by_label("Verification code").fill(second)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_entrust_send_another_push(
    page: Page, context: BrowserContext, quick_demo: Demo, shot: Shot
) -> None:
    sign_in(page, quick_demo, "jsmith")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    selects = push_selects(quick_demo)
    after_the_cooldown(page)
    page.get_by_role("button", name="Send another request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    assert push_selects(quick_demo) == selects + 1
    shot(page, "push-sent-again")
    quick_demo.emulator("entrust").approve_push("jsmith")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_cyberark_send_a_new_code(page: Page, context: BrowserContext, quick_demo: Demo) -> None:
    """CyberArk SMS: the pending page's "Send a new code" is a RetryOOB; the new code signs
    in."""
    start(page, quick_demo, "cyberark", "alice", "alice-password")
    page.get_by_role("button", name="SMS... XXX-6789").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    first = last_code(context, quick_demo, "alice")
    after_the_cooldown(page)
    page.get_by_role("button", name="Send a new code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    actions = [c.body["Action"] for c in quick_demo.emulator("cyberark").calls_to("Advance")]
    assert actions[-1] == "RetryOOB"
    second = last_code(context, quick_demo, "alice")
    assert second != first
    page.get_by_label("Or type the code you received").fill(second)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_resend_inside_the_cooldown_waits_in_the_page(
    page: Page, browser: Browser, demo: Demo, shot: Shot
) -> None:
    """With the default 30 s cooldown the page's script keeps "Send a new code" disabled and
    names the moment in the browser's local time. Without scripts the button is usable, and
    an early click comes back on the code page as a notice (429): nothing was sent."""
    sign_in(page, demo, "jsmith")
    page.get_by_role("button", name="Get a code by text message").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    expect(page.get_by_role("button", name="Send a new code")).to_be_disabled()
    wait = page.locator("#mfa-resend-wait")
    expect(wait).to_contain_text("available at")
    expect(wait.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-.*Z$"))
    shot(page, "resend-waits")

    # The same flow (its cookies) in a browser without scripts: no new start, no new code.
    plain = browser.new_context(
        java_script_enabled=False, storage_state=page.context.storage_state()
    )
    try:
        no_script = plain.new_page()
        no_script.goto(page.url)
        expect(no_script.get_by_text("(available in")).to_be_visible()
        calls = len(demo.emulator("entrust").calls)
        with no_script.expect_response(lambda r: r.url.endswith("/resend")) as answer:
            no_script.get_by_role("button", name="Send a new code").click()
        assert answer.value.status == 429
        expect(no_script.get_by_role("heading", level=1)).to_have_text("Enter your code")
        expect(no_script.get_by_role("alert")).to_contain_text("Nothing was sent")
        expect(no_script.get_by_label("Verification code")).to_be_visible()
        assert len(demo.emulator("entrust").calls) == calls
        shot(no_script, "resend-too-soon", scripts=False)
    finally:
        plain.close()


def test_resend_is_enabled_when_due(page: Page, quick_demo: Demo) -> None:
    """The script enables "Send a new code" once resend_at has come, and drops the wait."""
    sign_in(page, quick_demo, "jsmith")
    page.get_by_role("button", name="Get a code by text message").click()
    expect(page.get_by_role("button", name="Send a new code")).to_be_enabled(timeout=3_000)
    expect(page.locator("#mfa-resend-wait")).to_be_hidden()


def test_a_malformed_code_is_refused_before_the_idp(page: Page, demo: Demo, shot: Shot) -> None:
    """A 5-digit token code: the page says it must be 6 to 8 digits; IDaaS is not asked and
    no attempt is lost."""
    sign_in(page, demo, "jsmith")
    page.get_by_role("button", name="Use your authenticator app or token").click()
    calls = len(demo.emulator("entrust").calls)
    page.get_by_label("Code from your token or authenticator app").fill("12345")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("6 to 8 digits")
    expect(page.get_by_role("alert")).not_to_contain_text("attempts left")
    assert len(demo.emulator("entrust").calls) == calls
    shot(page, "malformed-code")


def test_unusable_cyberark_mechanisms_are_shown_with_the_reason(
    page: Page, context: BrowserContext, quick_demo: Demo, shot: Shot
) -> None:
    """A second challenge of a U2F key, an unenrolled e-mail and an SMS: the picker shows
    the first two as not available, saying why, and the SMS signs in."""
    quick_demo.emulator("cyberark").add_user(
        "kate",
        password="kate-password",
        challenges=[["UP"], [UserMechanism("U2F"), UserMechanism("EMAIL", enrolled=False), "SMS"]],
    )
    start(page, quick_demo, "cyberark", "kate", "kate-password")
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    unavailable = page.locator("li.mfa-unsupported")
    expect(unavailable).to_have_count(2)
    expect(unavailable.nth(0)).to_contain_text("security key (FIDO2/U2F)")
    expect(unavailable.nth(1)).to_contain_text("not enrolled")
    shot(page, "unavailable-choices")
    page.get_by_role("button", name="SMS... XXX-6789").click()
    code = quick_demo.emulator("cyberark").last_code("kate")
    assert code is not None
    page.get_by_label("Or type the code you received").fill(code)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_a_security_key_only_account_gets_the_typed_forms_one_refusal(
    page: Page, quick_demo: Demo
) -> None:
    """On the typed start form, a second challenge of only a U2F key ends the flow
    (Failed(unavailable), no empty picker), and the form answers with its one refusal for
    every failure: saying "unavailable" there would tell a password guesser that the
    password was right. (The Flow API, the engines and the CLI show the reason.)"""
    quick_demo.emulator("cyberark").add_user(
        "judy", password="judy-password", challenges=[["UP"], [UserMechanism("U2F")]]
    )
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        start(page, quick_demo, "cyberark", "judy", "judy-password")
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("The user id or password was not accepted.")
    actions = [c.body["Action"] for c in quick_demo.emulator("cyberark").calls_to("Advance")]
    assert actions[-1] == "Answer"  # the password was taken; nothing was sent to a key


def test_entrust_pending_push_then_the_token_code_instead(
    page: Page, quick_demo: Demo, shot: Shot
) -> None:
    """While an Entrust push (TOKENPUSH) is pending, the page offers the token code (TOKEN)
    at once, and "Try another way" the other authenticators; the token code typed instead
    signs in (the select carries the current token)."""
    sign_in(page, quick_demo, "jsmith")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    instead = page.get_by_role(
        "button", name="Type the code from your token or authenticator app instead"
    )
    expect(instead).to_be_visible()
    page.get_by_text("Try another way").click()
    shot(page, "push-another-way")
    instead.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.get_by_label("Code from your token or authenticator app").fill(DEMO_TOKEN_CODE)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


@pytest.fixture
def impatient_demo(framework: str) -> Iterator[Demo]:
    """A demo whose Entrust pushes expire after two seconds (and whose throttle lets the
    second push through at once)."""
    throttle = Throttle(send_cooldown="10/second")
    with LiveApp(
        framework, options={"entrust": {"push_lifetime": 2.0}}, throttle=throttle
    ) as running:
        yield running


def test_after_an_expired_push_try_again_goes_straight_to_the_picker(
    page: Page, impatient_demo: Demo, shot: Shot
) -> None:
    """A push nobody answered ends Failed(expired); "Send another push" (the engine's again)
    begins a fresh flow for the application's signed-in user, straight to the picker (no
    password asked again), and a new push there signs in."""
    sign_in(page, impatient_demo, "jsmith")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "expired")
    expect(page.get_by_role("button", name="Send another push")).to_be_focused()
    shot(page, "expired-try-again")
    page.get_by_role("button", name="Send another push").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    impatient_demo.emulator("entrust").approve_push("jsmith")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
