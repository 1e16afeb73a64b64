"""Bounded steps, over real loopback HTTP: a reply dripped one byte a second cannot hold an
exchange or a step past its deadline (whatever the per-socket timeouts), and an oversized
reply is refused without being read whole. Every error is typed and leaves the flow as it was.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mfa_fsm import (
    CyberArkConfig,
    Engine,
    EntrustFlow,
    HttpRequest,
    IdpReplyError,
    MemoryStore,
    RequestsTransport,
    SealedEngine,
    TransportError,
    UsageError,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.core.transport import DeadlineAdapter, step_deadline, step_time_left
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.entrust import EntrustEmulator
from tests.support.engine import entrust_config

QUERY = "/api/web/v2/authentication/users"
PUSH_COMPLETE = "/authenticate/TOKENPUSH/complete"
ADVANCE = "/Security/AdvanceAuthentication"
#: Per-socket timeouts far above the drip's one byte a second: they never trip.
PATIENT = (5.0, 5.0)
#: How late past its deadline a step may end: thread wake-up and socket teardown.
SLACK = 0.5


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator


def query(emulator: EntrustEmulator) -> HttpRequest:
    body = {"applicationId": emulator.application_id, "userId": "jsmith"}
    return HttpRequest("POST", emulator.base_url + QUERY, QUERY, {}, body)


def wait_for(condition: object, seconds: float = 5.0) -> None:
    ends = time.monotonic() + seconds
    while not callable(condition) or not condition():
        assert time.monotonic() < ends, "the emulator never finished its reply"
        time.sleep(0.02)


# -- one exchange -------------------------------------------------------------------------------


def test_dripped_reply_is_cut_off_at_the_exchange_deadline(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Status line, headers and body one byte a second: each read is far inside the read
    timeout, yet the exchange ends at its deadline with a TransportError saying so."""
    entrust_emulator.faults.inject("drip", delay=1.0)
    transport = RequestsTransport(timeout=PATIENT, deadline=2.0)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"did not finish answering .* within 2\.0 s"):
        transport.send(query(entrust_emulator))
    assert 2.0 <= time.monotonic() - started < 2.0 + SLACK
    # The pool is fine afterwards: the next exchange gets a fresh connection.
    assert transport.send(query(entrust_emulator)).status == 200


def test_dripped_body_is_cut_off_with_a_session_passed_in(
    entrust_emulator: EntrustEmulator,
) -> None:
    """A caller's own session with a DeadlineAdapter mounted gets the same bound."""
    session = requests.Session()
    session.mount("http://", DeadlineAdapter())
    entrust_emulator.faults.inject("drip", delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError, match="within"):
        RequestsTransport(session, timeout=PATIENT, deadline=1.5).send(query(entrust_emulator))
    assert time.monotonic() - started < 1.5 + SLACK


@pytest.mark.parametrize("announce", [True, False])
def test_oversized_reply_is_refused_unread(
    entrust_emulator: EntrustEmulator, announce: bool
) -> None:
    """A 200 MB reply: refused by its Content-Length before any body byte is read, or, with
    no length, as soon as the count passes the limit; either way almost nothing is read."""
    entrust_emulator.faults.inject("oversized", announce=announce)
    transport = RequestsTransport(max_reply_bytes=1024 * 1024)
    started = time.monotonic()
    with pytest.raises(IdpReplyError, match="1048576-byte limit") as info:
        transport.send(query(entrust_emulator))
    assert time.monotonic() - started < 2.0
    assert info.value.status == 200 and info.value.path == QUERY
    assert ("announces 200000000 bytes" in str(info.value)) == announce
    wait_for(lambda: entrust_emulator.oversized_sent)
    assert entrust_emulator.oversized_sent[0] < 50_000_000  # socket buffers, not 200 MB
    assert transport.send(query(entrust_emulator)).status == 200


class _Compressed(BaseHTTPRequestHandler):
    """Answers every POST with the body and Content-Encoding the test put on the server."""

    protocol_version = "HTTP/1.1"
    server: _CompressedServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.asked.append(self.headers.get("Accept-Encoding", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", self.server.encoding)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CompressedServer(ThreadingHTTPServer):
    daemon_threads = True
    encoding = "gzip"
    body = b""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Compressed)
        self.asked: list[str] = []


@pytest.fixture
def compressing() -> Iterator[_CompressedServer]:
    server = _CompressedServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    ("encoding", "body", "error"),
    [
        ("gzip", gzip.compress(b" " * 50_000_000), "decompresses to more"),
        ("deflate", zlib.compress(b"[" + b" " * 9_999_999 + b"]"), "decompresses to more"),
        ("gzip", b"not gzip at all", "does not decompress"),
        ("br", b"whatever", "encoded as 'br'"),
    ],
)
def test_compressed_replies_are_bounded_once_inflated(
    compressing: _CompressedServer, encoding: str, body: bytes, error: str
) -> None:
    """Identity is asked for; a reply compressed anyway may not inflate past the limit (a
    50 MB gzip bomb of 50 KB is refused), nor use an encoding nobody asked for."""
    compressing.encoding, compressing.body = encoding, body
    url = f"http://127.0.0.1:{compressing.server_address[1]}/x"
    with pytest.raises(IdpReplyError, match=error):
        RequestsTransport().send(HttpRequest("POST", url, "/x", {}, {"a": 1}))
    assert compressing.asked == ["identity"]


