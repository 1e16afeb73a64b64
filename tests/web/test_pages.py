"""What the redesigned pages say and offer, through Flask's test client: no provider picker
for one provider, the choice kept after an error, "Signing in as ... - not you?", the pages'
own words per factor, one failure message with its next step, the theme and logo hooks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, session

from mfa_fsm import (
    CyberArkConfig,
    DuoConfig,
    DuoCredentials,
    Engine,
    EntrustConfig,
    MemoryStore,
    VerifiedUser,
)
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator
from mfa_fsm.web import wording
from mfa_fsm.web.blueprint import FAILURES
from tests.support.web import PREFIX, Visitor, heading, make_app


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator


def entrust_only(emulator: EntrustEmulator, **options: object) -> Flask:
    config = EntrustConfig(base_url=emulator.base_url, application_id=emulator.application_id)
    return make_app(Engine(MemoryStore(), [config]), **options)


def test_one_provider_gets_no_picker(entrust_emulator: EntrustEmulator) -> None:
    """With one provider configured the start form has no radio buttons: the provider rides
    in a hidden field, and the password's hint names it."""
    body = Visitor(entrust_only(entrust_emulator).test_client()).get(f"{PREFIX}/").text
    assert 'type="radio"' not in body
    assert "<legend>Identity provider</legend>" not in body
    assert '<input type="hidden" name="provider" value="entrust">' in body
    assert "Entrust Identity as a Service checks this password." in body


def test_the_provider_chosen_is_kept_after_an_error(
    entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator
) -> None:
    """A refused or incomplete typed form comes back with the provider the person chose."""
    configs = [
        EntrustConfig(
            base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
        ),
        CyberArkConfig(base_url=cyberark_emulator.base_url, pod_scheme="http"),
    ]
    visitor = Visitor(make_app(Engine(MemoryStore(), configs)).test_client())
    first = visitor.get(f"{PREFIX}/").text
    assert re.findall(r'value="(\w+)" required checked', first) == ["cyberark"]
    for password in ("", "wrong-password"):
        refused = visitor.post(f"{PREFIX}/", provider="entrust", user="pwuser", password=password)
        assert refused.status_code in (401, 422)
        checked = re.findall(r'value="(\w+)" required checked', refused.text)
        assert checked == ["entrust"], refused.text


def test_signing_in_as_with_a_way_out(entrust_emulator: EntrustEmulator) -> None:
    """Every step of a running flow names the user and links to a new start; the final pages
    do not (the flow has ended)."""
    visitor = Visitor(entrust_only(entrust_emulator).test_client())
    visitor.begin("entrust", "jsmith")
    picker = visitor.page().text
    assert "Signing in as <strong>jsmith</strong>" in picker
    assert f'<a href="{PREFIX}/">Not you? Start again</a>' in picker
    visitor.step("factor", factor="TOKEN")
    assert "Signing in as <strong>jsmith</strong>" in visitor.page().text
    visitor.step("cancel")
    ended = visitor.page()
    assert heading(ended) == "Sign-in failed"
    assert "Signing in as" not in ended.text


def test_the_factor_list_uses_the_pages_words(entrust_emulator: EntrustEmulator) -> None:
    """Entrust's choices as the pages word them: one button per delivery of the OTP, each
    posting its factor and delivery."""
    visitor = Visitor(entrust_only(entrust_emulator).test_client())
    visitor.begin("entrust", "jsmith")
    picker = visitor.page().text
    titles = re.findall(r'<span class="mfa-option-title">([^<]+)</span>', picker)
    # The list appears once (no "try another way" on the picker itself).
    assert titles[:3] == [
        "Get a push notification",
        "Use your authenticator app or token",
        "Get a code by text message",
    ]
    assert "Get a code by e-mail" in titles
    assert "Use your grid card" in titles
    assert "Approve on the Entrust mobile app" in picker  # the IdP's label, as a second line


