"""The one mapping from a page's form to an event, for every provider (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from mfa_fsm import Challenge, Choice, FlowView
from mfa_fsm.web import events


def view(provider: str, state: str, **fields: Any) -> FlowView:
    return FlowView(flow_id="f", provider=provider, state=state, version=0, deadline=0.0, **fields)


def form(**values: str) -> events.Form:
    return lambda name: values.get(name, "")


PASSWORD = Challenge(factor="PASSWORD", kind="password", prompt="Password")
QUESTIONS = Challenge(factor="KBA", kind="kba", prompt="Answer", questions=("Pet?", "City?"))
ONE_QUESTION = Challenge(factor="SQ", kind="kba", prompt="Answer", questions=("Pet?",))


@pytest.mark.parametrize(
    ("provider", "expected"),
    [("entrust", {"user_id": "jsmith"}), ("cyberark", {"user": "jsmith"})],
)
def test_start_names_the_user_as_the_provider_does(provider: str, expected: object) -> None:
    """Entrust's start takes user_id=, CyberArk's user=."""
    assert events.start_options(provider, "jsmith") == expected


@pytest.mark.parametrize(
    ("provider", "expected"),
    [("entrust", {"password": "pw"}), ("cyberark", {"answer": "pw"})],
)
def test_typed_first_factor(provider: str, expected: object) -> None:
    """A typed first factor goes as password= (Entrust) or answer= (CyberArk)."""
    current = view(provider, "AwaitingFirstFactor", challenge=PASSWORD)
    assert events.typed_first_factor(current)
    assert events.first_factor_data(current, form(answer="pw")) == expected


def test_confirmed_or_started_first_factor_sends_nothing() -> None:
    """EXTERNAL (confirmed) and a passwordless push (started) send no data."""
    external = Challenge(factor="EXTERNAL", kind="external", prompt="", accepts_code=False)
    push = Challenge(factor="m1", kind="push", prompt="Approve")
    for provider, challenge in (("entrust", external), ("cyberark", push)):
        current = view(provider, "AwaitingFirstFactor", challenge=challenge)
        assert not events.typed_first_factor(current)
        assert events.first_factor_data(current, form(answer="ignored")) == {}


def test_first_factor_with_several_questions_sends_answers() -> None:
    """A first challenge of several security questions sends one answer per question."""
    current = view("cyberark", "AwaitingFirstFactor", challenge=QUESTIONS)
    data = events.first_factor_data(current, form(**{"answer-0": "Rex", "answer-1": "Ottawa"}))
    assert data == {"answers": ["Rex", "Ottawa"]}


def test_select_sends_delivery_only_when_chosen() -> None:
    """A delivery is sent only with a factor that has deliveries (CyberArk takes none)."""
    current = view("entrust", "AwaitingSecondFactor")
    assert events.select_data(current, form(factor="OTP", delivery="SMS")) == {
        "factor": "OTP",
        "delivery": "SMS",
    }
    assert events.select_data(current, form(factor="TOKEN")) == {"factor": "TOKEN"}


@pytest.mark.parametrize(
    ("provider", "challenge", "expected"),
    [
        ("entrust", QUESTIONS, {"answers": ["a", "b"]}),
        ("entrust", ONE_QUESTION, {"answers": ["a"]}),
        ("cyberark", QUESTIONS, {"answers": ["a", "b"]}),
        ("cyberark", ONE_QUESTION, {"response": "r"}),
        ("entrust", PASSWORD, {"response": "r"}),
    ],
)
def test_response_data(provider: str, challenge: Challenge, expected: object) -> None:
    """Entrust KBA always takes answers=[...]; CyberArk takes a list for several questions only."""
    current = view(provider, "SecondFactorSelected", challenge=challenge)
    values = form(response="r", **{"answer-0": "a", "answer-1": "b"})
    assert events.response_data(current, values) == expected


def test_allowed_events_come_from_the_machine() -> None:
    """What a page offers follows the provider's transition table, never an internal event."""
    entrust = events.allowed_events(view("entrust", "AwaitingFirstFactor"))
    assert entrust == {"submit_first_factor", "cancel"}
    cyberark = events.allowed_events(view("cyberark", "OobPending"))
    assert {"poll", "submit_response", "select_second_factor", "cancel"} <= cyberark
    assert "expire" not in cyberark
    assert events.allowed_events(view("entrust", "Completed")) == frozenset()
    assert events.allowed_events(view("nobody", "AwaitingFirstFactor")) == frozenset()
    assert events.allowed_events(view("entrust", "NoSuchState")) == frozenset()


def test_choices_and_codes_offered_where_the_state_takes_them() -> None:
    """The other choices and the code field appear only where the machine allows them."""
    choice = Choice(id="m2", kind="otp", label="E-mail")
    sms = Challenge(factor="m1", kind="otp", prompt="Code sent", accepts_code=True)
    cyberark = view("cyberark", "OobPending", choices=(choice,), challenge=sms)
    assert events.can_choose(cyberark)
    assert events.takes_code(cyberark)
    push = Challenge(factor="TOKENPUSH", kind="push", prompt="Approve", accepts_code=False)
    entrust = view("entrust", "OobPending", choices=(choice,), challenge=push)
    assert not events.can_choose(entrust)
    assert not events.takes_code(entrust)
    assert not events.takes_code(view("entrust", "OobPending"))


def test_unknown_provider_gets_the_documented_names() -> None:
    """A provider added without an entry uses the README's names; labels fall back too."""
    assert events.fields("okta") == events.DEFAULT_FIELDS
    assert events.provider_label("ping_identity") == "Ping Identity"
    assert events.provider_label("entrust") == "Entrust Identity as a Service"
