"""The event fields every provider shares, the old names they replace, and factor kinds.

Every provider's flow takes the same data for the same event::

    Provider.start(user=...)                       # or verified_user=VerifiedUser(...)
    flow.send("submit_first_factor", answer=...)   # answers=[...] for several questions
    flow.send("select_second_factor", factor=..., delivery=...)
    flow.send("submit_response", answer=...)       # answers=[...] for security questions

The names used before 0.2 (``user_id=``, ``password=``, ``response=``, see
:data:`RENAMED_FIELDS`) still work for one release: each use warns with a
:class:`DeprecationWarning` naming the new field and behaves exactly as the new name.

``factor`` is a choice's ``id`` (``view.choices``) or, where the IdP's ids are opaque
(CyberArk mechanism ids, Duo device ids), a stable *kind*: a choice's ``kind`` (``push``,
``call``, ``otp``, ``token``, ``kba``, ...) or a delivery channel (``sms``, ``email``,
``voice``). A kind names the single offered choice of that kind; when several are offered the
step is refused with :class:`InvalidInput` listing their ids (see :func:`resolve_factor`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from mfa_fsm.core.errors import InvalidInput

if TYPE_CHECKING:
    from mfa_fsm.core.snapshot import Choice, Snapshot

#: What ``start`` and each event took before the names were shared, and the shared name:
#: (event or "start") -> {old name: new name}. Deprecated in 0.2, removed in 0.3.
RENAMED_FIELDS: Final[Mapping[str, Mapping[str, str]]] = {
    "start": {"user_id": "user"},
    "submit_first_factor": {"password": "answer"},
    "submit_response": {"response": "answer"},
}


def neutral_fields(event: str, data: Mapping[str, Any], *, stacklevel: int = 2) -> dict[str, Any]:
    """``data`` with every deprecated field name of ``event`` replaced by its shared name.

    Warns once per old name used (:class:`DeprecationWarning`, attributed ``stacklevel``
    frames up, as :func:`warnings.warn`). Raises :class:`InvalidInput` when the old and the
    new name are both given. ``data`` itself is not changed.
    """
    renamed = RENAMED_FIELDS.get(event) if isinstance(event, str) else None
    if not renamed or renamed.keys().isdisjoint(data):
        return dict(data)
    out = dict(data)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise InvalidInput(old, f"is the old name of {new}; give only {new}=")
        where = "start" if event == "start" else f"{event!r}"
        warnings.warn(
            f"{old}= of {where} is deprecated and goes in the next release; use {new}= "
            "(every provider takes the same field names)",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )
        out[new] = out.pop(old)
    return out


#: Delivery channels a ``factor`` kind may name (lower case; compared case-insensitively
#: with a choice's ``deliveries``).
DELIVERY_KINDS: Final = frozenset({"sms", "email", "voice"})

KindsOf = Callable[["Choice"], Iterable[str]]
"""The stable kinds a choice answers to: its ``kind``, its delivery channels, and anything
a provider adds (``Flow.factor_kinds``)."""


def choice_kinds(choice: Choice) -> frozenset[str]:
    """The kinds ``choice`` answers to when not named by id: its ``kind`` and, lower-cased, its
    delivery channels (an Entrust OTP by SMS, e-mail or voice answers to ``sms``, ...)."""
    return frozenset({choice.kind, *(delivery.lower() for delivery in choice.deliveries)})


def resolve_factor(
    snapshot: Snapshot, data: Mapping[str, Any], kinds_of: KindsOf = choice_kinds
) -> dict[str, Any]:
    """``select_second_factor`` data with a ``factor`` kind replaced by the offered choice's id.

    An id of an offered choice, or a value that is no offered choice's kind, is left alone
    (the provider's handler accepts or refuses it). A kind offered by exactly one supported
    choice becomes that choice's id; a delivery kind (``sms``) also sets ``delivery`` when the
    choice offers that channel and none was given (another ``delivery`` with it raises
    :class:`InvalidInput`: the two disagree). A kind several offered choices answer to
    raises :class:`InvalidInput` listing their ids, so the caller picks one. Nothing here
    calls the IdP.
    """
    factor = data.get("factor")
    offered = [choice for choice in snapshot.choices if choice.supported]
    if not isinstance(factor, str) or any(choice.id == factor for choice in offered):
        return dict(data)
    wanted = factor  # kinds are lower case; "OTP" stays an id, never the kind "otp"
    matching = [choice for choice in offered if wanted in set(kinds_of(choice))]
    if not matching:
        return dict(data)
    if len(matching) > 1:
        raise InvalidInput(
            "factor",
            f"{wanted!r} matches {len(matching)} offered choices; pass one of their ids: "
            + ", ".join(choice.id for choice in matching),
        )
    (choice,) = matching
    out = {**data, "factor": choice.id}
    if wanted in DELIVERY_KINDS:
        channel = next((d for d in choice.deliveries if d.lower() == wanted), None)
        delivery = out.get("delivery")
        if channel is not None and delivery is not None and delivery != channel:
            # factor="sms" with delivery="VOICE": the two fields disagree; guess neither.
            raise InvalidInput(
                "delivery",
                f"{delivery!r} contradicts factor={wanted!r}; pass factor={choice.id!r} with "
                f"one of {list(choice.deliveries)}, or the kind alone",
            )
        if channel is not None and delivery is None and len(choice.deliveries) > 1:
            out["delivery"] = channel
    return out
