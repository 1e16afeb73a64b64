"""``select_second_factor(factor=<kind>)`` against the CyberArk emulator, over real HTTP:
MechanismIds are opaque, so a kind (or a channel: sms, email) names the one offered mechanism
of that kind, and a kind several mechanisms share is refused with their ids."""

from __future__ import annotations

import pytest

from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.testing import CyberArkEmulator
from tests.cyberark.conftest import Login


def at_second_challenge(login: Login) -> object:
    client = login("alice")
    view = client.send("submit_first_factor", answer="alice-password")
    assert view.state == "AwaitingSecondFactor"
    return client


@pytest.mark.parametrize(("kind", "label"), [("sms", "SMS"), ("email", "mail")])
def test_a_channel_picks_its_mechanism_and_the_code_completes(
    login: Login, cyberark_emulator: CyberArkEmulator, kind: str, label: str
) -> None:
    """``factor="sms"`` starts the SMS mechanism (StartOOB): its code then completes."""
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    offered = {choice.label: choice.id for choice in client.view.choices}
    view = client.send("select_second_factor", factor=kind)
    assert view.state == "OobPending"
    assert view.challenge is not None
    assert view.challenge.factor in {mid for name, mid in offered.items() if label in name}
    view = client.send("submit_response", answer=cyberark_emulator.last_code("alice"))
    assert view.state == "Completed"


def test_push_and_question_kinds_pick_their_mechanism(login: Login) -> None:
    """``factor="push"`` starts the mobile push; ``factor="kba"`` asks the question."""
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    assert client.send("select_second_factor", factor="push").state == "OobPending"
    other = login("alice")
    other.send("submit_first_factor", answer="alice-password")
    view = other.send("select_second_factor", factor="kba")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None and view.challenge.questions
    assert other.send("submit_response", answers=["Smokey"]).state == "Completed"


def test_a_kind_two_mechanisms_share_is_refused_with_their_ids(
    login: Login, cyberark_emulator: CyberArkEmulator
) -> None:
    """SMS and e-mail are both of kind ``otp``: InvalidInput lists both MechanismIds, with
    no call to CyberArk and the flow unchanged."""
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    ids = [choice.id for choice in client.view.choices if choice.kind == "otp"]
    assert len(ids) == 2
    before, calls = client.saved, len(cyberark_emulator.calls)
    with pytest.raises(InvalidInput) as caught:
        client.send("select_second_factor", factor="otp")
    assert caught.value.field == "factor"
    assert all(mechanism_id in str(caught.value) for mechanism_id in ids)
    assert (client.saved, len(cyberark_emulator.calls)) == (before, calls)


def test_an_unknown_kind_is_refused_as_an_unknown_factor(login: Login) -> None:
    client = login("alice")
    client.send("submit_first_factor", answer="alice-password")
    with pytest.raises(InvalidInput, match="not one of the 4 mechanisms offered"):
        client.send("select_second_factor", factor="grid")
