"""HttpxTransport keeps RequestsTransport's guarantees, over real loopback HTTP(S): a dripped
reply ends at the exchange's (and the step's) deadline, an oversized or inflating reply is
refused unread, TLS is verified, no cookie jar is shared, reply cookies are reported."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest

from mfa_fsm import HttpRequest, IdpReplyError, TransportError, UsageError
from mfa_fsm.core.deadline import step_deadline
from mfa_fsm.core.transport_async import HttpxTransport
from mfa_fsm.testing.entrust import EntrustEmulator
from tests.core.test_bounded_steps import (
    PATIENT,
    SLACK,
    _CompressedServer,
    _Dripping,
    _self_signed,
    compressing,
    query,
    wait_for,
)

__all__ = ["compressing"]  # the fixture, shared with test_bounded_steps


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def send_once(transport: HttpxTransport, request: HttpRequest) -> object:
    async with transport:
        return await transport.send_async(request)


def test_sends_json_and_reads_the_reply(entrust_emulator: EntrustEmulator) -> None:
    """A JSON body goes out as JSON, with Accept-Encoding: identity; the reply comes back
    whole, with its status and headers."""
    reply = run(send_once(HttpxTransport(), query(entrust_emulator)))
    assert reply.status == 200 and b"authenticationTypes" in reply.body  # type: ignore[attr-defined]
    (call,) = entrust_emulator.calls
    assert call.body is not None and call.body["userId"] == "jsmith"


def test_dripped_reply_is_cut_off_at_the_exchange_deadline(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Status line, headers and body one byte a second: the exchange ends at its deadline."""
    entrust_emulator.faults.inject("drip", delay=1.0)

    async def scenario() -> float:
        async with HttpxTransport(timeout=PATIENT, deadline=2.0) as transport:
            started = time.monotonic()
            with pytest.raises(TransportError, match=r"did not finish answering .* within 2\.0"):
                await transport.send_async(query(entrust_emulator))
            took = time.monotonic() - started
            # The pool is fine afterwards: the next exchange works.
            assert (await transport.send_async(query(entrust_emulator))).status == 200
            return took

    assert 2.0 <= run(scenario()) < 2.0 + SLACK  # type: ignore[operator]


def test_the_step_deadline_bounds_the_exchange(entrust_emulator: EntrustEmulator) -> None:
    """Inside a step deadline shorter than the exchange's own, the step's wins; past it, no
    exchange starts."""
    entrust_emulator.faults.inject("drip", delay=1.0)

    async def scenario() -> None:
        async with HttpxTransport(timeout=PATIENT, deadline=10.0) as transport:
            started = time.monotonic()
            with step_deadline(1.0), pytest.raises(TransportError, match=r"within 1\.0"):
                await transport.send_async(query(entrust_emulator))
            assert time.monotonic() - started < 1.0 + SLACK
            calls = len(entrust_emulator.calls)
            with step_deadline(0.05):
                await asyncio.sleep(0.1)
                with pytest.raises(TransportError, match="ran out before"):
                    await transport.send_async(query(entrust_emulator))
            assert len(entrust_emulator.calls) == calls

    run(scenario())


def test_a_refused_connection_is_a_transport_error() -> None:
    """Nothing listening: a TransportError that says to check the URL and the network."""
    request = HttpRequest("POST", "http://127.0.0.1:9/x", "/x", {}, {"a": 1})
    with pytest.raises(TransportError, match="could not reach the IdP for /x"):
        run(send_once(HttpxTransport(), request))


@pytest.mark.parametrize("announce", [True, False])
def test_oversized_reply_is_refused_unread(
    entrust_emulator: EntrustEmulator, announce: bool
) -> None:
    """A 200 MB reply: refused by its Content-Length, or once the count passes the limit."""
    entrust_emulator.faults.inject("oversized", announce=announce)
    transport = HttpxTransport(max_reply_bytes=1024 * 1024)
    started = time.monotonic()
    with pytest.raises(IdpReplyError, match="1048576-byte limit") as info:
        run(send_once(transport, query(entrust_emulator)))
    assert time.monotonic() - started < 2.0
    assert info.value.status == 200
    assert ("announces 200000000 bytes" in str(info.value)) == announce
    assert "HttpxTransport(max_reply_bytes=...)" in str(info.value)
    wait_for(lambda: entrust_emulator.oversized_sent)
    assert entrust_emulator.oversized_sent[0] < 50_000_000


