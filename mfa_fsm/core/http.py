"""The request and response values of the transport seam, and the one-method ``Transport``.

They live apart from :mod:`mfa_fsm.core.transport` (the ``requests`` implementation) so that
provider clients, which only build requests and read responses, import no HTTP library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from mfa_fsm.core.errors import InvalidInput

#: A header name is an RFC 9110 section 5.1 ``token``.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
#: A header value: visible ASCII, spaces and tabs (RFC 9110 section 5.5), no CR or LF.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,1024}")
#: Headers the clients set themselves: a configuration may not replace them, since they carry
#: the IdP's credentials, the signed request's parts or the body's framing.
RESERVED_HEADERS = frozenset(
    {"authorization", "cookie", "host", "content-type", "content-length", "date", "accept"}
)

HeaderPairs = tuple[tuple[str, str], ...]


@attrs.frozen
class HttpRequest:
    """One HTTP request to an IdP. Headers and body may carry secrets, so neither is in repr.

    ``content``, when set, is the exact body to send (a signed body, as Duo's); ``json`` then
    holds the same data for inspection, and the ``Content-Type`` header says what it is.
    """

    method: str
    url: str
    path: str
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    json: Any = attrs.field(default=None, repr=False)
    content: bytes | None = attrs.field(default=None, repr=False)


@attrs.frozen
class HttpResponse:
    """One HTTP response. The body and cookies may carry secrets, so neither is in repr."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    body: bytes = attrs.field(default=b"", repr=False)
    cookies: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    def header(self, name: str) -> str | None:
        """The value of header ``name``, looked up case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class Transport(Protocol):
    """Sends one request and returns the response, or raises :class:`TransportError`."""

    def send(self, request: HttpRequest) -> HttpResponse: ...


def extra_headers(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> HeaderPairs:
    """The ``extra_headers`` of a provider configuration as ``((name, value), ...)``.

    A configuration's ``extra_headers`` (a mapping, or pairs) adds headers to every request to
    the IdP (a gateway's routing header, an API-management key) without writing a Transport.
    Names must be RFC 9110 tokens, values visible ASCII without CR/LF; the headers the clients
    set themselves (:data:`RESERVED_HEADERS`, and Duo's signed ``X-Duo-*``) are refused, as
    is a name given twice. Raises :class:`InvalidInput` (``extra_headers``), naming the
    header but never its value (it may be a key).
    """
    if value is None:
        return ()
    pairs = list(value.items() if isinstance(value, Mapping) else value)
    seen: set[str] = set()
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidInput("extra_headers", "must map header names to values")
        name, text = pair
        if not (isinstance(name, str) and _HEADER_NAME.fullmatch(name)):
            raise InvalidInput("extra_headers", "a header name must be an RFC 9110 token")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith("x-duo-"):
            raise InvalidInput("extra_headers", f"{name} is set by mfa_fsm itself")
        if lowered in seen:
            raise InvalidInput("extra_headers", f"{name} is given twice")
        seen.add(lowered)
        if not (isinstance(text, str) and _HEADER_VALUE.fullmatch(text)):
            raise InvalidInput(
                "extra_headers", f"the value of {name} must be visible ASCII without CR or LF"
            )
    return tuple(pairs)
