"""Pure helpers every provider uses to read an IdP reply: no I/O, tested with recorded bodies."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from mfa_fsm.core.errors import IdpError, IdpReplyError
from mfa_fsm.core.http import HttpResponse

#: Longest wait mfa_fsm honours from a Retry-After header; a larger value is capped, since an
#: MFA step cannot usefully wait longer than this.
MAX_RETRY_AFTER = 300.0


def retry_after(response: HttpResponse, *, now: float | None = None) -> float | None:
    """Seconds the IdP asked to wait (``Retry-After`` as seconds or HTTP date), or ``None``."""
    value = response.header("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    # The HTTP-date form is rare; email.utils (with the email package) loads only for it.
    import email.utils  # noqa: PLC0415

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def json_body(response: HttpResponse, path: str) -> Any:
    """The reply body parsed as JSON; an empty, HTML or non-JSON body is an IdpReplyError."""
    if not response.body.strip():
        raise IdpReplyError(
            f"the IdP sent an empty reply to {path} (HTTP {response.status})",
            path=path,
            status=response.status,
        )
    # json loads with the first reply, not at import (an Entrust-only import stays small).
    import json  # noqa: PLC0415

    try:
        return json.loads(response.body)
    except (ValueError, RecursionError) as exc:
        kind = "an HTML page" if response.body.lstrip()[:1] == b"<" else "a body that is not JSON"
        raise IdpReplyError(
            f"the IdP sent {kind} instead of JSON to {path} (HTTP {response.status}); "
            "check the base URL, or try again if the IdP is being maintained",
            path=path,
            status=response.status,
        ) from exc


def refuse_transient(response: HttpResponse, path: str) -> None:
    """Raise a transient :class:`IdpError` for HTTP 429 and 5xx (retry later), else nothing."""
    if response.status == 429 or response.status >= 500:
        raise IdpError(
            f"the IdP is unavailable or throttling ({path}: HTTP {response.status}); "
            "try the same event again later",
            path=path,
            status=response.status,
            retry_after=retry_after(response),
        )


class Fields:
    """Typed access to one JSON object of a reply; a wrong type is an IdpReplyError.

    Missing keys and ``null`` read as the default: the vendors add and drop optional fields
    between versions, so only a value of the wrong type is an error.
    """

    def __init__(self, data: Any, path: str, where: str = "reply") -> None:
        if not isinstance(data, Mapping):
            raise IdpReplyError(f"the IdP's {where} from {path} is not a JSON object", path=path)
        self.data = data
        self.path = path
        self.where = where

    def _wrong(self, key: str) -> IdpReplyError:
        return IdpReplyError(
            f"the IdP's {self.where} from {self.path} has a malformed {key!r}", path=self.path
        )

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value.encode("utf-8")  # a lone surrogate: no store could write it
            except UnicodeEncodeError:
                raise self._wrong(key) from None
            return value
        raise self._wrong(key)

    def token(self, key: str) -> str | None:
        """:meth:`text` for a value the client sends back in a header (a bearer token): it
        must be visible ASCII (RFC 9110 section 5.5; RFC 6750 section 2.1 ``b64token`` is
        narrower still), else IdpReplyError, so no later request can fail on it."""
        value = self.text(key)
        if value is not None and not (value.isascii() and value.isprintable() and value.strip()):
            raise self._wrong(key)
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        raise self._wrong(key)

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                raise self._wrong(key) from None
            if math.isfinite(number):
                return number
        raise self._wrong(key)

    def integer(self, key: str, *, low: int = 0, high: int = 2**31) -> int | None:
        """A whole number within [low, high]; out of range or fractional is an error."""
        value = self.number(key)
        if value is None:
            return None
        if not value.is_integer() or not low <= value <= high:
            raise self._wrong(key)
        return int(value)

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise self._wrong(key)

    def objects(self, key: str) -> tuple[Fields, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._wrong(key)
        return tuple(Fields(item, self.path, f"{self.where}.{key}") for item in value)

    def child(self, key: str) -> Fields | None:
        value = self.data.get(key)
        return None if value is None else Fields(value, self.path, f"{self.where}.{key}")
