"""Shared base for the loopback identity-provider emulators.

No real identity provider can be reached from tests, so each provider gets an
emulator: a real HTTP server on 127.0.0.1 that speaks the vendor's wire format.
Talking real HTTP (instead of mocking ``requests``) means the client's
timeouts, keep-alive, error mapping and JSON handling are exercised for real.

This module holds everything that is not provider-specific:

* :class:`EmulatorServer` runs a stdlib ``ThreadingHTTPServer`` in a daemon
  thread and hands each request to :meth:`EmulatorServer.handle`, which
  subclasses implement.
* :class:`FaultPlan` queues transport-level faults (5xx, 429, slow answers,
  dropped or reset connections, a reply lost after the call was applied ("lost_reply"),
  junk bodies) that replace the real answer for
  the next matching request(s).
* A call log (:attr:`EmulatorServer.calls`) so tests can assert what the client
  actually sent.
* A control API under ``/_emulator/`` so a test, or a human in another
  terminal with ``curl``, can inject faults and read the call log::

      POST   /_emulator/faults   {"kind": "rate_limit", "retry_after": 2}
      DELETE /_emulator/faults
      GET    /_emulator/faults
      GET    /_emulator/calls
      DELETE /_emulator/calls
      GET    /_emulator/connections   {"opened": 3}: TCP connections accepted so far

Control requests are neither logged nor subject to faults: they are the test
harness talking, not the client under test.

TLS (``tls=True``): the server makes a throwaway certificate authority at start
(with ``trustme``, which the ``testing`` extra installs), serves HTTPS with a
certificate it issued for the host, and writes the authority's certificate to
:attr:`EmulatorServer.ca_file` so a client can trust it (``requests.get(url,
verify=emu.ca_file)``). Clients that insist on ``https://`` (the vendors' own
SDKs: the CyberArk spec's only server is ``https://{tenant_url}``) can then talk
to an emulator with verification on. Plain HTTP stays the default.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

import attrs

from mfa_fsm.testing.leaks import add_secret, collect_secrets

__all__ = [
    "BASE_FAULT_KINDS",
    "BadRequest",
    "EmulatorReply",
    "EmulatorRequest",
    "EmulatorServer",
    "Fault",
    "FaultPlan",
    "LoggedRequest",
]

#: Fault kinds every emulator understands. Providers may add their own (for
#: example ``"stale_success"``) through :attr:`EmulatorServer.fault_kinds`.
BASE_FAULT_KINDS: frozenset[str] = frozenset(
    {
        "status",
        "rate_limit",
        "slow",
        "drop",
        "lost_reply",
        "reset",
        "empty",
        "html",
        "wrong_shape",
        "unknown_enum",
        "drip",
        "oversized",
    }
)

CONTROL_PREFIX = "/_emulator/"

# Value substituted by the "unknown_enum" fault: something no client can know.
UNKNOWN_ENUM_VALUE = "EMULATOR_UNKNOWN_VALUE"


class BadRequest(Exception):
    """Raised by handlers (and :meth:`EmulatorRequest.json`) for malformed requests.

    The base server turns it into an HTTP 400 through
    :meth:`EmulatorServer.bad_request_reply`, which providers override to use
    their own error body format.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class EmulatorRequest:
    """One parsed HTTP request, as handed to :meth:`EmulatorServer.handle`."""

    method: str
    #: Path without the query string, e.g. ``/api/web/v2/authentication/users``.
    path: str
    #: Query parameters; the last value wins when a name repeats.
    query: Mapping[str, str]
    #: Headers with lower-cased names; prefer :meth:`header` for lookups.
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the header ``name`` (case-insensitive) or ``default``."""
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """Return the parsed JSON body.

        Raises :class:`BadRequest` when the body is empty or not valid JSON,
        which the server answers with a 400 like a real API would.
        """
        if not self.body.strip():
            raise BadRequest("Request body is required")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"Malformed JSON body: {exc}") from None

    def json_or_none(self) -> Any:
        """Return the parsed JSON body, or ``None`` when absent or malformed."""
        try:
            return self.json()
        except BadRequest:
            return None


@attrs.frozen
class EmulatorReply:
    """One HTTP answer. ``Content-Length`` is always added by the server."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: ``Set-Cookie`` values sent as one header line each, after any in :attr:`headers`
    #: (a mapping holds one ``Set-Cookie``; real services often send several).
    set_cookies: tuple[str, ...] = ()

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> EmulatorReply:
        """Build a JSON answer (``application/json``)."""
        merged = {"Content-Type": "application/json", **(headers or {})}
        return cls(status, json.dumps(obj).encode(), merged)

    @classmethod
    def html(
        cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> EmulatorReply:
        """Build an HTML answer (``text/html``), e.g. a proxy or login page."""
        merged = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
        return cls(status, text.encode(), merged)

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> EmulatorReply:
        """Build a plain-text answer (``text/plain``)."""
        merged = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        return cls(status, text.encode(), merged)

    def parsed_json(self) -> Any:
        """Return the body parsed as JSON, or ``None`` if it is not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None


def __getattr__(name: str) -> Any:
    """``CallRecord``: :class:`LoggedRequest`'s name until this release, deprecated. The
    flow's own record of its IdP calls (``mfa_fsm.core.flow.CallRecord``) keeps the name."""
    if name == "CallRecord":
        warnings.warn(
            "mfa_fsm.testing._server.CallRecord is now LoggedRequest; the old name will be "
            "removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return LoggedRequest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@attrs.frozen
class LoggedRequest:
    """One logged request (see :attr:`EmulatorServer.calls`)."""

    time: float
    method: str
    path: str
    #: HTTP status sent, or ``None`` when the connection was dropped unanswered.
    status: int | None
    #: Parsed JSON request body, or ``None`` when absent or not JSON.
    body: Any
    query: Mapping[str, str] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: Fault kind applied to this request, if any.
    fault: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable view (used by ``GET /_emulator/calls``)."""
        return {
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "body": self.body,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "fault": self.fault,
        }


@attrs.define
class Fault:
    """One pending fault; see :meth:`FaultPlan.inject` for the fields."""

    kind: str
    path: str | None = None
    #: Requests still to fault; ``None`` means until :meth:`FaultPlan.clear`.
    times: int | None = 1
    status: int | None = None
    retry_after: int | None = None
    delay: float | None = None
    #: Custom JSON body for ``wrong_shape`` (default ``{"unexpected": true}``).
    body: Any = None
    #: Bytes of body an ``oversized`` reply sends (default 200 MB).
    size: int | None = None
    #: Whether an ``oversized`` reply announces its size in ``Content-Length``.
    announce: bool = True

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path``."""
        return self.path is None or self.path in path

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable view (used by ``GET /_emulator/faults``)."""
        return attrs.asdict(self)


class FaultPlan:
    """Queue of faults to apply to upcoming requests; thread-safe.

    Faults are matched in injection order; the first pending fault whose
    ``path`` matches is used and its ``times`` counter decremented.
    """

    def __init__(self, kinds: Iterable[str] = BASE_FAULT_KINDS) -> None:
        self.kinds = frozenset(kinds)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(
        self,
        kind: str,
        *,
        path: str | None = None,
        times: int | None = 1,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float | None = None,
        body: Any = None,
        size: int | None = None,
        announce: bool = True,
    ) -> Fault:
        """Queue a fault.

        Args:
            kind: one of :attr:`kinds` (``status``, ``rate_limit``, ``slow``,
                ``drop``, ``reset``, ``empty``, ``html``, ``wrong_shape``,
                ``unknown_enum`` plus any provider-specific kinds).
            path: substring of the request path to match; ``None`` = any path.
            times: how many matching requests get the fault; ``None`` = all of
                them until :meth:`clear`.
            status: HTTP status for ``status`` faults (default 503).
            retry_after: seconds for the ``Retry-After`` header of
                ``rate_limit`` faults; ``None`` sends no header.
            delay: seconds to wait before answering, for ``slow`` faults; for
                ``drip`` faults, seconds between two bytes of the reply (default 1),
                which is sent whole, status line and headers included, one byte at a time.
            body: JSON body for ``wrong_shape`` faults.
            size: body bytes of an ``oversized`` reply (default 200 MB), a JSON object
                padded to that size, generated as it is sent.
            announce: whether the ``oversized`` reply says its size in ``Content-Length``
                (otherwise it ends by closing the connection).
        """
        if kind not in self.kinds:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(self.kinds)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if kind == "status" and status is not None and not 500 <= status <= 599:
            raise ValueError("status faults need a 5xx status")
        if kind == "slow" and (delay is None or delay < 0):
            raise ValueError("slow faults need a non-negative delay")
        if kind == "drip" and delay is not None and delay <= 0:
            raise ValueError("drip faults need a positive delay between bytes")
        if size is not None and size < 16:
            raise ValueError("oversized faults need a size of at least 16 bytes")
        fault = Fault(kind, path, times, status, retry_after, delay, body, size, announce)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """Return a snapshot of the pending faults."""
        with self._lock:
            return [attrs.evolve(f) for f in self._faults]

    def take(self, path: str) -> Fault | None:
        """Consume one use of the first fault matching ``path``, if any."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(path):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return attrs.evolve(fault)
        return None


class _HTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that tracks its connections so stop() can end them."""

    daemon_threads = True
    # We join handler threads ourselves, with a timeout, after closing their
    # sockets; the stdlib join would wait forever on idle keep-alive clients.
    block_on_close = False
    # The listen backlog: socketserver's default of 5 drops the connections an async client
    # opens at once beyond it (their SYNs are retried after 1 s, then 3 s), which measured the
    # emulator, not the client, under load (bench/load.py). An IdP's front end takes far more.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], emulator: EmulatorServer) -> None:
        self.emulator = emulator
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}
        #: TCP connections accepted since start (control-route connections included)
        self.connections_opened = 0
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        context = self.emulator._tls_context
        if context is not None:
            conn = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-answer on purpose (timeouts, drop tests); the
        # default implementation would print a traceback to stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    server: _HTTPServer
    # Idle keep-alive connections are closed after this many seconds so a
    # forgotten client does not pin a thread.
    timeout = 30

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            # Handshake here, in the handler's thread and under its timeout, not in the
            # accepting thread, where one stalled client would hold up every other.
            self.connection.do_handshake()
        # Headers and body go out in two writes; without this, Nagle's
        # algorithm plus delayed ACKs adds ~40 ms to every keep-alive reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            if self.server.stopping.is_set():
                self.close_connection = True
            self.server.connections[self.connection] = threading.current_thread()
            self.server.connections_opened += 1

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.pop(self.connection, None)
        with contextlib.suppress(OSError):  # the client may already be gone
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests must stay silent

    def _serve(self) -> None:
        if self.server.stopping.is_set():
            self.close_connection = True
            return
        self.server.emulator._serve_http(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


def _note_secrets(request: EmulatorRequest, reply: EmulatorReply | None, sink: set[str]) -> None:
    """Add every secret the exchange carried (either way) to ``sink``."""
    authorization = request.header("authorization")
    if authorization:
        add_secret(sink, authorization)
        add_secret(sink, authorization.removeprefix("Bearer ").strip())
    collect_secrets(request.json_or_none(), sink)
    if reply is not None:
        collect_secrets(reply.parsed_json(), sink)
        cookies = [v for k, v in reply.headers.items() if k.lower() == "set-cookie"]
        for value in [*cookies, *reply.set_cookies]:
            add_secret(sink, value.split(";", 1)[0].partition("=")[2])


def _write_reply(handler: _Handler, reply: EmulatorReply) -> None:
    handler.send_response(reply.status)
    for name, value in reply.headers.items():
        if name.lower() != "content-length":
            handler.send_header(name, value)
    for cookie in reply.set_cookies:
        handler.send_header("Set-Cookie", cookie)
    handler.send_header("Content-Length", str(len(reply.body)))
    handler.end_headers()
    handler.wfile.write(reply.body)
    handler.wfile.flush()


def _write_truncated(handler: _Handler, reply: EmulatorReply) -> None:
    """Promise the whole body, send half of it, then hang up: a reset mid-body."""
    handler.send_response(reply.status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(reply.body)))
    handler.end_headers()
    handler.wfile.write(reply.body[: len(reply.body) // 2])
    handler.wfile.flush()
    handler.close_connection = True


def _write_dripping(handler: _Handler, reply: EmulatorReply, every: float) -> None:
    """The whole reply, status line and headers included, one byte per ``every`` seconds."""
    head = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
    head += [f"{k}: {v}" for k, v in reply.headers.items() if k.lower() != "content-length"]
    head += [f"Content-Length: {len(reply.body)}", "Connection: close", "", ""]
    data = "\r\n".join(head).encode("latin-1") + reply.body
    handler.close_connection = True
    for index in range(len(data)):
        handler.wfile.write(data[index : index + 1])
        if handler.server.stopping.wait(every):
            return


def _write_oversized(handler: _Handler, size: int, announce: bool) -> int:
    """A 200 reply whose JSON body is ``size`` bytes, generated as it goes; returns how many
    body bytes went out before the client hung up (or all of them)."""
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if announce:
        handler.send_header("Content-Length", str(size))
    else:
        handler.send_header("Connection", "close")
    handler.end_headers()
    sent = 0
    padding = b"x" * 65536
    try:
        handler.wfile.write(b'{"padding":"')
        sent = 12
        while sent < size - 2 and not handler.server.stopping.is_set():
            piece = padding[: size - 2 - sent]
            handler.wfile.write(piece)
            sent += len(piece)
        handler.wfile.write(b'"}')
        sent += 2
    except OSError:
        pass  # the client refused the rest: that is the point
    return sent


def _read_request(handler: _Handler) -> EmulatorRequest:
    url = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length > 0 else b""
    return EmulatorRequest(
        method=handler.command,
        path=url.path,
        query=dict(parse_qsl(url.query, keep_blank_values=True)),
        headers={k.lower(): v for k, v in handler.headers.items()},
        body=body,
    )


class EmulatorServer(ABC):
    """Abstract loopback HTTP server for one identity provider.

    Subclasses implement :meth:`handle`; they may override
    :meth:`handle_control` (extra ``/_emulator/`` routes),
    :meth:`bad_request_reply` / :meth:`not_found_reply` (provider error
    format), :meth:`mangle_enums` (the ``unknown_enum`` fault) and
    :meth:`apply_provider_fault` (provider-specific fault kinds).

    :meth:`handle` and :meth:`handle_control` run with :attr:`lock` held, so
    emulator state needs no further locking there; public helpers that tests
    call from other threads must take :attr:`lock` themselves.

    Use as a context manager::

        with SomeEmulator() as emu:
            requests.get(emu.base_url + "/...")
    """

    #: Fault kinds accepted by :attr:`faults`; providers extend this set.
    fault_kinds: ClassVar[frozenset[str]] = BASE_FAULT_KINDS
    #: When a set (a test suite's leak guard sets one), every secret that crosses the wire
    #: of any emulator (tokens, codes, passwords, session ids, cookies) is added to it.
    secret_sink: ClassVar[set[str] | None] = None
    #: When set (a test suite's schema check sets one), called with every reply any
    #: emulator is about to send, the request it answers and the fault kind that shaped
    #: it (``None`` for an ordinary reply); it records what it finds and must not raise.
    reply_check: ClassVar[
        Callable[[EmulatorServer, EmulatorRequest, EmulatorReply, str | None], None] | None
    ] = None

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False) -> None:
        self.host = host
        self.port = port
        #: Serve HTTPS with a certificate from a throwaway authority (see :attr:`ca_file`).
        self.tls = tls
        self._tls_context: ssl.SSLContext | None = None
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        #: Re-entrant so helpers may call each other while holding it.
        self.lock = threading.RLock()
        self.faults = FaultPlan(self.fault_kinds)
        self.calls: list[LoggedRequest] = []
        #: Body bytes each ``oversized`` reply sent before its client hung up, in order.
        self.oversized_sent: list[int] = []
        #: Wall clock used for call records; subclasses use it for expiry too,
        #: so tests may replace it instead of sleeping.
        self.clock: Callable[[], float] = time.time
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        """Bind the socket and start serving in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("emulator already started")
        if self.tls and self._tls_context is None:
            self._make_tls()
        httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # also the delay of stop()
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join all threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()  # returns once serve_forever has exited
        with httpd.conn_lock:
            httpd.stopping.set()  # also wakes "slow" faults that are sleeping
            conns = dict(httpd.connections)
        for sock in conns:
            # Unblocks handler threads waiting on idle keep-alive reads.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for worker in conns.values():
            worker.join(timeout=5)
        httpd.server_close()
        thread.join(timeout=5)
        self._httpd = self._thread = None
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = self._tls_context = None

    def _make_tls(self) -> None:
        try:
            import trustme  # noqa: PLC0415 - only TLS needs it; it is an optional extra
        except ImportError:  # pragma: no cover - the dev and testing extras install it
            raise RuntimeError(
                "TLS emulators need trustme: pip install 'mfa_fsm[testing]'"
            ) from None
        authority = trustme.CA(organization_name="mfa_fsm emulator")
        names = {self.host, "localhost", "127.0.0.1"}
        certificate = authority.issue_cert(*sorted(names))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        certificate.configure_cert(context)
        folder = tempfile.TemporaryDirectory(prefix="mfa-fsm-emulator-ca-")
        authority.cert_pem.write_to_path(f"{folder.name}/ca.pem")
        self._tls_dir, self._tls_context = folder, context

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def scheme(self) -> str:
        """``https`` when the emulator serves TLS, else ``http``."""
        return "https" if self.tls else "http"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server (``https://`` with TLS)."""
        if self._httpd is None:
            raise RuntimeError("emulator not started")
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> str:
        """Path of the PEM certificate of the authority that signed the TLS certificate.

        Give it to a client to trust the emulator (``requests``' ``verify=``,
        ``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``). It exists from :meth:`start` to
        :meth:`stop`. Raises :class:`RuntimeError` when TLS is off or the emulator is
        not running.
        """
        if self._tls_dir is None:
            raise RuntimeError("the emulator is not running with tls=True")
        return f"{self._tls_dir.name}/ca.pem"

    @property
    def connections_opened(self) -> int:
        """How many TCP connections clients have opened to this server since it started,
        control-route connections included (also ``GET /_emulator/connections``)."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("emulator not started")
        with httpd.conn_lock:
            return httpd.connections_opened

    # -- call log ----------------------------------------------------------

    def calls_to(self, path_fragment: str) -> list[LoggedRequest]:
        """Return logged calls whose path contains ``path_fragment``."""
        with self.lock:
            return [c for c in self.calls if path_fragment in c.path]

    def clear_calls(self) -> None:
        """Forget every logged call."""
        with self.lock:
            self.calls.clear()

    # -- hooks for subclasses ---------------------------------------------

    @abstractmethod
    def handle(self, request: EmulatorRequest) -> EmulatorReply:
        """Answer one (non-control) request. Runs with :attr:`lock` held."""

    def handle_control(self, request: EmulatorRequest, route: str) -> EmulatorReply | None:
        """Answer a provider-specific control route, or return ``None`` for 404.

        ``route`` is the path after ``/_emulator/`` (e.g. ``push/jsmith/approve``).
        """
        return None

    def bad_request_reply(self, message: str) -> EmulatorReply:
        """Answer for :class:`BadRequest`; providers override for their format."""
        return EmulatorReply.json({"error": "bad_request", "message": message}, status=400)

    def not_found_reply(self, request: EmulatorRequest) -> EmulatorReply:
        """Answer for unknown paths; providers override for their format."""
        return EmulatorReply.json({"error": "not_found", "path": request.path}, status=404)

    def mangle_enums(self, obj: Any) -> Any:
        """Return ``obj`` with enum-like values replaced (``unknown_enum`` fault).

        The default replaces a top-level ``status`` string; providers override
        to cover their own enum fields.
        """
        if isinstance(obj, dict) and isinstance(obj.get("status"), str):
            return {**obj, "status": UNKNOWN_ENUM_VALUE}
        return obj

    def apply_provider_fault(self, fault: Fault, request: EmulatorRequest) -> EmulatorReply:
        """Answer a request hit by a provider-specific fault kind."""
        raise NotImplementedError(f"fault kind {fault.kind!r} not implemented")

    # -- dispatch ----------------------------------------------------------

    def _serve_http(self, handler: _Handler) -> None:
        """Read, dispatch, log and answer one request (called per request)."""
        request = _read_request(handler)
        if request.path.startswith(CONTROL_PREFIX):
            _write_reply(handler, self._control(request))
            return
        fault = self.faults.take(request.path)
        kind = fault.kind if fault is not None else None
        delay = fault.delay if fault is not None and kind == "slow" else None
        # Event wait, not sleep, so stop() is never held up by a slow fault.
        if delay is not None and handler.server.stopping.wait(delay):
            handler.close_connection = True
            return
        reply = self._answer_for(request, fault)
        # Log before answering, so a test that has its answer also sees the record.
        self._log(request, reply.status if reply is not None else None, kind)
        if EmulatorServer.secret_sink is not None:
            _note_secrets(request, reply, EmulatorServer.secret_sink)
        if EmulatorServer.reply_check is not None and reply is not None and kind != "reset":
            EmulatorServer.reply_check(self, request, reply, kind)
        if reply is None:
            # "drop" / "lost_reply": close without a byte of reply
            handler.close_connection = True
            return
        try:
            if kind == "reset":
                _write_truncated(handler, reply)
            elif kind == "drip" and fault is not None:
                _write_dripping(handler, reply, fault.delay or 1.0)
            elif kind == "oversized" and fault is not None:
                sent = _write_oversized(handler, fault.size or 200_000_000, fault.announce)
                with self.lock:
                    self.oversized_sent.append(sent)
            else:
                _write_reply(handler, reply)
        except OSError:
            # The client gave up (e.g. its timeout fired during "slow").
            handler.close_connection = True

    def _answer_for(self, request: EmulatorRequest, fault: Fault | None) -> EmulatorReply | None:
        """The reply to write, or ``None`` to close the connection without one."""
        kind = fault.kind if fault is not None else None
        if kind == "reset":
            # Only the first half of this is sent (see _write_truncated).
            return EmulatorReply.json({"result": "cut short by the emulator's reset fault"})
        if kind == "lost_reply":
            # The IdP applies the call (tokens rotate, a code is spent), then the reply is
            # lost on the way back: the connection closes without a byte of it.
            self._dispatch(request)
            return None
        if kind == "drop":
            return None
        return self._reply_for(request, fault)

    def _log(self, request: EmulatorRequest, status: int | None, fault: str | None) -> None:
        record = LoggedRequest(
            time=self.clock(),
            method=request.method,
            path=request.path,
            status=status,
            body=request.json_or_none(),
            query=request.query,
            headers=request.headers,
            fault=fault,
        )
        with self.lock:
            self.calls.append(record)

    def _reply_for(self, request: EmulatorRequest, fault: Fault | None) -> EmulatorReply:
        kind = fault.kind if fault is not None else None
        if fault is None or kind in ("slow", "unknown_enum", "drip"):
            reply = self._dispatch(request)
            if kind == "unknown_enum":
                parsed = reply.parsed_json()
                if parsed is not None:
                    reply = attrs.evolve(reply, body=json.dumps(self.mangle_enums(parsed)).encode())
            return reply
        if kind == "status":
            status = fault.status or 503
            return EmulatorReply.text(f"{status} Service error (injected)\n", status=status)
        if kind == "rate_limit":
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return EmulatorReply.text("429 Too Many Requests\n", status=429, headers=headers)
        if kind == "empty":
            return EmulatorReply(200, b"", {"Content-Type": "application/json"})
        if kind == "oversized":  # the body itself is generated as it is written
            return EmulatorReply(200, b"", {"Content-Type": "application/json"})
        if kind == "html":
            return EmulatorReply.html(
                "<!DOCTYPE html><html><head><title>Maintenance</title></head>"
                "<body><h1>We'll be back soon</h1></body></html>"
            )
        if kind == "wrong_shape":
            body = {"unexpected": True} if fault.body is None else fault.body
            return EmulatorReply.json(body)
        with self.lock:
            return self.apply_provider_fault(fault, request)

    def _dispatch(self, request: EmulatorRequest) -> EmulatorReply:
        try:
            with self.lock:
                return self.handle(request)
        except BadRequest as exc:
            return self.bad_request_reply(exc.message)

    def _control(self, request: EmulatorRequest) -> EmulatorReply:
        route = request.path[len(CONTROL_PREFIX) :].strip("/")
        method = request.method
        try:
            if route == "faults" and method == "POST":
                spec = request.json()
                if not isinstance(spec, dict) or "kind" not in spec:
                    raise BadRequest('expected a JSON object with at least "kind"')
                try:
                    fault = self.faults.inject(**spec)
                except (TypeError, ValueError) as exc:
                    raise BadRequest(str(exc)) from None
                return EmulatorReply.json(fault.to_dict(), status=201)
            if route == "faults" and method == "DELETE":
                self.faults.clear()
                return EmulatorReply(204)
            if route == "faults" and method == "GET":
                return EmulatorReply.json([f.to_dict() for f in self.faults.pending()])
            if route == "calls" and method == "GET":
                with self.lock:
                    return EmulatorReply.json([c.to_dict() for c in self.calls])
            if route == "connections" and method == "GET":
                return EmulatorReply.json({"opened": self.connections_opened})
            if route == "calls" and method == "DELETE":
                self.clear_calls()
                return EmulatorReply(204)
            with self.lock:
                reply = self.handle_control(request, route)
        except BadRequest as exc:
            return EmulatorReply.json({"error": "bad_request", "message": exc.message}, status=400)
        if reply is None:
            return EmulatorReply.json({"error": "no such control route", "route": route}, 404)
        return reply
