"""The demo's emulator control page (the demo users' phone) in Chromium: it updates itself,
offers the number to match among decoys as a phone does, and shows the grid card."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect

from mfa_fsm.web.demo import Demo
from tests.web.conftest import Shot
from tests.web.test_browser import sign_in


def test_control_page_shows_a_new_code_by_itself(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """With the control page open, a code sent to jsmith appears on it without a reload by
    hand; "Pause updates" is a toggle button that says whether it is pressed."""
    control = context.new_page()
    control.goto(demo.url + "emulator")
    pause = control.get_by_role("button", name="Pause updates")
    expect(pause).to_have_attribute("aria-pressed", "false")
    before = control.locator("[data-code-for=jsmith]").inner_text()
    sign_in(page, demo, "jsmith")
    page.get_by_role("button", name="Get a code by text message").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    sent = demo.emulator("entrust").last_otp("jsmith")
    assert sent and sent != before
    expect(control.locator("[data-code-for=jsmith]")).to_have_text(sent, timeout=8_000)
    shot(control, "control-new-code")
    control.get_by_role("button", name="Pause updates").click()
    expect(control.get_by_role("button", name="Resume updates")).to_have_attribute(
        "aria-pressed", "true"
    )


def test_number_matching_a_decoy_refuses_the_push(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """pushmc's push offers three numbers on the phone, one of them the page's; tapping
    another one refuses the push and the login page says it was declined."""
    sign_in(page, demo, "pushmc")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    number = page.locator("#mfa-number").inner_text()
    control = context.new_page()
    control.goto(demo.url + "emulator")
    group = control.get_by_role("group", name="pushmc's entrust push")
    offered = group.get_by_role("button").all_inner_texts()
    assert len(offered) == 3
    assert number in offered
    shot(control, "control-numbers")
    decoy = next(n for n in offered if n != number)
    group.get_by_role("button", name=decoy, exact=True).click()
    expect(control.get_by_role("status")).to_contain_text("is not the number the login page shows")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "denied")


def test_grid_card_on_the_control_page(context: BrowserContext, demo: Demo) -> None:
    """jsmith's grid card is a table with column letters and row numbers as headers."""
    control = context.new_page()
    control.goto(demo.url + "emulator")
    card = control.get_by_role("table", name=re.compile("jsmith's grid card"))
    expect(card.get_by_role("columnheader", name="A", exact=True)).to_be_visible()
    expect(card.get_by_role("rowheader", name="5", exact=True)).to_be_visible()
    cell = demo.emulator("entrust").grid_value("jsmith", 2, 1)
    expect(card.locator('[data-cell="B3"]')).to_have_text(cell)