def test_a_failed_sign_in_says_what_happened_and_what_next(
    entrust_emulator: EntrustEmulator,
) -> None:
    """One alert: the failure and the next step; then the one primary action."""
    visitor = Visitor(entrust_only(entrust_emulator).test_client())
    visitor.begin("entrust", "jsmith")
    visitor.step("cancel")
    body = visitor.page().text
    (alert,) = re.findall(r'<div class="mfa-alert" role="alert">(.*?)</div>', body, re.S)
    assert FAILURES["cancelled"] in alert
    assert wording.NEXT_STEPS["cancelled"] in alert
    assert body.count('class="mfa-primary"') == 1


def test_theme_and_logo_templates_can_be_overridden(
    entrust_emulator: EntrustEmulator, tmp_path: Path
) -> None:
    """An application's own mfa_fsm/_theme.html and _logo.html (found first, by name) add its
    stylesheet and logo to every page; the default pages have neither."""
    default = Visitor(entrust_only(entrust_emulator).test_client()).get(f"{PREFIX}/").text
    assert "brand.css" not in default
    assert 'class="mfa-logo"' in default
    folder = tmp_path / "mfa_fsm"
    folder.mkdir()
    (folder / "_theme.html").write_text('<link rel="stylesheet" href="/static/brand.css">')
    (folder / "_logo.html").write_text('<img class="acme-logo" src="/static/acme.svg" alt="Acme">')
    app = entrust_only(entrust_emulator)
    app.template_folder = str(tmp_path)
    body = Visitor(app.test_client()).get(f"{PREFIX}/").text
    assert '<link rel="stylesheet" href="/static/brand.css">' in body
    assert '<img class="acme-logo" src="/static/acme.svg" alt="Acme">' in body


@pytest.mark.parametrize("reason", sorted(FAILURES))
def test_every_failure_reason_has_its_own_next_step(reason: str) -> None:
    assert wording.next_step(reason) == wording.NEXT_STEPS[reason]


def test_start_page_typed_form_and_continue_order(
    entrust_emulator: EntrustEmulator, cyberark_emulator: CyberArkEmulator
) -> None:
    """The typed user id + password form lists only providers whose IdP checks a password
    (Entrust and CyberArk, not Duo), and a typed Duo start is refused as no provider; the
    "Continue as" buttons put begin()'s default (the first provider whose first factor may
    be the application's) first, with the focus, under a line in the app's own words."""
    configs = [
        EntrustConfig(
            base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
        ),
        CyberArkConfig(base_url=cyberark_emulator.base_url, pod_scheme="http"),
        DuoConfig(
            DuoCredentials("DIWJ8X6AEYOR5OMC6TQ1", "s" * 40, "api-xxxxxxxx.duosecurity.com"),
            base_url="http://127.0.0.1:9/",
        ),
    ]
    app = make_app(
        Engine(MemoryStore(), configs),
        current_user=lambda: (
            VerifiedUser(session["user"], checked_by="this app's password check")
            if "user" in session
            else None
        ),
    )
    client = app.test_client()
    anonymous = client.get(f"{PREFIX}/").get_data(as_text=True)
    assert re.findall(r'name="provider" value="(\w+)" required', anonymous) == [
        "cyberark",
        "entrust",
    ]
    visitor = Visitor(client)
    visitor.get(f"{PREFIX}/")
    refused = visitor.post(f"{PREFIX}/", provider="duo", user="dsmith", password="x")
    assert refused.status_code == 422
    with client.session_transaction() as kept:
        kept["user"] = "jsmith"
    page = client.get(f"{PREFIX}/").get_data(as_text=True)
    buttons = re.findall(
        r'value="(\w+)">\s*<button type="submit" class="([^"]+)" ?(autofocus)?', page
    )
    assert [name for name, _, _ in buttons] == ["duo", "entrust", "cyberark"]
    assert buttons[0][2] == "autofocus" and not buttons[1][2]
    assert "jsmith — first factor checked by this app&#39;s password check." in page
