"""What a person's answer on a page becomes: the event and its data, for every provider.

Every page is rendered from a :class:`~mfa_fsm.core.snapshot.FlowView`, which reads the same
whatever the IdP. Only the names of a few event fields differ between the providers' handlers
(``EntrustFlow._on_submit_first_factor(password=...)`` but
``CyberArkFlow._on_submit_first_factor(answer=...)``); :data:`FIELDS` is the one place that
knows them, so the web pages and the terminal walk-through stay provider-free. Nothing here
imports Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from mfa_fsm.core.flow import Flow
from mfa_fsm.core.snapshot import Challenge, FlowView

#: Challenge kinds answered by typing (a password, security questions, a new password); any
#: other first challenge is confirmed (Entrust EXTERNAL) or started (a push) with no data.
TYPED_KINDS = frozenset({"password", "kba", "new_password", "text"})


@attrs.frozen
class FieldNames:
    """How one provider names the fields of its events."""

    #: the keyword of ``Provider.start`` that names the user
    user: str
    #: the keyword of ``submit_first_factor`` that carries a typed first factor
    first_answer: str
    #: whether ``submit_response`` takes ``answers=[...]`` even for a single question
    answers_always: bool


#: Read from each flow's ``start`` and ``_on_<event>`` signatures.
FIELDS: dict[str, FieldNames] = {
    "entrust": FieldNames(user="user_id", first_answer="password", answers_always=True),
    "cyberark": FieldNames(user="user", first_answer="answer", answers_always=False),
}
#: A provider added later without an entry gets the names the README documents.
DEFAULT_FIELDS = FIELDS["entrust"]

#: What a page offers, by provider: shown on start pages and in the terminal.
PROVIDER_LABELS = {"entrust": "Entrust Identity as a Service", "cyberark": "CyberArk Identity"}


def fields(provider: str) -> FieldNames:
    """The field names of ``provider``'s events."""
    return FIELDS.get(provider, DEFAULT_FIELDS)


def provider_label(provider: str) -> str:
    """A provider's name for people."""
    return PROVIDER_LABELS.get(provider, provider.replace("_", " ").title())


def start_options(provider: str, user: str) -> dict[str, Any]:
    """The keyword arguments of ``Engine.start(provider, ...)`` for ``user``."""
    return {fields(provider).user: user}


def allowed_events(view: FlowView) -> frozenset[str]:
    """The events a caller may send in ``view``'s state, read from the provider's machine."""
    flow = Flow.providers.get(view.provider)
    if flow is None or view.is_final:
        return frozenset()
    for state in flow.machine.states:
        if state.id == view.state:
            events = frozenset(str(event.id) for event in state.transitions.unique_events)
            return events - flow.internal_events
    return frozenset()


def typed_first_factor(view: FlowView) -> bool:
    """Whether the first factor is typed (a password), not confirmed or started."""
    return view.challenge is not None and view.challenge.kind in TYPED_KINDS


def can_choose(view: FlowView) -> bool:
    """Whether the page offers the choices (the picker, or "try another way")."""
    return "select_second_factor" in allowed_events(view) and any(
        choice.supported for choice in view.choices
    )


def takes_code(view: FlowView) -> bool:
    """Whether a code can be typed now (a code challenge, or an SMS while it is polled)."""
    challenge = view.challenge
    if challenge is None or "submit_response" not in allowed_events(view):
        return False
    return view.state == "SecondFactorSelected" or challenge.accepts_code


def answers_as_list(provider: str, challenge: Challenge | None) -> bool:
    """Whether the answers to ``challenge``'s questions go as ``answers=[...]``."""
    if challenge is None or not challenge.questions:
        return False
    return len(challenge.questions) > 1 or fields(provider).answers_always


Form = Callable[[str], str]
"""Reads one form field by name ("" when missing)."""


def first_factor_data(view: FlowView, form: Form) -> dict[str, Any]:
    """``submit_first_factor`` data: the typed first factor, or nothing (confirm / start)."""
    if not typed_first_factor(view):
        return {}
    challenge = view.challenge
    if challenge is not None and len(challenge.questions) > 1:
        return {"answers": _answers(challenge, form)}
    return {fields(view.provider).first_answer: form("answer")}


def select_data(view: FlowView, form: Form) -> dict[str, Any]:
    """``select_second_factor`` data: the chosen factor and, where it has any, the delivery."""
    data: dict[str, Any] = {"factor": form("factor")}
    delivery = form("delivery")
    if delivery:
        data["delivery"] = delivery
    return data


def response_data(view: FlowView, form: Form) -> dict[str, Any]:
    """``submit_response`` data: a code, or one answer per question."""
    if answers_as_list(view.provider, view.challenge):
        assert view.challenge is not None  # noqa: S101 - answers_as_list checked it; for mypy
        return {"answers": _answers(view.challenge, form)}
    return {"response": form("response")}


def _answers(challenge: Challenge, form: Form) -> list[str]:
    return [form(f"answer-{number}") for number in range(len(challenge.questions))]


#: Each page's form, by the route it posts to: the event and how its data is built.
EVENTS: Mapping[str, tuple[str, Callable[[FlowView, Form], dict[str, Any]]]] = {
    "first-factor": ("submit_first_factor", first_factor_data),
    "factor": ("select_second_factor", select_data),
    "response": ("submit_response", response_data),
    "poll": ("poll", lambda view, form: {}),
    "cancel": ("cancel", lambda view, form: {}),
}
