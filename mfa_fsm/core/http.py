"""The request and response values of the transport seam, and the one-method ``Transport``.

They live apart from :mod:`mfa_fsm.core.transport` (the ``requests`` implementation) so that
provider clients, which only build requests and read responses, import no HTTP library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs


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
