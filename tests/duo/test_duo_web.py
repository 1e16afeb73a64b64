"""Duo through the unchanged login blueprint (Flask's test client): the pages need no Duo code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mfa_fsm import DuoConfig, Engine, MemoryStore
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from tests.web.support import PREFIX, Visitor, heading, make_app, state

PHONE = "DPFZRS9FB0D46QFTM899"


@pytest.fixture
def duo_emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as emulator:
        yield emulator


@pytest.fixture
def visitor(duo_emulator: DuoEmulator) -> Visitor:
    config = DuoConfig(duo_emulator.credentials, base_url=duo_emulator.base_url, poll_interval=0.0)
    return Visitor(make_app(Engine(MemoryStore(), [config])).test_client())


def to_picker(visitor: Visitor) -> None:
    assert visitor.start("duo", "jsmith").status_code == 303
    assert heading(visitor.page()) == "Continue to your second factor"
    visitor.step("first-factor")
    page = visitor.page()
    assert heading(page) == "Choose a second factor"
    body = page.get_data(as_text=True)
    assert "Duo Push to iOS (XXX-XXX-0100)" in body
    assert "Passcode from Duo Mobile or your token" in body


def test_start_page_offers_duo(visitor: Visitor) -> None:
    """The start page lists the Duo provider the engine runs."""
    body = visitor.get(f"{PREFIX}/").get_data(as_text=True)
    assert 'value="duo"' in body


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
    """A Duo Mobile / token passcode signs in."""
    to_picker(visitor)
    visitor.step("factor", factor="passcode")
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
