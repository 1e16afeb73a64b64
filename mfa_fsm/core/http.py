"""The request and response values of the transport seam, and the one-method transports.

They live apart from :mod:`mfa_fsm.core.transport` (the ``requests`` implementation) and
:mod:`mfa_fsm.core.transport_async` (the ``httpx`` one) so that provider clients, which only
build requests and read responses, import no HTTP library. The reply-reading rules both
implementations share (the size bound, decompression, RFC 6265 cookie deletion) are here too.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs

from mfa_fsm.core.deadline import current_step_deadline
from mfa_fsm.core.errors import IdpReplyError, InvalidInput, TransportError

#: A header name is an RFC 9110 section 5.1 ``token``.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
#: A header value: visible ASCII, spaces and tabs (RFC 9110 section 5.5), no CR or LF.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]{0,1024}")
#: What a request may carry in a header: visible ASCII, spaces and tabs (RFC 9110 section
#: 5.5; ``obs-text`` is not sent). An IdP's token or cookie is echoed into headers, so a
#: value from a reply that is anything else must stop the step, never reach the wire.
_SENDABLE = re.compile(r"[\t\x20-\x7e]*")
#: A cookie value a user agent keeps: RFC 6265 section 4.1.1 ``cookie-octet`` (visible ASCII
#: but for DQUOTE, comma, semicolon and backslash), optionally in double quotes.
_COOKIE_VALUE = re.compile(r'"?[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"?')
#: Headers the clients set themselves: a configuration may not replace them, since they carry
#: the IdP's credentials, the signed request's parts or the body's framing.
RESERVED_HEADERS = frozenset(
    {"authorization", "cookie", "host", "content-type", "content-length", "date", "accept"}
)

HeaderPairs = tuple[tuple[str, str], ...]


@attrs.frozen
class HttpRequest:
    """One HTTP request to an IdP. Headers and body may carry secrets, so neither is in repr.

    ``content``, when set, is the exact body to send (a signed body); ``json`` then
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


class AsyncTransport(Protocol):
    """The asynchronous :class:`Transport`: ``await send_async(request)`` returns the response
    or raises :class:`TransportError`. :class:`~mfa_fsm.core.transport_async.HttpxTransport`
    is the implementation over ``httpx.AsyncClient``; one object may be both transports."""

    async def send_async(self, request: HttpRequest) -> HttpResponse: ...


