"""The redesigned pages in a real browser (Debian's Chromium through Playwright): the push
page's time left (an m:ss countdown, a progress bar, the deadline in the browser's own time
zone), its pulse stopped under prefers-reduced-motion, the pages of every code-like factor,
and the start page of an application with one provider. Every page photographed is checked
with axe-core (the ``shot`` fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from mfa_fsm import Engine, EntrustConfig, MemoryStore
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.web.demo import Demo
from tests.support.web import PREFIX, make_app, serve
from tests.web.conftest import Shot
from tests.web.test_browser import sign_in


@pytest.fixture(scope="module")
def pages_demo() -> Iterator[Demo]:
    """A demo of this module's own: the suite's shared one has had many of jsmith's sends
    and wrong answers by now (its throttles and lockouts would answer instead)."""
    throttle = Throttle(send_cooldown="10/second", sends_per_user="100/15 minutes")
    with Demo(throttle=throttle) as running:
        yield running


#: A time zone far from the server's (the tests' machine runs in UTC), with a half hour.
ZONE = "Asia/Kolkata"


@pytest.fixture
def kolkata(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile in India's time zone, 24-hour clock, British English."""
    made = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id=ZONE, locale="en-GB"
    )
    yield made
    made.close()


def pulse_animation(page: Page) -> str:
    return str(
        page.evaluate(
            "getComputedStyle(document.querySelector('.mfa-pulse'), '::after').animationName"
        )
    )


def test_push_page_counts_down_in_the_browsers_own_time(
    kolkata: BrowserContext, pages_demo: Demo, shot: Shot
) -> None:
    """The deadline reads in the browser's time zone, the time left as m:ss counting down,
    with a progress bar; the pulse runs (motion allowed)."""
    page = kolkata.new_page()
    sign_in(page, pages_demo, "jsmith")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    deadline = float(page.locator("[data-mfa-deadline]").get_attribute("data-mfa-deadline") or 0)
    local = datetime.fromtimestamp(deadline, ZoneInfo(ZONE)).strftime("%H:%M")
    expect(page.locator("#mfa-deadline")).to_have_text(local)
    countdown = page.locator("#mfa-countdown")
    expect(countdown).to_have_text(re.compile(r"^, in [0-9]+:[0-5][0-9]$"))
    first = countdown.inner_text()
    page.wait_for_timeout(2_100)
    assert countdown.inner_text() != first  # it counts down by itself
    progress = page.get_by_role("progressbar", name="Time left to approve")
    expect(progress).to_be_visible()
    assert (
        0 < float(progress.get_attribute("value") or 0) <= float(progress.get_attribute("max") or 0)
    )
    assert pulse_animation(page) == "mfa-pulse"
    shot(page, "push-local-time")
    page.get_by_role("button", name="Cancel sign-in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")


def test_reduced_motion_stops_the_pulse(browser: Browser, pages_demo: Demo) -> None:
    """With prefers-reduced-motion the push page's pulse does not move."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, reduced_motion="reduce")
    try:
        page = context.new_page()
        sign_in(page, pages_demo, "jsmith")
        page.get_by_role("button", name="Approve on the Entrust mobile app").click()
        expect(page.locator(".mfa-pulse")).to_be_visible()
        assert pulse_animation(page) == "none"
        page.get_by_role("button", name="Cancel sign-in").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    finally:
        context.close()


def test_the_pages_of_each_code_factor(page: Page, pages_demo: Demo, shot: Shot) -> None:
    """Grid card, security questions, temporary access code: each page in its own words,
    reached through "Try another way"."""
    sign_in(page, pages_demo, "jsmith")
    page.get_by_role("button", name="Use your grid card").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    expect(page.get_by_role("list", name="Cells of your grid card, in order")).to_be_visible()
    expect(page.get_by_label("Values from your grid card")).to_be_focused()
    shot(page, "grid")
    page.get_by_text("Try another way").click()
    page.get_by_role("button", name="Answer your security questions").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Answer your security questions")
    shot(page, "security-questions")
    page.get_by_text("Try another way").click()
    page.get_by_role("button", name="Use a temporary access code").click()
    expect(page.get_by_label("Temporary access code")).to_be_focused()
    page.get_by_label("Temporary access code").fill("TAC-4242")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_one_provider_start_page(
    browser: Browser, entrust_emulator: EntrustEmulator, shot: Shot
) -> None:
    """An application with one provider: its start page has no provider picker."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    app = make_app(Engine(MemoryStore(), [config]), secure_cookies=False, title="Acme")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        with serve(app) as base:
            page = context.new_page()
            page.goto(f"{base}{PREFIX}/")
            expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
            expect(page.get_by_role("radio")).to_have_count(0)
            expect(
                page.get_by_text("Entrust Identity as a Service checks this password.")
            ).to_be_visible()
            shot(page, "one-provider-start")
            page.get_by_label("User id").fill("pwuser")
            page.get_by_label("Password", exact=True).fill("wrong")
            page.get_by_role("button", name="Continue", exact=True).click()
            expect(page.get_by_role("alert")).to_have_text(
                "The user id or password was not accepted."
            )
            shot(page, "one-provider-refused")
    finally:
        context.close()


BRAND_CSS = """:root {
  --mfa-brand: #6b1fb1; --mfa-radius: 4px; --mfa-bg: #f4f0fa;
  --mfa-logo: url(/static/logo.svg); --mfa-logo-width: 7rem; --mfa-logo-text: none;
}
"""
LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 112 36"><rect width="36" height="36" '
    'rx="8" fill="#6b1fb1"/><text x="44" y="25" font-family="sans-serif" font-size="20" '
    'font-weight="700" fill="#1b1f24">Acme</text></svg>'
)


def test_a_theme_restyles_the_pages(
    browser: Browser, entrust_emulator: EntrustEmulator, shot: Shot, tmp_path: Path
) -> None:
    """The application's own mfa_fsm/_theme.html links its stylesheet, whose custom
    properties recolour the pages and put its logo in the card's logo slot."""
    (tmp_path / "mfa_fsm").mkdir()
    (tmp_path / "mfa_fsm" / "_theme.html").write_text(
        '<link rel="stylesheet" href="/static/brand.css">'
    )
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "brand.css").write_text(BRAND_CSS)
    (tmp_path / "static" / "logo.svg").write_text(LOGO_SVG)
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    app = make_app(Engine(MemoryStore(), [config]), secure_cookies=False, title="Acme")
    app.template_folder = str(tmp_path)
    app.static_folder = str(tmp_path / "static")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        with serve(app) as base:
            page = context.new_page()
            page.goto(f"{base}{PREFIX}/")
            button = page.get_by_role("button", name="Continue", exact=True)
            colour = button.evaluate("b => getComputedStyle(b).backgroundColor")
            assert colour == "rgb(107, 31, 177)"
            expect(page.locator(".mfa-logo-name")).to_be_hidden()
            logo = page.locator(".mfa-logo-image")
            assert "logo.svg" in logo.evaluate("e => getComputedStyle(e).backgroundImage")
            shot(page, "themed-start")
    finally:
        context.close()
