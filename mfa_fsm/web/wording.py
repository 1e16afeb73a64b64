"""What the login pages say about each factor, in the pages' own words, not the IdP's.

The IdPs word their factors differently (Entrust "OTP", CyberArk "SMS... XXX-6789", Duo
"Duo Push to iOS"), so the pages name a factor by its provider-independent *kind*
(:attr:`~mfa_fsm.core.snapshot.Choice.kind`: ``push``, ``otp``, ``token``, ``grid``, ...)
and its delivery, as hosted sign-in pages do (Okta's "Get a push notification", Microsoft's
"Text +X XXXXXXXX89"), and keep the IdP's own text as a secondary line where it adds
something (the device's name, a masked number). The templates read this module through the
``wording`` name of their context; nothing here imports a web framework.

An application changes the words by overriding the templates that use them
(``mfa_fsm/_macros.html``, the state pages), or by wrapping these functions.
"""

from __future__ import annotations

import re

import attrs

from mfa_fsm.core.snapshot import Challenge, Choice

#: A delivery channel (``Choice.deliveries``, ``Challenge.delivery``) for people.
DELIVERIES = {
    "SMS": "text message",
    "EMAIL": "e-mail",
    "VOICE": "phone call",
    "WECHAT": "WeChat",
    "WHATSAPP": "WhatsApp",
}

#: Each factor kind: (the option's title on the factor list, what it asks of the person).
KINDS: dict[str, tuple[str, str]] = {
    "push": ("Get a push notification", "Approve the request on your device."),
    "otp": ("Get a one-time code", "A code is sent to you; type it here."),
    "token": ("Use your authenticator app or token", "Type the code it shows."),
    "call": ("Get a phone call", "Answer the call and follow its instructions."),
    "kba": ("Answer your security questions", "The answers you chose when you enrolled."),
    "grid": ("Use your grid card", "Type the values of the cells we ask for."),
    "code": ("Use a temporary access code", "A code your help desk gave you."),
    "qr": ("Scan a QR code", "Scan it with your authenticator app."),
    "password": ("Enter your password", "The password of your account."),
    "new_password": ("Choose a new password", "Your password must be changed."),
    "text": ("Answer a question", "A question your identity provider asks."),
    "security_key": ("Use a security key or passkey", "Not available on this page."),
    "enroll": ("Set up a sign-in method", "Enrol a device with your identity provider."),
}

#: A one-time code sent by a known channel: (title, what it asks of the person).
SENT_BY = {
    "SMS": ("Get a code by text message", "A one-time code is sent to your phone."),
    "EMAIL": ("Get a code by e-mail", "A one-time code is sent to your inbox."),
    "VOICE": ("Get a code by phone call", "A one-time code is read to you on a call."),
    "WECHAT": ("Get a code on WeChat", "A one-time code is sent to your WeChat account."),
    "WHATSAPP": ("Get a code on WhatsApp", "A one-time code is sent to your WhatsApp account."),
}


@attrs.frozen
class Option:
    """One entry of the factor list: one button (one form) per option.

    ``factor`` and ``delivery`` are what the button posts (``select_second_factor``);
    ``title`` is the pages' wording, ``detail`` the IdP's own text (its label and masked
    destination) shown as a secondary line, or ``""``; ``kind`` names the option's icon."""

    factor: str
    kind: str
    title: str
    description: str
    detail: str = ""
    delivery: str | None = None
    supported: bool = True
    #: why an unsupported option cannot be used here, for people, or ``""``
    why_not: str = ""


#: Words that say nothing about which factor a text means.
_FILLER = frozenset({"and", "for", "from", "the", "this", "that", "with", "you", "your", "sent"})


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^0-9a-z]+", text.casefold()) if len(w) > 2} - _FILLER


def _detail(*texts: str | None, said: str) -> str:
    """The IdP's texts worth a secondary line: not empty, not a URL, and saying something
    the pages' own words (``said``) do not (a device's name, a masked number)."""
    kept: list[str] = []
    known = _words(said)
    for text in texts:
        if not text or text.startswith(("http://", "https://")) or text in kept:
            continue
        if _words(text) <= known:
            continue
        kept.append(text)
        known |= _words(text)
    return " · ".join(kept)


