"""The one seam through which mfa_fsm talks HTTP.

Provider clients build an :class:`HttpRequest` and the sync driver
(:func:`mfa_fsm.core.exchange.drive`) hands it to a :class:`Transport` (both defined in
:mod:`mfa_fsm.core.http` and re-exported here); nothing else in the package imports
``requests``, and nothing imports this module until a flow needs its default transport, so a
handler that brings its own transport never loads ``requests``. Tests may pass any object
with a ``send`` method (see :class:`mfa_fsm.testing.ScriptedTransport`); production code uses
:class:`RequestsTransport`. The asynchronous twin, over ``httpx``, is
:class:`mfa_fsm.core.transport_async.HttpxTransport`.

Bounded exchanges
-----------------
``requests``' timeouts are per socket operation: the read timeout bounds each ``recv``, not
the reply. An IdP (or anything between) that drips a byte a second never trips it, and would
hold a step, its worker thread and its flow's claim for as long as it likes. So every
exchange of :class:`RequestsTransport` also has a wall-clock **deadline**: the earlier of
``now + deadline`` (per exchange) and the deadline of the step in progress
(:func:`~mfa_fsm.core.deadline.step_deadline`; ``Flow.send`` and the engines open one per
step). A single watchdog
thread per process shuts the exchange's socket down (``shutdown(SHUT_RDWR)``, which wakes a
``recv`` blocked in another thread, unlike ``close``) when that deadline passes, whatever
phase the exchange is in: TLS handshake, request, status line and headers (read by
``http.client`` before ``requests`` returns), or body. The socket is found through urllib3's
public ``ConnectionCls`` hook: :class:`DeadlineAdapter` mounts pools whose connections report
themselves to the exchange in progress. What this cannot reach: the DNS lookup and the TCP
connect (bounded by the connect timeout per address), and SOCKS proxies (their own pools).

A reply body is read with a bound: a ``Content-Length`` above ``max_reply_bytes`` is refused
before a byte of the body is read, and a body without one is cut off once it passes the
limit, so a 200 MB reply never sits in memory. Requests ask for ``Accept-Encoding:
identity``; a reply compressed anyway is inflated under the same bound.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import http.cookiejar
import itertools
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mfa_fsm.core.deadline import (
    DEFAULT_STEP_TIMEOUT,
    step_deadline,
    step_time_left,
)
from mfa_fsm.core.errors import IdpReplyError, TransportError, UsageError
from mfa_fsm.core.http import (
    HttpRequest,
    HttpResponse,
    Transport,
    decoded_body,
    prepared,
    set_cookies,
)

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_STEP_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DeadlineAdapter",
    "HttpRequest",
    "HttpResponse",
    "RequestsTransport",
    "Transport",
    "default_transport",
    "step_deadline",
    "step_time_left",
]

#: (connect, read) seconds. Connect is short: an IdP that does not accept a connection in
#: a few seconds is down; the read budget allows for a slow risk engine.
DEFAULT_TIMEOUT = (3.05, 10.0)

#: Wall-clock seconds one exchange may take in all (connect, send, headers, whole body),
#: whatever the per-socket timeouts: the read timeout plus room for a large reply.
DEFAULT_DEADLINE = 15.0

#: Bytes of reply body accepted. The largest documented replies (an Entrust user with every
#: authenticator, a CyberArk package of many mechanisms) are a few KiB; 1 MiB is generous.
DEFAULT_MAX_REPLY_BYTES = 1024 * 1024


class RequestsTransport:
    """A :class:`Transport` over a ``requests.Session``.

    TLS certificates are verified (pass ``verify=`` a CA bundle path for a private CA, never
    ``False`` in production) and every call has explicit connect and read timeouts. Redirects
    are not followed: an IdP API that redirects is misconfigured, and following would resend
    credentials to another host.

    Each exchange ends within ``deadline`` seconds (and within the step's deadline, see the
    module docs), or raises TransportError; a reply body over ``max_reply_bytes`` raises
    IdpReplyError without being read whole. A ``session`` passed in keeps its own adapters:
    mount a :class:`DeadlineAdapter` on it for the deadline to cut a dripping exchange off
    (otherwise only the per-socket timeouts apply). The size limit holds either way.

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
        deadline: float = DEFAULT_DEADLINE,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if not deadline > 0 or max_reply_bytes < 1:
            raise UsageError("deadline must be positive seconds and max_reply_bytes at least 1")
        if session is None:
            session = requests.Session()
            # Refuse every cookie into the shared jar (see the class docstring).
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            adapter = DeadlineAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self.timeout = timeout
        self.verify = verify
        self.deadline = deadline
        self.max_reply_bytes = max_reply_bytes

    def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` and read the whole reply, within the deadline.

        Raises TransportError for a network failure, a timeout, or a deadline that passed
        (before sending, or during the exchange), and IdpReplyError for a reply body over
        ``max_reply_bytes``. Nothing is retried here.
        """
        body, headers, left = prepared(request, self.deadline)
        ends = time.monotonic() + left
        timeout = (min(self.timeout[0], left), min(self.timeout[1], left))
        watch = _Watch(ends)
        attached = _WATCH.set(watch)
        _WATCHDOG.add(watch)
        try:
            reply = self.session.request(
                request.method,
                request.url,
                data=body,
                headers=headers,
                timeout=timeout,
                verify=self.verify,
                allow_redirects=False,
                stream=True,
            )
            with reply:
                content = self._read_body(reply, request.path)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if watch.fired or time.monotonic() >= ends:
                raise TransportError(
                    f"the IdP did not finish answering {request.path} within "
                    f"{left:.1f} s; try again shortly",
                    path=request.path,
                ) from exc
            if isinstance(exc, requests.Timeout):
                raise TransportError(
                    f"the IdP did not answer {request.path} in time; try again shortly",
                    path=request.path,
                ) from exc
            raise TransportError(
                f"could not reach the IdP for {request.path} ({type(exc).__name__}); "
                "check the base URL and the network, then try again",
                path=request.path,
            ) from exc
        finally:
            watch.done = True
            _WATCH.reset(attached)
        return HttpResponse(
            status=reply.status_code,
            headers=dict(reply.headers),
            body=content,
            cookies=reply_cookies(reply),
        )

    def _read_body(self, reply: requests.Response, path: str) -> bytes:
        """The whole body, refused once over the limit (announced, read, or decompressed)."""
        limit = self.max_reply_bytes
        declared = reply.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(reply, path, f"announces {int(declared)} bytes")
        # Bounded reads of the raw bytes: at most limit + 1 of them ever reach memory. Read
        # until urllib3 returns nothing: that last read is where it reports a body cut short
        # of its Content-Length (IncompleteRead), and it returns the connection to the pool.
        received = bytearray()
        while piece := reply.raw.read(limit + 1 - len(received), decode_content=False):
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

    def _too_large(self, reply: requests.Response, path: str, what: str) -> IdpReplyError:
        return IdpReplyError(
            f"the IdP's reply to {path} {what} than the {self.max_reply_bytes}-byte limit, so "
            "it was refused unread; if the IdP's replies really are this large, raise "
            "RequestsTransport(max_reply_bytes=...)",
            path=path,
            status=reply.status_code,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


# -- the deadline watchdog --------------------------------------------------------------------
#
# Written here rather than taken from a library: what it must do is reach into one exchange's
# socket from another thread, which only code that owns the connection pool can do (no HTTP
# client library for requests offers a total deadline; httpx's and aiohttp's are for their own
# clients). It is a heap of deadlines served by one daemon thread per process.

#: The exchange in progress in this context (thread), for connections to report themselves.
_WATCH: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "mfa_fsm_watch", default=None
)


class _Watch:
    """One exchange's deadline, and the connections it used, to cut when the deadline passes."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self.done = False
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)
            fired = self.fired
        if fired:
            _cut(connection)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            connections = list(self._connections)
        for connection in connections:
            _cut(connection)


def _cut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        # socket.socket's own shutdown, also for an SSLSocket: the TLS layer's would unwrap
        # the connection under the reading thread's feet. The reader then sees end-of-file.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """Fires each registered watch at its deadline; one daemon thread, started on demand."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._changed:
            earliest = not self._heap or watch.deadline < self._heap[0][0]
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            # is_alive() also restarts the thread in a child process after fork().
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mfa_fsm-deadlines", daemon=True
                )
                self._thread.start()
            elif earliest:
                # Only a new earliest deadline changes when the thread must wake; waking it
                # for every exchange would cost a thread switch each.
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    # Finished exchanges are dropped here, lazily, as they reach the top.
                    while self._heap and self._heap[0][2].done:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._changed.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        watch = heapq.heappop(self._heap)[2]
                        break
                    self._changed.wait(wait)
            watch.fire()


_WATCHDOG = _Watchdog()


class _Reporting:
    """Connection mix-in: tell the exchange in progress which connection (socket) it uses,
    both before connecting (so a dripped TLS handshake can be cut) and per request (a pooled
    keep-alive connection does not connect again)."""

    def connect(self) -> None:
        watch = _WATCH.get()
        if watch is not None:
            watch.attach(self)
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _WATCH.get()
        if watch is not None:
            watch.attach(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Reporting, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Reporting, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections let :class:`RequestsTransport` cut an exchange
    off at its deadline. :class:`RequestsTransport` mounts one on the session it creates;
    mount one yourself (``session.mount("https://", DeadlineAdapter())``) on a session you
    pass in. HTTP(S) proxies are covered; SOCKS proxies are not (their pools are their own)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


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


def reply_cookies(reply: requests.Response) -> dict[str, str]:
    """The cookies ``reply`` set, by name, as RFC 6265 processing leaves them; a cookie the
    reply deletes maps to ``""``.

    ``reply.cookies`` is requests' standard jar (``http.cookiejar``), which applies RFC 6265
    to each ``Set-Cookie``: domain matching against the request's host, and expiry. It drops
    a cookie whose ``Max-Age`` is 0 or less, or whose ``Expires`` has passed, which is how a
    server deletes a cookie (RFC 6265 section 5.3 step 11, and 3.1 "Deleting a cookie"); so
    such a cookie is reported here as ``""``, for a flow that keeps its own cookies to drop
    its copy. The deletion is read with the same standard parser (``parse_ns_headers``), and
    is honoured only when its ``Domain``, if any, domain-matches the request's host (RFC 6265
    section 5.1.3), as a jar would.
    """
    kept = {cookie.name: cookie.value or "" for cookie in reply.cookies}
    raw = getattr(reply.raw, "headers", None)
    headers = raw.getlist("Set-Cookie") if raw is not None and hasattr(raw, "getlist") else []
    return set_cookies(kept, headers, reply.url)
