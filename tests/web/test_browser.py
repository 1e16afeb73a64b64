"""The demo in a real browser (Debian's Chromium through Playwright): every flow, as a person
clicks through it, with a screenshot of each page in artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect

from mfa_fsm.testing.entrust import DEMO_APP_PASSWORDS, DEMO_TOKEN_CODE
from mfa_fsm.web.demo import Demo
from tests.support.web_apps import LiveApp
from tests.web.conftest import Shot

PROVIDERS = {"entrust": "Entrust Identity as a Service", "cyberark": "CyberArk Identity"}


def start(page: Page, demo: Demo, provider: str, user: str, password: str) -> None:
    """The login start page's typed form: the password the IdP checks."""
    page.goto(demo.url + "login/")
    page.get_by_label(PROVIDERS[provider]).check()
    page.get_by_label("User id").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Continue", exact=True).click()


def sign_in(page: Page, demo: Demo, user: str) -> None:
    """The demo application's own sign-in page (an EXTERNAL user's first factor)."""
    page.goto(demo.url)
    page.get_by_label("User id").fill(user)
    page.get_by_label("Password", exact=True).fill(DEMO_APP_PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()


def heading(page: Page) -> object:
    return expect(page.get_by_role("heading", level=1))


def phone(
    context: BrowserContext,
    demo: Demo,
    provider: str,
    user: str,
    action: str,
    number: str | None = None,
) -> Page:
    """Approve or deny a push on the emulator control page, in another tab; ``number``
    approves a push with number matching by tapping that number, as on a phone."""
    control = context.new_page()
    control.goto(demo.url + "emulator")
    if number is not None:
        group = control.get_by_role("group", name=f"{user}'s {provider} push")
        group.get_by_role("button", name=number, exact=True).click()
    else:
        name = f"{action.capitalize()} {user}'s {provider} request"
        control.get_by_role("button", name=name).click()
    done = {"approve": "approved", "deny": "denied"}[action]
    expect(control.get_by_role("status")).to_contain_text(f"{done} the request for {user}")
    return control


def last_code(context: BrowserContext, demo: Demo, user: str) -> str:
    """The last code the emulator sent to ``user``, read from the control page."""
    control = context.new_page()
    control.goto(demo.url + "emulator")
    code = control.locator(f"[data-code-for={user}]").inner_text()
    control.close()
    assert code.isdigit(), code
    return code


def test_external_user_only_after_the_demo_password(page: Page, demo: Demo, shot: Shot) -> None:
    """An EXTERNAL user typed on the login page is refused like any unknown id; a wrong demo
    password is refused; only the demo's own password page leads to the second factor."""
    start(page, demo, "entrust", "jsmith", "any-password")
    expect(page.get_by_role("alert")).to_have_text("The user id or password was not accepted.")
    shot(page, "typed-external-refused")
    page.goto(demo.url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the demo application")
    calls = len(demo.emulator("entrust").calls)
    page.get_by_label("User id").fill("jsmith")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The user id or password was not accepted.")
    assert len(demo.emulator("entrust").calls) == calls  # Entrust was not asked
    shot(page, "demo-signin-refused")
    sign_in(page, demo, "jsmith")
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    expect(page.locator("p.mfa-who")).to_have_text(
        "First factor: jsmith, checked by the mfa_fsm demo application (not the identity provider)."
    )
    page.goto(demo.url + "login/")
    expect(page.get_by_role("heading", level=2, name="Continue as jsmith")).to_be_visible()
    shot(page, "start-signed-in")


def test_entrust_otp_by_sms(page: Page, context: BrowserContext, demo: Demo, shot: Shot) -> None:
    """Entrust: the demo's own sign-in (EXTERNAL first factor), an OTP sent by SMS, read on
    the control page, logs in."""
    page.goto(demo.url)
    shot(page, "demo-signin")
    sign_in(page, demo, "jsmith")
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    shot(page, "choose-factor")
    page.get_by_role("button", name="Get a code by text message").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    expect(page.get_by_label("Verification code")).to_be_focused()
    shot(page, "code")
    control = context.new_page()
    control.goto(demo.url + "emulator")
    shot(control, "emulator-control")
    code = control.locator("[data-code-for=jsmith]").inner_text()
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    expect(page.get_by_role("status")).to_contain_text("Welcome, John Smith")
    shot(page, "completed")


def test_entrust_password_then_token(page: Page, demo: Demo, shot: Shot) -> None:
    """Entrust: a password first factor (hidden input) checked by Entrust, then a TOKEN code."""
    page.goto(demo.url + "login/")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute("type", "password")
    shot(page, "start")
    start(page, demo, "entrust", "pwuser", "Passw0rd!")
    expect(page.locator("p.mfa-who")).to_have_text(
        "First factor: pwuser's password, checked by Entrust Identity as a Service."
    )
    page.get_by_role("button", name="Use your authenticator app or token").click()
    page.get_by_label("Code from your token or authenticator app").fill(DEMO_TOKEN_CODE)
    shot(page, "token")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    assert "Passw0rd!" not in page.content()


def test_entrust_push_approved_with_number(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """Entrust: a push shows the number to match, polls by itself, and follows the approval."""
    sign_in(page, demo, "pushmc")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    number = demo.emulator("entrust").push_mutual_challenge("pushmc")
    assert number
    expect(page.locator("#mfa-number")).to_have_text(number)
    expect(page.get_by_role("status")).to_contain_text("Waiting for your approval")
    polls = demo.emulator("entrust").poll_count("pushmc")
    shot(page, "approve-on-device")
    control = phone(context, demo, "entrust", "pushmc", "approve", number=number)
    shot(control, "emulator-approved")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    assert demo.emulator("entrust").poll_count("pushmc") > polls  # the page's script polled


@pytest.fixture(scope="module")
def sealed_demo(framework: str) -> Iterator[Demo]:
    """The demo with flows sealed in their cookies (and a replay ledger)."""
    with LiveApp(framework, sealed=True) as running:
        yield running


@pytest.mark.parametrize("mode", ["stored", "sealed"])
def test_push_approved_while_polling_lands_on_the_apps_page(
    mode: str,
    page: Page,
    context: BrowserContext,
    demo: Demo,
    sealed_demo: Demo,
    shot: Shot,
) -> None:
    """The poll that completes the flow answers the script with JSON, {"location": ...} where
    the application's on_complete sends the browser (and its session cookie): the page goes
    straight there, signed in, and every poll answer was JSON."""
    running = demo if mode == "stored" else sealed_demo
    answers: list[tuple[int, str]] = []

    def record(response: Response) -> None:
        # Headers only: the body of the last poll is gone once the page navigates away.
        if response.url.endswith("/poll"):
            answers.append((response.status, response.headers.get("content-type", "")))

    page.on("response", record)
    sign_in(page, running, "pushmc")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("status")).to_contain_text("Waiting for your approval")
    number = page.locator("#mfa-number").inner_text()
    phone(context, running, "entrust", "pushmc", "approve", number=number)
    expect(page).to_have_url(running.url, timeout=4_000)  # no 5 s "cannot reach" detour
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    expect(page.get_by_role("status")).to_contain_text("signed you in as pushmc")
    shot(page, f"app-home-after-push-{mode}")
    assert answers
    assert all(kind.startswith("application/json") for _, kind in answers), answers
    assert all(status == 200 for status, _ in answers), answers


def test_cyberark_password_then_push(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """CyberArk: password, then a push picked among the mechanisms, approved on the phone."""
    start(page, demo, "cyberark", "alice", "alice-password")
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    shot(page, "choose-mechanism")
    page.get_by_role("button", name="Mobile Authenticator").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    shot(page, "approve-on-device")
    phone(context, demo, "cyberark", "alice", "approve")
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
    expect(page.get_by_role("status")).to_contain_text("Alice")
    shot(page, "completed")


def test_cyberark_password_then_sms_code(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """CyberArk: password, then SMS: the page polls and also takes the code, which logs in."""
    start(page, demo, "cyberark", "alice", "alice-password")
    page.get_by_role("button", name="SMS... XXX-6789").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    code_field = page.get_by_label("Or type the code you received")
    expect(code_field).to_be_visible()
    shot(page, "sms-sent")
    code_field.fill(last_code(context, demo, "alice"))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_wrong_code_is_asked_again(page: Page, demo: Demo, shot: Shot) -> None:
    """Entrust: a wrong code stays on the code page, says so, and counts the attempts."""
    sign_in(page, demo, "jsmith")
    page.get_by_role("button", name="Use your authenticator app or token").click()
    page.get_by_label("Code from your token or authenticator app").fill("00000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    expect(page.get_by_role("alert")).to_contain_text("That was not accepted")
    expect(page.get_by_role("alert")).to_contain_text("4 attempts left")
    shot(page, "code-rejected")
    page.get_by_label("Code from your token or authenticator app").fill(DEMO_TOKEN_CODE)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_wrong_code_fails_cyberark(
    page: Page, context: BrowserContext, demo: Demo, shot: Shot
) -> None:
    """CyberArk: a wrong SMS code ends the flow on the failure page, with a restart link."""
    start(page, demo, "cyberark", "alice", "alice-password")
    page.get_by_role("button", name="SMS... XXX-6789").click()
    wrong = "000000" if last_code(context, demo, "alice") != "000000" else "111111"
    page.get_by_label("Or type the code you received").fill(wrong)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "rejected")
    shot(page, "failed-rejected")
    page.get_by_role("link", name="Start again").click()
    expect(page.get_by_label("User id")).to_be_visible()


def test_denied_push(page: Page, context: BrowserContext, demo: Demo, shot: Shot) -> None:
    """Entrust: a push denied on the phone ends on the failure page: declined on the device."""
    sign_in(page, demo, "jsmith")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    phone(context, demo, "entrust", "jsmith", "deny")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "denied")
    expect(page.get_by_role("alert")).to_contain_text("declined on your device")
    shot(page, "failed-denied")


@pytest.fixture
def impatient_demo(framework: str) -> Iterator[Demo]:
    """A demo whose Entrust pushes expire after two seconds."""
    with LiveApp(framework, options={"entrust": {"push_lifetime": 2.0}}) as running:
        yield running


def test_expired_push(page: Page, impatient_demo: Demo, shot: Shot) -> None:
    """A push nobody answers ends, by the page's own polling, on the failure page: expired."""
    sign_in(page, impatient_demo, "jsmith")
    page.get_by_role("button", name="Approve on the Entrust mobile app").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve the sign-in on your device")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "expired")
    expect(page.get_by_role("alert")).to_contain_text("expired")
    shot(page, "failed-expired")


def test_reload_resumes_the_flow(page: Page, context: BrowserContext, demo: Demo) -> None:
    """Reloading any page of a flow shows the same step again; the flow carries on from it."""
    sign_in(page, demo, "jsmith")
    # Let the sign-in's own navigation finish first: a reload during it detaches the page.
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    page.get_by_role("button", name="Get a code by e-mail").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.get_by_label("Verification code").fill(last_code(context, demo, "jsmith"))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")


def test_two_tabs_run_two_flows(context: BrowserContext, demo: Demo, shot: Shot) -> None:
    """Two flows in two tabs of one browser do not disturb each other."""
    entrust, cyberark = context.new_page(), context.new_page()
    start(entrust, demo, "entrust", "pwuser", "Passw0rd!")
    start(cyberark, demo, "cyberark", "carol", "carol-password")
    expect(cyberark.get_by_role("heading", level=1)).to_have_text("Answer your security questions")
    shot(cyberark, "security-questions")
    entrust.reload()
    expect(entrust.get_by_role("heading", level=1)).to_have_text("Choose a second factor")
    entrust.get_by_role("button", name="Use your authenticator app or token").click()
    entrust.get_by_label("Code from your token or authenticator app").fill(DEMO_TOKEN_CODE)
    entrust.get_by_role("button", name="Verify").click()
    expect(entrust.get_by_role("heading", level=1)).to_have_text("You are signed in")
    cyberark.reload()
    cyberark.get_by_label("First car?").fill("Beetle")
    cyberark.get_by_label("Favourite colour?").fill("Teal")
    cyberark.get_by_role("button", name="Verify").click()
    expect(cyberark.get_by_role("heading", level=1)).to_have_text("You are signed in")
    expect(cyberark.get_by_role("status")).to_contain_text("carol", ignore_case=True)


def test_without_scripts_polling_is_a_button(browser: Browser, demo: Demo, shot: Shot) -> None:
    """With scripts off every page works; a push is checked with the "Check now" button."""
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    try:
        page = context.new_page()
        sign_in(page, demo, "pushmc")
        page.get_by_role("button", name="Approve on the Entrust mobile app").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Approve the sign-in on your device"
        )
        expect(page.get_by_text("cannot check by itself with scripts turned off")).to_be_visible()
        shot(page, "approve-no-script", scripts=False)
        page.get_by_role("button", name="Check now").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Approve the sign-in on your device"
        )
        demo.emulator("entrust").approve_push("pushmc")
        page.wait_for_timeout(1100)  # the next poll is due after the poll interval
        page.get_by_role("button", name="Check now").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in")
        shot(page, "completed-no-script", scripts=False)
    finally:
        context.close()


def test_lost_flow_says_start_again(page: Page, demo: Demo, shot: Shot) -> None:
    """A flow page this browser holds no cookie for says to start again, with a link."""
    page.goto(demo.url + "login/f/not-a-flow00")
    expect(page.get_by_role("heading", level=1)).to_have_text("Please start again")
    shot(page, "start-again")
    page.get_by_role("link", name="Start again").click()
    expect(page.get_by_label("User id")).to_be_focused()


def test_idp_unavailable_then_try_again(page: Page, demo: Demo, shot: Shot) -> None:
    """An IdP outage shows "unavailable" with a Try again button that carries on the flow."""
    sign_in(page, demo, "jsmith")
    demo.emulator("entrust").faults.inject("status", status=503, path="authenticate/TOKEN")
    page.get_by_role("button", name="Use your authenticator app or token").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "The identity provider is unavailable"
    )
    expect(page.get_by_role("button", name="Try again")).to_be_focused()
    shot(page, "unavailable")
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")


def test_cancel_ends_the_flow(page: Page, demo: Demo, shot: Shot) -> None:
    """The cancel button ends the flow on the failure page, which links to a new start."""
    start(page, demo, "cyberark", "bob", "unused: bob's tenant is passwordless")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in with your device")
    shot(page, "passwordless-first-factor")
    page.get_by_role("button", name="Cancel sign-in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in failed")
    expect(page.locator(".mfa-reason")).to_have_attribute("data-reason", "cancelled")
    shot(page, "failed-cancelled")
