"""What a person's answer becomes: the event and its data, the same for every provider.

Every page is rendered from a :class:`~mfa_fsm.core.snapshot.FlowView`, which reads the same
whatever the IdP, and every provider's events take the same fields
(:mod:`mfa_fsm.core.fields`): ``answer=`` for one typed value, ``answers=[...]`` for one per
security question, ``factor=`` and ``delivery=``. So what to send follows from the view alone:
the web pages and the terminal walk-through (``mfa-fsm login``) both call
:func:`first_factor_data`, :func:`select_data` and :func:`response_data` with what the person
typed, and neither knows any provider. Providers are read from the registry
(:mod:`mfa_fsm.core.registry`). Nothing here imports Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.registry import provider_flow
from mfa_fsm.core.snapshot import Challenge, Choice, FlowView

#: Challenge kinds answered by typing (a password, security questions, a new password); any
#: other first challenge is confirmed (Entrust EXTERNAL) or started (a push) with no data.
TYPED_KINDS = frozenset({"password", "kba", "new_password", "text"})


def provider_label(provider: str) -> str:
    """A provider's name for people: its flow class's ``label`` (the registry's), else the
    name itself, titled."""
    try:
        return provider_flow(provider).label
    except UsageError:
        return provider.replace("_", " ").title()


#: The longest link a failed page offers (a URL past it is not shown).
MAX_LINK = 2048


def next_steps(view: FlowView) -> list[tuple[str, str]]:
    """``(label, url)`` of every link a failed flow hands the person: a choice that is not
    usable here but whose ``detail`` is an ``https`` URL to a host (an IdP's enrolment portal
    for a user who must enrol first). Empty for any other view.

    Only an absolute ``https`` URL with a host, of printable ASCII and at most
    :data:`MAX_LINK` characters, is passed on: the URL came from the IdP and ends up in a
    page's ``href`` (a ``javascript:`` or ``data:`` URL would run in the page; the
    templates escape what is shown, OWASP XSS Prevention Cheat Sheet, rule 5 "URL
    escape ... and validate the scheme").
    """
    if view.state != "Failed":
        return []
    found: list[tuple[str, str]] = []
    for choice in view.choices:
        url = choice.detail
        if choice.supported or not url or len(url) > MAX_LINK:
            continue
        if not (url.isascii() and url.isprintable()) or " " in url:
            continue
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            found.append((choice.label, url))
    return found


def allowed_events(view: FlowView) -> frozenset[str]:
    """The events a caller may send in ``view``'s state, read from the provider's machine."""
    if view.is_final:
        return frozenset()
    try:
        flow = provider_flow(view.provider)
    except UsageError:
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


def token_instead(view: FlowView) -> Choice | None:
    """The choice of a code from a token or authenticator app (kind ``token``: Entrust
    TOKEN) to offer while a request that takes no code is pending (Entrust TOKENPUSH), where
    the flow takes a new choice; ``None`` when a code can already be typed (``takes_code``)
    or there is no such choice."""
    challenge = view.challenge
    if view.state != "OobPending" or challenge is None or takes_code(view):
        return None
    if not can_choose(view):
        return None
    for choice in view.choices:
        if choice.supported and choice.kind == "token" and choice.id != challenge.factor:
            return choice
    return None


def takes_code(view: FlowView) -> bool:
    """Whether a code can be typed now (a code challenge, or an SMS while it is polled)."""
    challenge = view.challenge
    if challenge is None or "submit_response" not in allowed_events(view):
        return False
    return view.state == "SecondFactorSelected" or challenge.accepts_code


def answers_as_list(challenge: Challenge | None) -> bool:
    """Whether ``challenge`` is answered as ``answers=[...]``, one per question: any challenge
    with questions (every provider takes a list of one for a single question)."""
    return challenge is not None and bool(challenge.questions)


def typed_count(view: FlowView) -> int:
    """How many values the person types for ``view``'s challenge: one per question, else one."""
    challenge = view.challenge
    return len(challenge.questions) if challenge is not None and challenge.questions else 1


def _typed_data(view: FlowView, typed: Sequence[str]) -> dict[str, Any]:
    if answers_as_list(view.challenge):
        return {"answers": list(typed)}
    return {"answer": typed[0] if typed else ""}


def first_factor_data(view: FlowView, typed: Sequence[str]) -> dict[str, Any]:
    """``submit_first_factor`` data: the typed first factor (``typed``: what the person typed,
    one value per question), or nothing when it is confirmed or started."""
    if not typed_first_factor(view):
        return {}
    return _typed_data(view, typed)


def select_data(factor: str, delivery: str | None = None) -> dict[str, Any]:
    """``select_second_factor`` data: the chosen factor and, where it has any, the delivery."""
    data: dict[str, Any] = {"factor": factor}
    if delivery:
        data["delivery"] = delivery
    return data


def response_data(view: FlowView, typed: Sequence[str]) -> dict[str, Any]:
    """``submit_response`` data: a code (``answer=``), or one answer per question."""
    return _typed_data(view, typed)


Form = Callable[[str], str]
"""Reads one field of a page's form by name ("" when missing)."""


def _form_answers(view: FlowView, form: Form, single: str) -> list[str]:
    """What the person typed on a page: ``answer-<n>`` per question, else the field ``single``."""
    if answers_as_list(view.challenge):
        return [form(f"answer-{number}") for number in range(typed_count(view))]
    return [form(single)]


#: Each page's form, by the route it posts to: the event and how its data is read from the
#: form (the pages' own field names: ``answer``, ``answer-<n>``, ``response``, ``factor``).
EVENTS: Mapping[str, tuple[str, Callable[[FlowView, Form], dict[str, Any]]]] = {
    "first-factor": (
        "submit_first_factor",
        lambda view, form: first_factor_data(view, _form_answers(view, form, "answer")),
    ),
    "factor": (
        "select_second_factor",
        lambda view, form: select_data(form("factor"), form("delivery")),
    ),
    "response": (
        "submit_response",
        lambda view, form: response_data(view, _form_answers(view, form, "response")),
    ),
    "poll": ("poll", lambda view, form: {}),
    "resend": ("resend", lambda view, form: {}),
    "cancel": ("cancel", lambda view, form: {}),
}


def can_resend(view: FlowView) -> bool:
    """Whether the page offers "send a new code / request" (``resend``): the challenge sent
    something to the user's device and the flow takes ``resend`` now."""
    challenge = view.challenge
    return (
        challenge is not None
        and challenge.resend_at is not None
        and "resend" in allowed_events(view)
    )
