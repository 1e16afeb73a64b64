"""``events.next_steps``: the links a failed flow hands the person (Duo's enrolment portal is
one). Only an absolute https URL to a host, of printable ASCII, is ever a link; anything else
from an IdP is not shown as one."""

from __future__ import annotations

import pytest

from mfa_fsm.core.snapshot import Choice, FlowView
from mfa_fsm.web import events

GOOD = "https://api-1234abcd.duosecurity.com/portal?code=48bac5d9393fb2c2&akey=DAKEY"


def failed(*choices: Choice, state: str = "Failed") -> FlowView:
    return FlowView(
        flow_id="f", provider="any", state=state, version=3, deadline=0.0, choices=choices
    )


def link(url: str | None, *, supported: bool = False) -> Choice:
    return Choice(
        id="enroll", kind="enroll", label="Enrol a device", supported=supported, detail=url
    )


def test_an_https_link_of_a_failed_flow_is_a_next_step() -> None:
    assert events.next_steps(failed(link(GOOD))) == [("Enrol a device", GOOD)]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT://api.example/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http://api.example/portal",
        "//api.example/portal",
        "https:///portal",
        "https://api.example/por tal",
        "https://api.example/\nportal",
        "https://api.exämple/portal",
        "https://api.example/" + "a" * events.MAX_LINK,
        "",
        None,
    ],
)
def test_anything_else_is_not_a_link(url: str | None) -> None:
    assert events.next_steps(failed(link(url))) == []


def test_only_a_failed_flow_and_only_an_unusable_choice() -> None:
    """A usable choice is a button, not a link; a live flow's choices are not next steps."""
    assert events.next_steps(failed(link(GOOD, supported=True))) == []
    assert events.next_steps(failed(link(GOOD), state="AwaitingSecondFactor")) == []
    assert (
        events.next_steps(failed(Choice(id="x", kind="otp", label="SMS", detail="XXX-0100"))) == []
    )