def test_a_reply_at_the_limit_is_accepted(entrust_emulator: EntrustEmulator) -> None:
    """The limit is inclusive."""
    entrust_emulator.faults.inject("oversized", size=4096, announce=False)
    reply = run(send_once(HttpxTransport(max_reply_bytes=4096), query(entrust_emulator)))
    assert len(reply.body) == 4096  # type: ignore[attr-defined]


def test_compressed_replies_are_bounded_once_inflated(compressing: _CompressedServer) -> None:
    """Identity is asked for; a 50 MB gzip bomb is refused, a small gzip reply inflated."""
    url = f"http://127.0.0.1:{compressing.server_address[1]}/x"
    request = HttpRequest("POST", url, "/x", {}, {"a": 1})
    compressing.body = gzip.compress(b" " * 50_000_000)
    with pytest.raises(IdpReplyError, match="decompresses to more"):
        run(send_once(HttpxTransport(), request))
    compressing.body = gzip.compress(b'{"ok": true}')
    assert run(send_once(HttpxTransport(), request)).body == b'{"ok": true}'  # type: ignore[attr-defined]
    assert compressing.asked == ["identity", "identity"]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTPS server with a throwaway certificate that drips its reply."""
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/x", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_tls_is_verified(tls_server: tuple[str, Path]) -> None:
    """A certificate no trusted CA signed is refused; given as verify=, it is trusted, and a
    dripping reply over TLS is still cut off at the deadline."""
    url, cert = tls_server
    request = HttpRequest("POST", url, "/x", {}, {"a": 1})
    with pytest.raises(TransportError, match="ConnectError"):
        run(send_once(HttpxTransport(), request))
    transport = HttpxTransport(timeout=PATIENT, deadline=1.5, verify=str(cert))
    started = time.monotonic()
    with pytest.raises(TransportError, match="within"):
        run(send_once(transport, request))
    assert 1.5 <= time.monotonic() - started < 1.5 + SLACK


class _Cookies(BaseHTTPRequestHandler):
    """Sets a cookie, deletes another, and reports the Cookie header it was sent."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (self.headers.get("Cookie") or "").encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "session=s3cr3t-value; Path=/; HttpOnly")
        self.send_header("Set-Cookie", "old=; Max-Age=0; Path=/")
        # Not RFC 6265 cookie-octets: could never be sent back, so the flow never holds it.
        self.send_header("Set-Cookie", "lb=caf\u00e9; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_reply_cookies_are_reported_and_never_kept() -> None:
    """A reply's cookies come back in HttpResponse.cookies (a deleted one as ""), and the
    transport sends none of them on its own: only the flow's own Cookie header travels."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Cookies)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x"

    async def scenario() -> None:
        async with HttpxTransport() as transport:
            first = await transport.send_async(HttpRequest("POST", url, "/x", {}, {}))
            assert dict(first.cookies) == {"session": "s3cr3t-value", "old": ""}
            second = await transport.send_async(HttpRequest("POST", url, "/x", {}, {}))
            assert second.body == b""  # nothing kept in a jar
            mine = {"Cookie": "session=mine"}
            third = await transport.send_async(HttpRequest("POST", url, "/x", mine, {}))
            assert third.body == b"session=mine"

    try:
        run(scenario())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_limits_are_checked() -> None:
    """A deadline that is not positive, or a reply limit below one byte, is a UsageError."""
    with pytest.raises(UsageError):
        HttpxTransport(deadline=0)
    with pytest.raises(UsageError):
        HttpxTransport(max_reply_bytes=0)


@pytest.mark.parametrize("value", ["tok\u00e9n", "tok\u20acn"])
def test_a_header_value_that_is_not_ascii_is_refused_before_sending(
    entrust_emulator: EntrustEmulator, value: str
) -> None:
    """A token an IdP sent that could not go back on the wire (RFC 9110 section 5.5) stops
    the exchange with a TransportError that does not quote it; nothing reaches the IdP."""
    request = attrs.evolve(query(entrust_emulator), headers={"Authorization": value})
    with pytest.raises(
        TransportError, match=r"Authorization header for .* is not visible ASCII"
    ) as info:
        run(send_once(HttpxTransport(), request))
    assert value not in str(info.value)
    assert entrust_emulator.calls == []
