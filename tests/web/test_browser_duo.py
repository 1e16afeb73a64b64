"""Duo in a real browser (Debian's Chromium through Playwright), through the demo: the demo
application's own sign-in vouches for the user (Duo's first factor is the application's), then
Duo Push, a passcode, SMS passcodes, and the pages for Duo's ``allow``, ``deny`` and
``enroll`` answers. Screenshots go to artifacts/screenshots/ like the other browser tests."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect

from mfa_fsm.testing.demo_idps import DuoDemo
from mfa_fsm.testing.duo import DEMO_PASSCODE
from mfa_fsm.web.demo import Demo
from tests.web.conftest import Shot
from tests.web.test_browser import last_code, phone


def duo_sign_in(page: Page, demo: Demo, user: str) -> None:
    """The demo application's sign-in page, with the demo application's password."""
    page.goto(demo.url)
    page.get_by_label("User id").fill(user)
    page.get_by_label("Password", exact=True).fill(DuoDemo.app_passwords[user])
    page.get_by_role("button", name="Sign in").click()


def to_picker(page: Page, demo: Demo, user: str = "dsmith") -> None:
    duo_sign_in(page, demo, user)
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    expect(page.locator("p.mfa-who")).to_have_text(
        f"First factor: {user}, checked by the mfa_fsm demo application "
        "(not the identity provider)."
    )


def test_duo_push_approved(page: Page, context: BrowserContext, demo: Demo, shot: Shot) -> None:
    """Duo Push: the pending page shows Duo's status message, polls by itself, and follows
    the approval on the phone to the application's home."""
    to_picker(page, demo)
    shot(page, "choose-device")
    page.get_by_role("button", name="Duo Push to iOS (XXX-XXX-0142)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    expect(page.locator("#mfa-main")).to_contain_text("Pushed a login request to your device...")
    polls = demo.emulator("duo").poll_count("dsmith")
    shot(page, "push-pending")
    phone(context, demo, "duo", "dsmith", "approve")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    expect(page.get_by_role("status")).to_contain_text("signed you in as dsmith")
    assert demo.emulator("duo").poll_count("dsmith") > polls  # the page's script polled
    shot(page, "completed")


def test_duo_push_denied(page: Page, context: BrowserContext, demo: Demo, shot: Shot) -> None:
    to_picker(page, demo)
    page.get_by_role("button", name="Duo Push to iOS (XXX-XXX-0142)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    phone(context, demo, "duo", "dsmith", "deny")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "denied")
    expect(page.locator("p.mfa-detail")).to_have_count(0)  # the reason is said once
    shot(page, "denied")


def test_duo_passcode(page: Page, demo: Demo, shot: Shot) -> None:
    """A passcode from Duo Mobile or a token, typed: signed in."""
    to_picker(page, demo)
    page.get_by_role("button", name="Passcode from Duo Mobile or your token").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    field = page.get_by_label("Code from your token or authenticator app")
    expect(field).to_be_focused()
    field.fill(DEMO_PASSCODE)
    shot(page, "passcode")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_duo_sms_wrong_then_right(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """Text message passcodes: a wrong one asks again, the one the phone shows signs in."""
    to_picker(page, demo)
    sms = page.get_by_role("button", name="Get a code by text message")
    expect(sms).to_contain_text("Text message passcodes to iOS (XXX-XXX-0142)")
    sms.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    field = page.get_by_role("textbox")
    expect(field).to_be_focused()
    field.fill("0000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_be_visible()
    shot(page, "wrong-passcode")
    code = last_code(context, demo, "dsmith")
    assert len(code) == 7
    page.get_by_role("textbox").fill(code)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_duo_allow_signs_in_without_a_second_factor(page: Page, demo: Demo) -> None:
    duo_sign_in(page, demo, "dtrusted")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    expect(page.get_by_role("status")).to_contain_text("signed you in as dtrusted")


def test_duo_deny_at_preauth(page: Page, demo: Demo) -> None:
    duo_sign_in(page, demo, "dblocked")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator("p.mfa-reason")).to_have_attribute("data-reason", "rejected")


def test_duo_enroll_links_to_the_enrolment_portal(page: Page, demo: Demo, shot: Shot) -> None:
    """A user Duo says must enrol ends on the failed page with Duo's enrolment link (not a
    dead end); the link sends no Referer (the page's URL names the flow)."""
    duo_sign_in(page, demo, "dnew")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    link = page.get_by_role("link", name="Enrol a device with Duo")
    host = re.escape(demo.emulator("duo").credentials.api_hostname)
    expect(link).to_have_attribute("href", re.compile(rf"^https://{host}/portal\?code=[0-9a-f]+$"))
    expect(link).to_have_attribute("rel", "noreferrer")
    shot(page, "enroll")
