"""Entrust IDaaS replies turned into values: pure functions, no I/O.

The field names are those of Entrust's OpenAPI spec (v5.46): ``UserAuthenticateQueryResponse``
for the query, ``AuthenticatedResponse`` for select and complete, ``ErrorInfo`` for errors.
Unknown fields are ignored and unknown enum strings kept as they are: the vendor adds
authenticators and statuses between versions.
"""

from __future__ import annotations

import attrs

from mfa_fsm.core.errors import IdpError, IdpReplyError
from mfa_fsm.core.http import HttpResponse
from mfa_fsm.core.replies import Fields, json_body, refuse_transient


@attrs.frozen
class QueryReply:
    """The user's authenticators, from ``POST /api/web/v2/authentication/users``."""

    authentication_types: tuple[str, ...]
    second_factors: tuple[str, ...]
    otp_default_delivery: str | None
    otp_deliveries: tuple[str, ...]
    remaining_attempts: dict[str, int]
    locked: frozenset[str]
    completed: bool
    token: str | None = attrs.field(repr=False)
    expires_at: float | None
    time: float | None = None


@attrs.frozen
class AuthReply:
    """An ``AuthenticatedResponse`` from a select (challenge) or complete call."""

    completed: bool
    token: str | None = attrs.field(repr=False)
    expires_at: float | None
    status: str | None
    delivery: str | None
    user_id: str | None
    first_name: str | None
    last_name: str | None
    kba_id: str | None
    kba_questions: tuple[tuple[str, str], ...]
    grid_cells: tuple[str, ...]
    mutual_challenge: str | None
    token_challenge: str | None
    #: the IdP's clock when it answered (epoch seconds), to spot replayed replies
    time: float | None = None

    @property
    def display_name(self) -> str | None:
        """The user's name as the IdP gave it, or ``None``."""
        name = " ".join(part for part in (self.first_name, self.last_name) if part)
        return name or None


#: ``errorCode`` values that mean the token or transaction the call named is gone, so no
#: retry can succeed: ``invalid_token`` / ``token_expired`` (HTTP 401 on a token that is
#: unknown, already rotated or past its ``expires``; v5.46 ``ErrorInfo``, the 401 answer of
#: every token-bearing call), ``no_transaction`` (the vendor guide's answer to a poll of a push
#: IDaaS no longer holds: ended on the device or past its lifetime) and ``INVALID_TRANSACTION``
#: (Entrust's JS SDK troubleshooting table: "submit/poll after the transaction expired or was
#: cancelled").
GONE_CODES = frozenset({"invalid_token", "token_expired", "no_transaction", "INVALID_TRANSACTION"})


def decipher(response: HttpResponse, path: str) -> Fields:
    """The JSON object of a 2xx reply; raise the typed error any other reply means.

    HTTP 429/5xx → transient :class:`IdpError` (with ``retry_after``); other statuses with an
    ``ErrorInfo`` body → :class:`IdpError` carrying ``errorCode``; anything unreadable →
    :class:`IdpReplyError`. The IdP's ``errorMessage`` is kept out of the message, since it
    may echo what the user typed. An ``errorCode`` in :data:`GONE_CODES` sets
    ``IdpError.gone``: the flow then ends ``Failed(expired)``.
    """
    refuse_transient(response, path)
    data = json_body(response, path)
    if 200 <= response.status < 300:
        return Fields(data, path)
    info = Fields(data, path, "ErrorInfo")
    code = info.text("errorCode")
    if not code:
        raise IdpReplyError(
            f"the IdP refused {path} (HTTP {response.status}) without an ErrorInfo body",
            path=path,
            status=response.status,
        )
    raise IdpError(
        f"the IdP refused {path} (HTTP {response.status}, {code})",
        path=path,
        status=response.status,
        error_code=code,
        gone=code in GONE_CODES,
    )


def _epoch_ms(value: float | None) -> float | None:
    # Entrust sends epoch milliseconds; 0 (pending push replies) means "no expiry given".
    return value / 1000 if value else None


def parse_query(reply: Fields) -> QueryReply:
    """Read a ``UserAuthenticateQueryResponse``."""
    delivery = reply.child("otpDeliveryInfo")
    remaining: dict[str, int] = {}
    locked: set[str] = set()
    for status in reply.objects("authenticatorLockoutStatus"):
        kind = status.text("type")
        if kind is None:
            continue
        left = status.integer("remainingAuthenticationAttempts")
        if left is not None:
            remaining[kind] = left
        if status.flag("locked"):
            locked.add(kind)
    return QueryReply(
        authentication_types=reply.texts("authenticationTypes"),
        second_factors=reply.texts("availableSecondFactor"),
        otp_default_delivery=delivery.text("otpDefaultDelivery") if delivery else None,
        otp_deliveries=delivery.texts("availableOTPDelivery") if delivery else (),
        remaining_attempts=remaining,
        locked=frozenset(locked),
        completed=reply.flag("authenticationCompleted"),
        token=reply.token("token"),
        expires_at=_epoch_ms(reply.number("expires")),
        time=_epoch_ms(reply.number("time")),
    )


def parse_authenticated(reply: Fields) -> AuthReply:
    """Read an ``AuthenticatedResponse`` (select or complete)."""
    kba = reply.child("kbaChallenge")
    questions: list[tuple[str, str]] = []
    for question in kba.objects("userQuestions") if kba else ():
        text = question.text("question")
        if text is None:
            raise IdpReplyError("a KBA question has no text", path=reply.path)
        questions.append((question.text("id") or "", text))
    grid = reply.child("gridChallenge")
    cells = []
    for cell in grid.objects("challenge") if grid else ():
        # 0-based row/column, shown A1-style as on the user's grid card (columns A-Z).
        row, column = cell.integer("row", high=99), cell.integer("column", high=25)
        if row is None or column is None:
            raise IdpReplyError("a grid challenge cell has no row or column", path=reply.path)
        cells.append(f"{chr(ord('A') + column)}{row + 1}")
    token_challenge = reply.child("tokenChallenge")
    # The spec spells it otpdeliveryType here and otpDeliveryType in the query; accept both.
    delivery = reply.text("otpdeliveryType") or reply.text("otpDeliveryType")
    return AuthReply(
        completed=reply.flag("authenticationCompleted"),
        token=reply.token("token"),
        expires_at=_epoch_ms(reply.number("expires")),
        status=reply.text("status"),
        delivery=delivery,
        user_id=reply.text("userId"),
        first_name=reply.text("firstName"),
        last_name=reply.text("lastName"),
        kba_id=kba.text("id") if kba else None,
        kba_questions=tuple(questions),
        grid_cells=tuple(cells),
        mutual_challenge=reply.text("tokenPushMutualChallenge")
        or reply.text("pushMutualChallenge"),
        token_challenge=token_challenge.text("challenge") if token_challenge else None,
        time=_epoch_ms(reply.number("time")),
    )
