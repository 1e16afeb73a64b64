"""The asynchronous transport: :class:`HttpxTransport`, over one ``httpx.AsyncClient``.

It is what ``Flow.send_async`` and ``Provider.start_async`` send their requests through
(install the ``async`` extra: ``pip install mfa_fsm[async]``), and keeps every guarantee of
the blocking :class:`~mfa_fsm.core.transport.RequestsTransport`:

* **a wall-clock deadline per exchange**: the earlier of ``now + deadline`` and the deadline
  of the step in progress (:func:`~mfa_fsm.core.deadline.step_deadline`). The whole exchange
  (connect, TLS handshake, request, headers, body) runs under ``asyncio.timeout``, which
  cancels it wherever it waits, so an IdP that drips a byte a second cannot hold a step; the
  per-phase ``httpx.Timeout`` (connect, read, write) is capped by the time left as well. An
  exchange the step has no time left for is refused before it is sent.
* **a bounded reply**: a ``Content-Length`` above ``max_reply_bytes`` is refused before a
  byte of the body is read, a body without one is cut off once it passes the limit, and a
  body compressed although ``Accept-Encoding: identity`` was asked for is inflated under the
  same bound (:func:`~mfa_fsm.core.http.decoded_body`).
* **no cookie jar shared between flows**: the client's jar refuses every cookie, so one
  user's IdP cookies never ride along another user's request; a flow that needs cookies
  (CyberArk's ``.ASPXAUTH``) keeps them in its snapshot and sends a ``Cookie`` header, and
  ``HttpResponse.cookies`` reports what each reply set or deleted
  (:func:`~mfa_fsm.core.http.set_cookies`, RFC 6265).
* **TLS verified** with the same trust store as ``requests`` (``certifi``), or the CA bundle
  path given as ``verify=``; redirects are never followed (an IdP API that redirects is
  misconfigured, and following would resend credentials to another host).

One transport serves every flow of an application within one event loop (an
``httpx.AsyncClient`` pools connections per loop); close it with ``await transport.aclose()``
or ``async with HttpxTransport() as transport:``.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ssl
from types import TracebackType
from typing import Self

import httpx

from mfa_fsm.core.errors import IdpReplyError, TransportError, UsageError
from mfa_fsm.core.http import HttpRequest, HttpResponse, decoded_body, prepared, set_cookies
from mfa_fsm.core.transport import DEFAULT_DEADLINE, DEFAULT_MAX_REPLY_BYTES, DEFAULT_TIMEOUT

__all__ = ["HttpxTransport"]


class HttpxTransport:
    """An :class:`~mfa_fsm.core.http.AsyncTransport` over ``httpx.AsyncClient``.

    ``timeout`` is (connect, read) seconds per phase, ``deadline`` the wall-clock seconds one
    exchange may take in all, ``max_reply_bytes`` the largest reply body accepted (defaults
    as for :class:`~mfa_fsm.core.transport.RequestsTransport`). ``verify`` is ``True`` (the
    ``certifi`` trust store, as ``requests``), a CA bundle path (a private CA), or an
    ``ssl.SSLContext``; never ``False`` in production. ``client`` may be an
    ``httpx.AsyncClient`` of your own (its cookie jar and ``verify`` are then yours; the
    deadline and the size limit still hold).

    ``await send_async(request)`` raises :class:`TransportError` for a network failure, a
    timeout, or a deadline that passed (before sending, or during the exchange), and
    :class:`IdpReplyError` for a reply body over ``max_reply_bytes``. Nothing is retried.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str | ssl.SSLContext = True,
        deadline: float = DEFAULT_DEADLINE,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if not deadline > 0 or max_reply_bytes < 1:
            raise UsageError("deadline must be positive seconds and max_reply_bytes at least 1")
        if client is None:
            if isinstance(verify, str):
                # httpx deprecates a path for verify=; the same trust, built the way it asks.
                verify = ssl.create_default_context(cafile=verify)
            # Refuse every cookie into the shared jar (see the module docs). The jar itself is
            # passed: httpx copies an httpx.Cookies into a new jar, dropping its policy.
            jar = http.cookiejar.CookieJar(
                policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            )
            client = httpx.AsyncClient(verify=verify, cookies=jar, follow_redirects=False)
        self.client = client
        self.timeout = timeout
        self.deadline = deadline
        self.max_reply_bytes = max_reply_bytes

    async def send_async(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` and read the whole reply, within the deadline (see the class)."""
        body, headers, left = prepared(request, self.deadline)
        connect, read = (min(self.timeout[0], left), min(self.timeout[1], left))
        timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
        try:
            async with asyncio.timeout(left):
                async with self.client.stream(
                    request.method,
                    request.url,
                    content=body,
                    headers=headers,
                    timeout=timeout,
                    follow_redirects=False,
                ) as reply:
                    content = await self._read_body(reply, request.path)
        except TimeoutError as exc:
            raise TransportError(
                f"the IdP did not finish answering {request.path} within {left:.1f} s; "
                "try again shortly",
                path=request.path,
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"the IdP did not answer {request.path} in time; try again shortly",
                path=request.path,
            ) from exc
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise TransportError(
                f"could not reach the IdP for {request.path} ({type(exc).__name__}); "
                "check the base URL and the network, then try again",
                path=request.path,
            ) from exc
        kept = {name: value or "" for name, value in reply.cookies.items()}
        return HttpResponse(
            status=reply.status_code,
            headers=dict(reply.headers),
            body=content,
            cookies=set_cookies(kept, reply.headers.get_list("set-cookie"), str(reply.url)),
        )

    async def _read_body(self, reply: httpx.Response, path: str) -> bytes:
        """The whole body, refused once over the limit (announced, read, or decompressed)."""
        limit = self.max_reply_bytes
        declared = reply.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(reply, path, f"announces {int(declared)} bytes")
        received = bytearray()
        # Raw bytes as they arrive (no decoding); at most one network read (64 KiB) past the
        # limit ever reaches memory.
        async for piece in reply.aiter_raw():
            received += piece
            if len(received) > limit:
                raise self._too_large(reply, path, "is longer")
        return decoded_body(
            bytes(received),
            reply.headers.get("Content-Encoding"),
            limit=limit,
            path=path,
            status=reply.status_code,
            too_large=lambda what: self._too_large(reply, path, what),
        )

    def _too_large(self, reply: httpx.Response, path: str, what: str) -> IdpReplyError:
        return IdpReplyError(
            f"the IdP's reply to {path} {what} than the {self.max_reply_bytes}-byte limit, so "
            "it was refused unread; if the IdP's replies really are this large, raise "
            "HttpxTransport(max_reply_bytes=...)",
            path=path,
            status=reply.status_code,
        )

    async def aclose(self) -> None:
        """Close the pooled connections (within the event loop that used them)."""
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