def decoded_body(
    raw: bytes,
    encoding: str | None,
    *,
    limit: int,
    path: str,
    status: int,
    too_large: Callable[[str], IdpReplyError],
) -> bytes:
    """A reply body as sent (``raw``, at most ``limit`` bytes), inflated if the IdP compressed
    it although ``Accept-Encoding: identity`` was asked for.

    ``encoding`` is the ``Content-Encoding`` header. gzip and deflate are inflated under the
    same ``limit`` (a small compressed body must not expand into a large one, a "zip bomb"):
    past it, ``too_large("decompresses to more")`` is raised. Any other encoding, or a body
    that does not inflate, is an :class:`IdpReplyError`.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise IdpReplyError(
            f"the IdP's reply to {path} is encoded as {encoding!r}, which was not asked "
            "for (the request said Accept-Encoding: identity)",
            path=path,
            status=status,
        )
    import zlib  # noqa: PLC0415 - only for a compressed reply

    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a zlib or a gzip header
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise IdpReplyError(
            f"the IdP's compressed reply to {path} does not decompress",
            path=path,
            status=status,
        ) from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise too_large("decompresses to more")
    return body


def set_cookies(kept: Mapping[str, str], set_cookie: Iterable[str], url: str) -> dict[str, str]:
    """The cookies a reply set, by name: ``kept`` (what a standard ``http.cookiejar`` kept of
    the reply's ``Set-Cookie`` headers for ``url``, RFC 6265 domain matching and expiry
    applied) plus ``""`` for each cookie the reply deletes.

    A jar drops a cookie whose ``Max-Age`` is 0 or less, or whose ``Expires`` has passed,
    which is how a server deletes a cookie (RFC 6265 section 5.3 step 11, and 3.1 "Deleting
    a cookie"); a flow that keeps its own cookies must see that to drop its copy. The
    deletion is read with the standard parser (``parse_ns_headers``), and is honoured only
    when its ``Domain``, if any, domain-matches the request's host (RFC 6265 section 5.1.3),
    as a jar would.
    """
    # Imported here, not at module level: http.cookiejar pulls in http.client, urllib.request
    # and the email package, a quarter of an Entrust-only import, and only the transports
    # (which import it themselves) ever call this.
    import http.cookiejar  # noqa: PLC0415

    # A value outside RFC 6265's cookie-octets (a load balancer's "lb=café") could not be
    # sent back in a Cookie header: drop it, as section 5.2 lets a user agent ignore it.
    result = {name: value for name, value in kept.items() if _COOKIE_VALUE.fullmatch(value)}
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    now = time.time()
    # The stdlib parser http.cookiejar uses for Set-Cookie; typeshed does not list it.
    parse: Any = http.cookiejar.parse_ns_headers  # type: ignore[attr-defined]
    for parsed in parse(list(set_cookie)):
        if not parsed or parsed[0][0] in result:
            continue
        name = parsed[0][0]
        params = {key.lower(): value for key, value in parsed[1:]}
        domain = str(params.get("domain") or "").lower().lstrip(".")
        if domain and not (host == domain or host.endswith("." + domain)):
            continue  # another site's cookie: a jar would refuse it, deletion or not
        max_age = params.get("max-age")
        expires = params.get("expires")
        try:
            deleted = int(str(max_age)) <= 0 if max_age is not None else False
        except ValueError:
            deleted = False
        if max_age is None and isinstance(expires, int | float):
            deleted = expires <= now
        if deleted:
            result[name] = ""
    return result


def prepared(request: HttpRequest, deadline: float) -> tuple[bytes | None, dict[str, str], float]:
    """What both transports send for ``request``: the body, the headers, and the seconds left
    for the exchange (``deadline`` seconds, or less when the step's deadline comes first).

    Raises TransportError, before anything is sent, when the step's time has run out or a
    header value is not visible ASCII (a token or cookie an IdP sent that cannot go back on
    the wire); the message never quotes the value.
    """
    import json  # noqa: PLC0415 - only a transport sends; an import need not load json

    body = None if request.json is None else json.dumps(request.json).encode()
    headers = dict(request.headers)
    if request.content is not None:
        body = request.content
    elif body is not None:
        headers.setdefault("Content-Type", "application/json")
    # Compressed replies could expand far past max_reply_bytes; ask for none.
    headers.setdefault("Accept-Encoding", "identity")
    for name, value in headers.items():
        if not (_SENDABLE.fullmatch(name) and _SENDABLE.fullmatch(value)):
            raise TransportError(
                f"the {name if _HEADER_NAME.fullmatch(name) else 'a'} header for "
                f"{request.path} is not visible ASCII (RFC 9110 section 5.5); the IdP sent a "
                "token or cookie that cannot be sent back: start again",
                path=request.path,
            )
    now = time.monotonic()
    left = deadline
    step_ends = current_step_deadline()
    if step_ends is not None:
        if step_ends <= now:
            raise TransportError(
                f"the step's time ran out before {request.path} was sent; try again",
                path=request.path,
            )
        left = min(left, step_ends - now)
    return body, headers, left


def extra_headers(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> HeaderPairs:
    """The ``extra_headers`` of a provider configuration as ``((name, value), ...)``.

    A configuration's ``extra_headers`` (a mapping, or pairs) adds headers to every request to
    the IdP (a gateway's routing header, an API-management key) without writing a Transport.
    Names must be RFC 9110 tokens, values visible ASCII without CR/LF; the headers the clients
    set themselves (:data:`RESERVED_HEADERS`) are refused, as is a name given twice; a
    provider whose protocol claims more names (headers it signs) refuses them in its own
    configuration's converter. Raises :class:`InvalidInput` (``extra_headers``), naming the
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
        if lowered in RESERVED_HEADERS:
            raise InvalidInput("extra_headers", f"{name} is set by mfa_fsm itself")
        if lowered in seen:
            raise InvalidInput("extra_headers", f"{name} is given twice")
        seen.add(lowered)
        if not (isinstance(text, str) and _HEADER_VALUE.fullmatch(text)):
            raise InvalidInput(
                "extra_headers", f"the value of {name} must be visible ASCII without CR or LF"
            )
    return tuple(pairs)
