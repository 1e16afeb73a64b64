"""Duo through the unchanged login blueprint (Flask's test client): the pages need no Duo code.

Duo is a second factor behind the application's own first, so the blueprint mounts for it
only with ``current_user`` and a Duo login begins at the application's own sign-in
(``begin()``), never at the typed form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask

from mfa_fsm import DuoConfig, Engine, MemoryStore, VerifiedUserRequired
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from mfa_fsm.web import mfa_blueprint
from tests.support.web import PREFIX, Visitor, heading, make_app, state

PHONE = "DPFZRS9FB0D46QFTM899"


@pytest.fixture
def duo_emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as emulator:
        yield emulator


def duo_engine(emulator: DuoEmulator) -> Engine:
    config = DuoConfig(emulator.credentials, base_url=emulator.base_url, poll_interval=0.0)
    return Engine(MemoryStore(), [config])


@pytest.fixture
def app(duo_emulator: DuoEmulator) -> Flask:
    return make_app(duo_engine(duo_emulator))


@pytest.fixture
def visitor(app: Flask) -> Visitor:
    return Visitor(app.test_client())


def to_picker(visitor: Visitor, user: str = "jsmith") -> None:
    # The application's own sign-in vouches for the user; begin() confirms its first
    # factor to Duo (/preauth) at once, so the first page is the picker.
    assert visitor.begin("duo", user).status_code == 303
    page = visitor.page()
    assert heading(page) == "Choose a second factor"
    body = page.get_data(as_text=True)
    assert "Duo Push to iOS (XXX-XXX-0100)" in body
    assert "Passcode from Duo Mobile or your token" in body


def test_no_mount_for_duo_without_current_user(duo_emulator: DuoEmulator) -> None:
    """Duo's first factor is the application's: mounting without current_user is refused."""
    with pytest.raises(VerifiedUserRequired, match="current_user="):
        mfa_blueprint(duo_engine(duo_emulator))


def test_typed_user_id_never_starts_duo(visitor: Visitor, duo_emulator: DuoEmulator) -> None:
    """The typed form cannot start a Duo flow (it would be a login with Duo alone): the
    one refusal page, and Duo is never asked."""
    response = visitor.start("duo", "jsmith")
    # No typed form is offered for Duo (so no CSRF token for it: 400); forced, it is 422.
    assert response.status_code in (400, 422)
    assert duo_emulator.calls == []


def test_start_page_offers_no_typed_form_for_duo(visitor: Visitor) -> None:
    """Duo never checks a password: the start page offers no user id + password form for
    it (a Duo-only application has none at all)."""
    body = visitor.get(f"{PREFIX}/").get_data(as_text=True)
    assert 'value="duo"' not in body
    assert 'type="password"' not in body


def test_each_browser_sends_its_own_address(app: Flask, duo_emulator: DuoEmulator) -> None:
    """Two users at two addresses: every /preauth and /auth of each carries that user's
    ``ipaddr`` (the request's address, step by step), and no page or cookie holds it."""
    addresses = {"jsmith": "198.51.100.21", "callme": "2001:db8::77"}
    for user, address in addresses.items():
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        visitor = Visitor(client)
        assert visitor.begin("duo", user).status_code == 303
        choice = "push:" + PHONE if user == "jsmith" else "phone:DPL4NDL1NE0000000001"
        visitor.step("factor", factor=choice)
        assert state(visitor.page()) == "OobPending"
        assert not [body for body in visitor.bodies if address in body]
    sent = [c for c in duo_emulator.calls if c.path in ("/auth/v2/preauth", "/auth/v2/auth")]
    assert len(sent) == 4
    for call in sent:
        assert call.body is not None
        assert call.body["ipaddr"] == addresses[call.body["username"]]


def test_push_approved_through_the_pages(visitor: Visitor, duo_emulator: DuoEmulator) -> None:
    """Start, confirm the first factor, pick Duo Push (Duo's status shown), approve: signed in."""
    to_picker(visitor)
    visitor.step("factor", factor=f"push:{PHONE}")
    assert state(visitor.page()) == "OobPending"
    visitor.step("poll")
    pending = visitor.page()
    assert state(pending) == "OobPending"
    # Duo's status_msg while it waits is what the pending page says.
    assert "Pushed a login request to your device..." in pending.get_data(as_text=True)
    duo_emulator.answer("jsmith", "approve")
    visitor.step("poll")
    assert state(visitor.page()) == "Completed"


def test_sms_wrong_then_right_through_the_pages(
    visitor: Visitor, duo_emulator: DuoEmulator
) -> None:
    """SMS passcodes: a wrong one shows the code page again, a sent one signs in."""
    to_picker(visitor)
    visitor.step("factor", factor=f"sms:{PHONE}")
    assert state(visitor.page()) == "SecondFactorSelected"
    visitor.step("response", response="0000000")
    assert state(visitor.page()) == "SecondFactorSelected"
    visitor.step("response", response=duo_emulator.sms_passcodes("jsmith")[0])
    assert state(visitor.page()) == "Completed"


def test_typed_passcode_through_the_pages(visitor: Visitor) -> None:
    """A Duo Mobile / token passcode signs in; its field asks a phone for the digit keypad
    and the browser for 6 to 9 digits (Duo's passcode lengths)."""
    to_picker(visitor)
    visitor.step("factor", factor="passcode")
    field = re.search(r"<input id=\"response\"[^>]*>", visitor.page().get_data(as_text=True))
    assert field is not None
    assert 'inputmode="numeric"' in field.group(0)
    assert 'pattern="[0-9]{6,9}"' in field.group(0)
    assert field.group(0).count("inputmode=") == 1
    visitor.step("response", response=DEMO_PASSCODE)
    assert state(visitor.page()) == "Completed"


def test_denied_push_shows_the_reason(visitor: Visitor, duo_emulator: DuoEmulator) -> None:
    """A push reported as fraud ends on the failed page with Duo's reason."""
    to_picker(visitor)
    visitor.step("factor", factor=f"push:{PHONE}")
    duo_emulator.answer("jsmith", "fraud")
    visitor.step("poll")
    page = visitor.page()
    assert heading(page) == "Sign-in failed"
    assert "reported as fraudulent" in page.get_data(as_text=True)


def test_unenrolled_user_gets_the_enrolment_link(
    visitor: Visitor, duo_emulator: DuoEmulator
) -> None:
    """``enroll``: the failed page says why and links to Duo's enrolment portal."""
    assert visitor.begin("duo", "newuser").status_code == 303
    page = visitor.page()
    assert heading(page) == "Sign-in failed"
    body = page.get_data(as_text=True)
    assert "follow the enrolment link" in body
    host = duo_emulator.credentials.api_hostname
    found = re.search(r'<a href="([^"]+)" rel="noreferrer">Enrol a device with Duo</a>', body)
    assert found is not None
    assert found.group(1).startswith(f"https://{host}/portal?code=")


def test_the_enrolment_link_is_escaped() -> None:
    """An enrolment URL carrying markup (here through a hostile API hostname) reaches the
    page only escaped inside the href: no tag, no attribute of its own."""
    hostile = 'api-x.test/"><script>alert(1)</script>'
    with DuoEmulator(api_hostname=hostile) as emulator:
        visitor = Visitor(make_app(duo_engine(emulator)).test_client())
        assert visitor.begin("duo", "newuser").status_code == 303
        body = visitor.page().get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    found = re.search(r'<a href="([^"]+)" rel="noreferrer">Enrol a device with Duo</a>', body)
    assert found is not None
    assert found.group(1).startswith("https://api-x.test/&#34;&gt;&lt;script&gt;")


def test_a_scripted_poll_carries_duo_s_status_message(
    visitor: Visitor, duo_emulator: DuoEmulator
) -> None:
    """The pending page's script polls for JSON: its ``prompt`` is Duo's current
    ``status_msg``, which the script puts in place of the page's prompt (as text)."""
    to_picker(visitor)
    visitor.step("factor", factor=f"push:{PHONE}")
    waiting = visitor.poll_json().get_json()
    assert waiting["state"] == "OobPending"
    assert waiting["prompt"] == "Pushed a login request to your device..."
    duo_emulator.answer("jsmith", "approve")
    done = visitor.poll_json().get_json()
    assert "prompt" not in done and done["location"]