def options(choice: Choice) -> list[Option]:
    """The factor list's entries for ``choice``: one per delivery of a code that can be
    sent several ways (SMS, e-mail, a call), else one."""
    title, description = KINDS.get(choice.kind, (choice.label, ""))
    if not choice.supported:
        why = choice.detail or ""
        if why.startswith(("http://", "https://")) or why == "locked":
            why = "locked" if why == "locked" else ""
        return [
            Option(
                factor=choice.id,
                kind=choice.kind,
                title=title,
                description="",
                detail=_detail(choice.label, said=title),
                supported=False,
                why_not=why,
            )
        ]
    if choice.deliveries:
        made = []
        for delivery in choice.deliveries:
            sent_title, sent_description = SENT_BY.get(
                delivery, (f"Get a code by {DELIVERIES.get(delivery, delivery)}", description)
            )
            made.append(
                Option(
                    factor=choice.id,
                    kind=f"otp-{delivery.lower()}",
                    title=sent_title,
                    description=sent_description,
                    # the IdP's label names the device when there are several (Duo)
                    detail=_detail(
                        choice.label, choice.detail, said=f"{sent_title} {sent_description}"
                    ),
                    delivery=delivery,
                )
            )
        return made
    return [
        Option(
            factor=choice.id,
            kind=choice.kind,
            title=title,
            description=description,
            detail=_detail(choice.label, choice.detail, said=f"{title} {description}"),
        )
    ]


@attrs.frozen
class Ask:
    """What a challenge's page says: its ``heading``, a ``lead`` sentence saying what to
    do, the typed field's ``label`` (``""`` where each question labels its own field) and
    the IdP's own prompt as a ``hint`` (``""`` when it says nothing more)."""

    heading: str
    lead: str
    label: str
    hint: str


def ask(challenge: Challenge) -> Ask:
    """The wording of the page that answers ``challenge`` (a code, questions, a device); the
    IdP's prompt is its hint only where it says something the page's own words do not."""
    asked = _ask(challenge)
    if asked.hint and _words(asked.hint) <= _words(f"{asked.heading} {asked.lead} {asked.label}"):
        return attrs.evolve(asked, hint="")
    return asked


def _ask(challenge: Challenge) -> Ask:
    kind, prompt = challenge.kind, challenge.prompt
    channel = DELIVERIES.get(challenge.delivery or "", "")
    if challenge.questions:
        lead = (
            "Answer the question you set up for this account."
            if len(challenge.questions) == 1
            else "Answer the questions you set up for this account."
        )
        return Ask("Answer your security questions", lead, "", "")
    if kind == "otp":
        lead = f"We sent a code to you by {channel}." if channel else "We sent a code to you."
        return Ask("Enter your code", lead, "Verification code", prompt)
    if kind == "token":
        return Ask(
            "Enter your code",
            "Open your authenticator app, or look at your token, and type the code it shows.",
            "Code from your token or authenticator app",
            prompt,
        )
    if kind == "grid":
        return Ask(
            "Enter your code",
            "Find each cell below on your grid card and type their values in order.",
            "Values from your grid card",
            "",
        )
    if kind == "code":
        return Ask(
            "Enter your code",
            "Type the temporary access code your help desk gave you.",
            "Temporary access code",
            "",
        )
    # A question the IdP words itself (CyberArk's "text" mechanisms): its prompt is the label.
    return Ask("Enter your answer", "Your identity provider asks:", prompt, "")


def waiting(challenge: Challenge | None) -> str:
    """What the "approve on your device" page asks the person to do while it waits."""
    kind = challenge.kind if challenge is not None else "push"
    if kind == "call":
        return "We are calling you. Answer the call and follow its instructions."
    if kind == "otp":
        return "We sent you a message. Open its link, or type the code it contains below."
    if kind == "qr":
        return "Scan the QR code with your authenticator app."
    return "We sent a request to your device. Open it and approve the sign-in."


#: What to do after each ending (``FlowView.failure``): the failed page's one next step.
NEXT_STEPS = {
    "rejected": "Try again, and check the code or answers before you send them.",
    "denied": "If it was you, try again and approve the request. If it was not you, "
    "tell your IT help desk.",
    "expired": "Try again, and approve the request or type the code before the time runs out.",
    "locked": "Wait a while or ask your IT help desk to unlock it, or choose another way.",
    "cancelled": "Try again whenever you are ready.",
    "idp_error": "Try again. If it happens again, contact your IT help desk.",
    "unavailable": "Ask your IT help desk to set up a method this site supports.",
}


def next_step(failure: str | None) -> str:
    """The failed page's next step for ``failure`` (``FlowView.failure``)."""
    return NEXT_STEPS.get(
        failure or "", "Start again. If it happens again, contact your IT help desk."
    )


def adds_to(detail: str | None, said: str) -> bool:
    """Whether the IdP's ``detail`` of a failure says more than ``said`` (the page's own
    sentence for it): "the request was declined on the device" repeats "The request was
    declined on your device."; "... reported as fraudulent ..." or an enrolment link's
    instruction does not."""
    return bool(detail) and not _words(detail or "") <= _words(said)
