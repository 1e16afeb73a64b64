"""The one seam through which mfa_fsm talks HTTP.

Provider clients build an :class:`HttpRequest` and hand it to a :class:`Transport` (both
defined in :mod:`mfa_fsm.core.http` and re-exported here); nothing else in the package
imports ``requests``, and nothing imports this module until a flow needs its default
transport, so a handler that brings its own transport never loads ``requests``. Tests may
pass any object with a ``send`` method (see :class:`mfa_fsm.testing.ScriptedTransport`);
production code uses :class:`RequestsTransport`.
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
from collections import OrderedDict
from collections.abc import Hashable

import requests

from mfa_fsm.core.errors import TransportError
from mfa_fsm.core.http import HttpRequest, HttpResponse, Transport

__all__ = [
    "DEFAULT_TIMEOUT",
    "HttpRequest",
    "HttpResponse",
    "RequestsTransport",
    "Transport",
    "default_transport",
]

#: (connect, read) seconds. Connect is short: an IdP that does not accept a connection in
#: a few seconds is down; the read budget allows for a slow risk engine.
DEFAULT_TIMEOUT = (3.05, 10.0)


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
        if body is not None:
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


#: How many configurations keep a shared default transport; the least recently used beyond
#: this is dropped (its connections close when its last flow is done with it).
DEFAULT_TRANSPORTS = 32

_defaults: OrderedDict[Hashable, RequestsTransport] = OrderedDict()
_defaults_lock = threading.Lock()


def default_transport(config: Hashable) -> RequestsTransport:
    """The :class:`RequestsTransport` shared by every flow of ``config`` given no transport.

    A flow restored without ``transport=`` on every web request would otherwise open a new
    TCP connection (and, against a real IdP, a new TLS handshake) per step; sharing one
    session per configuration keeps its connections alive from one step to the next, so a
    whole login travels over one connection. Safe across threads: the session keeps no
    cookies (see :class:`RequestsTransport`) and urllib3's connection pool hands each thread
    a connection of its own. Equal configurations share one transport; an unhashable one
    gets a transport of its own each time.
    """
    try:
        hash(config)
    except TypeError:
        return RequestsTransport()
    with _defaults_lock:
        transport = _defaults.get(config)
        if transport is None:
            transport = _defaults[config] = RequestsTransport()
            if len(_defaults) > DEFAULT_TRANSPORTS:
                _defaults.popitem(last=False)
        else:
            _defaults.move_to_end(config)
        return transport
