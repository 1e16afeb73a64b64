"""The pages' own words per factor kind (mfa_fsm.web.wording): curated titles, the IdP's text
kept as a secondary line only where it says more, one option per delivery."""

from __future__ import annotations

from mfa_fsm.core.snapshot import Challenge, Choice
from mfa_fsm.web import wording


def test_a_code_sent_several_ways_is_one_option_per_delivery() -> None:
    choice = Choice(
        id="OTP",
        kind="otp",
        label="One-time code sent to you",
        deliveries=("SMS", "EMAIL", "VOICE"),
    )
    made = wording.options(choice)
    assert [(o.delivery, o.title) for o in made] == [
        ("SMS", "Get a code by text message"),
        ("EMAIL", "Get a code by e-mail"),
        ("VOICE", "Get a code by phone call"),
    ]
    assert {o.factor for o in made} == {"OTP"}


def test_the_idps_label_is_kept_only_where_it_says_more() -> None:
    # Duo names the device: kept as the secondary line.
    push = wording.options(Choice(id="push:D1", kind="push", label="Duo Push to iOS (XXX-0142)"))
    assert push[0].title == "Get a push notification"
    assert push[0].detail == "Duo Push to iOS (XXX-0142)"
    # Entrust's label says nothing the title and description do not: not repeated.
    token = wording.options(
        Choice(id="TOKEN", kind="token", label="Code from your token or authenticator app")
    )
    assert token[0].title == "Use your authenticator app or token"
    assert token[0].detail == ""
    # A masked destination the label already shows is not shown twice.
    sms = wording.options(Choice(id="m1", kind="otp", label="SMS... XXX-6789", detail="6789"))
    assert sms[0].detail == "SMS... XXX-6789"


def test_an_unknown_kind_keeps_the_idps_label() -> None:
    made = wording.options(Choice(id="X", kind="brand-new", label="Wave your badge"))
    assert made[0].title == "Wave your badge"


def test_unsupported_choices_say_why_but_never_show_a_url() -> None:
    key = wording.options(
        Choice(
            id="U2F",
            kind="security_key",
            label="Security Key",
            supported=False,
            detail="a security key (FIDO2/U2F), which this sign-in cannot use",
        )
    )[0]
    assert not key.supported
    assert key.why_not == "a security key (FIDO2/U2F), which this sign-in cannot use"
    enrol = wording.options(
        Choice(
            id="enroll",
            kind="enroll",
            label="Enrol a device with Duo",
            supported=False,
            detail="https://duo.example/enroll?x=1",
        )
    )[0]
    assert "https" not in enrol.why_not + enrol.detail + enrol.title


def test_each_challenge_page_has_its_own_words_and_keeps_the_prompt_as_a_hint() -> None:
    sms = wording.ask(Challenge(factor="OTP", kind="otp", prompt="Type the code", delivery="SMS"))
    assert (sms.heading, sms.label, sms.hint) == (
        "Enter your code",
        "Verification code",
        "Type the code",
    )
    assert "text message" in sms.lead
    questions = wording.ask(
        Challenge(factor="KBA", kind="kba", prompt="Answer", questions=("Pet?", "Car?"))
    )
    assert questions.heading == "Answer your security questions"
    assert questions.label == ""
    text = wording.ask(Challenge(factor="t", kind="text", prompt="Your badge number?"))
    assert text.label == "Your badge number?"


def test_every_failure_has_a_next_step() -> None:
    from mfa_fsm.web.blueprint import FAILURES  # noqa: PLC0415 - needs Flask

    for reason in FAILURES:
        assert wording.next_step(reason) == wording.NEXT_STEPS[reason]
    assert wording.next_step(None).startswith("Start again")


def test_a_delivery_option_keeps_the_device_the_idp_names() -> None:
    """Duo's SMS choice names its device: each of several phones stays recognisable."""
    (sms,) = wording.options(
        Choice(
            id="sms:D1",
            kind="otp",
            label="Text message passcodes to iOS (XXX-XXX-0142)",
            deliveries=("SMS",),
            detail="XXX-XXX-0142",
        )
    )
    assert sms.title == "Get a code by text message"
    assert sms.detail == "Text message passcodes to iOS (XXX-XXX-0142)"
    # Entrust's generic OTP label says nothing more: not repeated under each delivery.
    made = wording.options(
        Choice(id="OTP", kind="otp", label="One-time code sent to you", deliveries=("SMS",))
    )
    assert made[0].detail == ""
