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


@pytest.mark.parametrize("provider", ["entrust", "cyberark"])
def test_typed_first_factor(provider: str) -> None:
    """A typed first factor goes as answer=, whatever the provider."""
    current = view(provider, "AwaitingFirstFactor", challenge=PASSWORD)
    assert events.typed_first_factor(current)
    assert events.first_factor_data(current, ["pw"]) == {"answer": "pw"}


def test_confirmed_or_started_first_factor_sends_nothing() -> None:
    """EXTERNAL (confirmed) and a passwordless push (started) send no data."""
    external = Challenge(factor="EXTERNAL", kind="external", prompt="", accepts_code=False)
    push = Challenge(factor="m1", kind="push", prompt="Approve")
    for provider, challenge in (("entrust", external), ("cyberark", push)):
        current = view(provider, "AwaitingFirstFactor", challenge=challenge)
        assert not events.typed_first_factor(current)
        assert events.first_factor_data(current, ["ignored"]) == {}


def test_first_factor_with_several_questions_sends_answers() -> None:
    """A first challenge of several security questions sends one answer per question."""
    current = view("cyberark", "AwaitingFirstFactor", challenge=QUESTIONS)
    assert events.typed_count(current) == 2
    assert events.first_factor_data(current, ["Rex", "Ottawa"]) == {"answers": ["Rex", "Ottawa"]}


def test_select_sends_delivery_only_when_chosen() -> None:
    """A delivery is sent only when one was chosen."""
    assert events.select_data("OTP", "SMS") == {"factor": "OTP", "delivery": "SMS"}
    assert events.select_data("TOKEN") == {"factor": "TOKEN"}
    assert events.select_data("TOKEN", "") == {"factor": "TOKEN"}


@pytest.mark.parametrize(
    ("provider", "challenge", "typed", "expected"),
    [
        ("entrust", QUESTIONS, ["a", "b"], {"answers": ["a", "b"]}),
        ("entrust", ONE_QUESTION, ["a"], {"answers": ["a"]}),
        ("cyberark", QUESTIONS, ["a", "b"], {"answers": ["a", "b"]}),
        ("cyberark", ONE_QUESTION, ["a"], {"answers": ["a"]}),
        ("entrust", PASSWORD, ["r"], {"answer": "r"}),
        ("cyberark", PASSWORD, ["r"], {"answer": "r"}),
    ],
)
def test_response_data_is_the_same_for_every_provider(
    provider: str, challenge: Challenge, typed: list[str], expected: object
) -> None:
    """Questions go as answers=[...] (one per question, a list of one for one), a code as
    answer=, whatever the provider: no per-provider field table."""
    current = view(provider, "SecondFactorSelected", challenge=challenge)
    assert events.response_data(current, typed) == expected


def test_page_forms_are_read_into_the_same_data() -> None:
    """The pages' own field names (answer, answer-<n>, response) become the shared fields."""
    current = view("entrust", "SecondFactorSelected", challenge=QUESTIONS)
    _, build = events.EVENTS["response"]
    assert build(current, form(**{"answer-0": "a", "answer-1": "b"})) == {"answers": ["a", "b"]}
    code = view("cyberark", "SecondFactorSelected", challenge=PASSWORD)
    assert build(code, form(response="r")) == {"answer": "r"}
    _, build = events.EVENTS["first-factor"]
    assert build(view("entrust", "AwaitingFirstFactor", challenge=PASSWORD), form(answer="p")) == {
        "answer": "p"
    }
    _, build = events.EVENTS["factor"]
    assert build(current, form(factor="OTP", delivery="SMS")) == {
        "factor": "OTP",
        "delivery": "SMS",
    }


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
    assert events.can_choose(entrust)  # try another way: a select with the current token
    assert not events.takes_code(entrust)
    assert not events.can_choose(view("entrust", "AwaitingFirstFactor", choices=(choice,)))
    assert not events.takes_code(view("entrust", "OobPending"))


def test_labels_come_from_the_provider_registry() -> None:
    """A provider's label is its flow class's; an unknown name is titled."""
    assert events.provider_label("ping_identity") == "Ping Identity"
    assert events.provider_label("entrust") == "Entrust Identity as a Service"
    assert events.provider_label("duo") == "Duo"
