"""The one seam through which mfa_fsm talks HTTP.

Provider clients build an :class:`HttpRequest` and hand it to a :class:`Transport`; nothing
else in the package imports ``requests``. Tests may pass any object with a ``send`` method
(see :class:`mfa_fsm.testing.ScriptedTransport`); production code uses
:class:`RequestsTransport`.
"""

from __future__ import annotations

import http.cookiejar
import json
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
import requests

from mfa_fsm.core.errors import TransportError

#: (connect, read) seconds. Connect is short: an IdP that does not accept a connection in
#: a few seconds is down; the read budget allows for a slow risk engine.
DEFAULT_TIMEOUT = (3.05, 10.0)


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


class RequestsTransport:
    """A :class:`Transport` over a ``requests.Session``.

    TLS certificates are verified (pass ``verify=`` a CA bundle path for a private CA, never
    ``False`` in production) and every call has explicit connect and read timeouts. Redirects
    are not followed: an IdP API that redirects is misconfigured, and following would resend
    credentials to another host.

    The session it creates keeps no cookies: one transport serves every flow of an
    application, so a shared cookie jar would carry one user's IdP cookies into another
    user's requests. A flow that needs cookies (CyberArk's ``.ASPXAUTH``) keeps them in its
    own snapshot and sends them as a ``Cookie`` header; ``HttpResponse.cookies`` still
    reports what each reply set.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str = True,
    ) -> None:
        if session is None:
            session = requests.Session()
            # Refuse every cookie into the shared jar (see the class docstring).
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.session = session
        self.timeout = timeout
        self.verify = verify

    def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; network failures become :class:`TransportError`."""
        body = None if request.json is None else json.dumps(request.json).encode()
        headers = dict(request.headers)
        if request.content is not None:
            body = request.content
        elif body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            reply = self.session.request(
                request.method,
                request.url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=False,
            )
            content = reply.content
        except requests.Timeout as exc:
            raise TransportError(
                f"the IdP did not answer {request.path} in time; try again shortly",
                path=request.path,
            ) from exc
        except requests.RequestException as exc:
            raise TransportError(
                f"could not reach the IdP for {request.path} ({type(exc).__name__}); "
                "check the base URL and the network, then try again",
                path=request.path,
            ) from exc
        return HttpResponse(
            status=reply.status_code,
            headers=dict(reply.headers),
            body=content,
            cookies={cookie.name: cookie.value or "" for cookie in reply.cookies},
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