def test_a_small_compressed_reply_is_inflated(compressing: _CompressedServer) -> None:
    """An IdP that compresses anyway still works when the reply fits."""
    compressing.body = gzip.compress(b'{"ok": true}')
    url = f"http://127.0.0.1:{compressing.server_address[1]}/x"
    reply = RequestsTransport().send(HttpRequest("POST", url, "/x", {}, {"a": 1}))
    assert reply.body == b'{"ok": true}'


def test_a_reply_at_the_limit_is_accepted(entrust_emulator: EntrustEmulator) -> None:
    """The limit is inclusive: a body of exactly max_reply_bytes is read whole."""
    entrust_emulator.faults.inject("oversized", size=4096, announce=False)
    reply = RequestsTransport(max_reply_bytes=4096).send(query(entrust_emulator))
    assert len(reply.body) == 4096 and reply.body.startswith(b'{"padding":"')


def test_no_exchange_starts_once_the_step_deadline_has_passed(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Past the step's deadline the transport refuses to send at all."""
    calls = len(entrust_emulator.calls)
    with step_deadline(0.01):
        time.sleep(0.02)
        left = step_time_left()
        assert left is not None and left < 0
        with pytest.raises(TransportError, match="time ran out before"):
            RequestsTransport().send(query(entrust_emulator))
    assert step_time_left() is None
    assert len(entrust_emulator.calls) == calls


def test_retries_do_not_wait_past_the_step_deadline() -> None:
    """A retry whose wait would end after the deadline is not made: the error is raised."""
    attempts = []

    def failing() -> None:
        attempts.append(time.monotonic())
        raise TransportError("down", path="/p")

    policy = RetryPolicy(attempts=5, first_delay=1.0, max_delay=1.0, budget=10.0)
    with step_deadline(0.5), pytest.raises(TransportError):
        policy.call(failing, rng=_Fixed())
    assert len(attempts) == 1


class _Fixed:
    """An rng whose jitter is always the ceiling."""

    def uniform(self, low: float, high: float) -> float:
        return high


def test_deadline_adapter_covers_http_proxies() -> None:
    """Connections through an HTTP(S) proxy report themselves too; nothing else changes."""
    adapter = DeadlineAdapter()
    manager = adapter.proxy_manager_for("http://127.0.0.1:3128")
    assert manager.pool_classes_by_scheme == adapter.poolmanager.pool_classes_by_scheme
    assert manager.pool_classes_by_scheme["https"].ConnectionCls.__name__ == "_HTTPSConnection"
    adapter.close()


def test_limits_are_checked() -> None:
    """A deadline or size limit that could never be met is refused."""
    with pytest.raises(UsageError, match="deadline"):
        RequestsTransport(deadline=0)
    with pytest.raises(UsageError, match="max_reply_bytes"):
        RequestsTransport(max_reply_bytes=0)
    with pytest.raises(UsageError, match="positive"), step_deadline(0):
        pass
    with pytest.raises(UsageError, match="step_timeout"):
        Engine(MemoryStore(), [], step_timeout=0)


# -- whole steps, both providers, every entry point ----------------------------------------------


def entrust_engine(emulator: EntrustEmulator, **options: object) -> Engine:
    config = entrust_config(emulator.base_url, emulator.application_id)
    transport = RequestsTransport(timeout=PATIENT, deadline=60.0)
    return Engine(MemoryStore(), [config], transport=transport, **options)  # type: ignore[arg-type]


def entrust_push(engine: Engine) -> str:
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    assert engine.send(flow_id, "select_second_factor", factor="TOKENPUSH").state == "OobPending"
    return flow_id


def test_entrust_engine_step_ends_at_its_deadline_and_changes_nothing(
    entrust_emulator: EntrustEmulator,
) -> None:
    """A poll whose replies drip (retried, since polls are safe) ends at the engine's
    step_timeout with a TransportError; the stored flow is exactly as it was."""
    engine = entrust_engine(entrust_emulator, step_timeout=2.5)
    flow_id = entrust_push(engine)
    before = engine.store.load(flow_id)
    entrust_emulator.faults.inject("drip", path=PUSH_COMPLETE, times=None, delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError, match="within"):
        engine.send(flow_id, "poll")
    assert 2.5 <= time.monotonic() - started < 2.5 + SLACK
    assert engine.store.load(flow_id) == before
    entrust_emulator.faults.clear()
    entrust_emulator.approve_push("jsmith")
    assert engine.send(flow_id, "poll").state == "Completed"


def test_entrust_oversized_reply_fails_the_step_and_changes_nothing(
    entrust_emulator: EntrustEmulator,
) -> None:
    """An oversized reply to the push poll is an IdpReplyError; the flow is unchanged."""
    engine = entrust_engine(entrust_emulator)
    flow_id = entrust_push(engine)
    before = engine.store.load(flow_id)
    entrust_emulator.faults.inject("oversized", path=PUSH_COMPLETE)
    with pytest.raises(IdpReplyError, match="limit"):
        engine.send(flow_id, "poll")
    assert engine.store.load(flow_id) == before


def test_entrust_flow_api_step_is_bounded_by_step_timeout(
    entrust_emulator: EntrustEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an engine, Flow.send opens a step deadline of Flow.step_timeout itself."""
    monkeypatch.setattr(EntrustFlow, "step_timeout", 2.0)
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    transport = RequestsTransport(timeout=PATIENT, deadline=60.0)
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), transport=transport
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="TOKENPUSH")
    before = flow.snapshot()
    entrust_emulator.faults.inject("drip", path=PUSH_COMPLETE, times=None, delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError):
        flow.send("poll")
    assert 2.0 <= time.monotonic() - started < 2.0 + SLACK
    assert flow.snapshot() == before


def cyberark_engine(emulator: CyberArkEmulator, sealed: bool = False) -> Engine | SealedEngine:
    config = CyberArkConfig(base_url=emulator.base_url, pod_scheme="http", poll_interval=0.0)
    transport = RequestsTransport(timeout=PATIENT, deadline=60.0)
    if sealed:
        state = SealedState({"k": bytes(range(32))})
        return SealedEngine(state, [config], transport=transport, step_timeout=2.0)
    return Engine(MemoryStore(), [config], transport=transport, step_timeout=2.0)


def test_cyberark_engine_step_ends_at_its_deadline_and_changes_nothing(
    cyberark_emulator: CyberArkEmulator,
) -> None:
    """bob's push poll drips: the step ends at step_timeout, the stored flow unchanged, and
    the oversized reply that follows is refused the same way."""
    engine = cyberark_engine(cyberark_emulator)
    assert isinstance(engine, Engine)
    flow_id = engine.start("cyberark", user="bob").flow_id
    assert engine.send(flow_id, "submit_first_factor").state == "OobPending"
    before = engine.store.load(flow_id)
    cyberark_emulator.faults.inject("drip", path=ADVANCE, times=None, delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError, match="within"):
        engine.send(flow_id, "poll")
    assert 2.0 <= time.monotonic() - started < 2.0 + SLACK
    assert engine.store.load(flow_id) == before
    cyberark_emulator.faults.clear()
    cyberark_emulator.faults.inject("oversized", path=ADVANCE, announce=False)
    with pytest.raises(IdpReplyError, match="limit"):
        engine.send(flow_id, "poll")
    assert engine.store.load(flow_id) == before


def test_cyberark_sealed_engine_step_ends_at_its_deadline(
    cyberark_emulator: CyberArkEmulator,
) -> None:
    """The sealed engine bounds its steps the same way; the client's token stays current."""
    engine = cyberark_engine(cyberark_emulator, sealed=True)
    assert isinstance(engine, SealedEngine)
    view, token = engine.start("cyberark", user="bob")
    view, token = engine.send(token, view.flow_id, "submit_first_factor")
    cyberark_emulator.faults.inject("drip", path=ADVANCE, times=None, delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError):
        engine.send(token, view.flow_id, "poll")
    assert time.monotonic() - started < 2.0 + SLACK
    assert engine.view(token, view.flow_id) == view


def test_engine_start_is_bounded_too(cyberark_emulator: CyberArkEmulator) -> None:
    """Starting a flow makes IdP calls too: the engine bounds them by step_timeout."""
    engine = cyberark_engine(cyberark_emulator)
    cyberark_emulator.faults.inject("drip", times=None, delay=1.0)
    started = time.monotonic()
    with pytest.raises(TransportError):
        engine.start("cyberark", user="alice")
    assert time.monotonic() - started < 2.0 + SLACK


# -- over TLS: the cut reaches the socket under an SSLSocket ---------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made for the test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Dripping(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.5)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_dripping_reply_over_tls_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    """HTTPS, a reply dripped a byte every half second: cut off at the 1.5 s deadline."""
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/x"
        transport = RequestsTransport(timeout=PATIENT, deadline=1.5, verify=str(cert))
        started = time.monotonic()
        with pytest.raises(TransportError, match="within"):
            transport.send(HttpRequest("POST", url, "/x", {}, {"a": 1}))
        assert 1.5 <= time.monotonic() - started < 1.5 + SLACK
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
