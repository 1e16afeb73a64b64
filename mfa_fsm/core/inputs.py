"""Checks on what a web request may carry into an event, before anything reaches an IdP.

Each check raises :class:`InvalidInput` naming the field and the rule, never echoing the
value (it may be a password).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from mfa_fsm.core.errors import InvalidInput

#: Long enough for any password manager's output and for KBA answers; short enough that an
#: oversize body is refused here rather than by the IdP.
MAX_SECRET = 256
MAX_CODE = 64
MAX_ID = 255

_CODE = re.compile(r"[A-Za-z0-9-]+")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]*")


def _present(field: str, value: Any) -> None:
    """A field left out (``None``) is "required", not "of the wrong type"."""
    if value is None:
        raise InvalidInput(field, "is required")


def secret_text(field: str, value: Any, *, max_length: int = MAX_SECRET) -> str:
    """A password or answer: a non-empty string without control characters."""
    _present(field, value)
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise InvalidInput(field, "must not contain control characters or broken Unicode")
    return value


def code(field: str, value: Any, *, max_length: int = MAX_CODE) -> str:
    """A one-time code, grid response or access code: ASCII letters, digits and ``-``.

    Spaces are dropped, since people type "1234 5678" as they read it.
    """
    text = secret_text(field, value, max_length=max_length).replace(" ", "")
    if not _CODE.fullmatch(text):
        raise InvalidInput(field, "must contain only letters, digits and '-'")
    return text


def identifier(field: str, value: Any, *, max_length: int = MAX_ID) -> str:
    """A user id, flow id or similar: ASCII letters, digits and ``._@+-``."""
    _present(field, value)
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty string")
    if len(value) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    if not _ID.fullmatch(value):
        raise InvalidInput(field, "may contain only ASCII letters, digits and . _ @ + -")
    return value


def numeric_code(field: str, value: Any, *, lengths: tuple[int, int], source: str) -> str:
    """A one-time code that is only digits, ``lengths[0]`` to ``lengths[1]`` of them.

    Checked before any IdP call, so a mistyped code (a letter, a digit too few) costs the
    user no attempt at the IdP. Spaces are dropped as :func:`code` does; ``source`` names
    the document the lengths come from (for the message: "6 to 8 digits (RFC 4226)").
    """
    text = secret_text(field, value, max_length=MAX_CODE).replace(" ", "")
    low, high = lengths
    if not (text.isdigit() and text.isascii()) or not low <= len(text) <= high:
        count = f"{low}" if low == high else f"{low} to {high}"
        raise InvalidInput(
            field,
            f"must be {count} digits ({source}); check the code and type it again "
            "(nothing was sent to the identity provider)",
        )
    return text
