"""The requests transport, over real sockets: replies, and every network failure typed."""

from __future__ import annotations

import socket

import pytest

from mfa_fsm import HttpRequest, RequestsTransport, TransportError
from mfa_fsm.testing.entrust import EntrustEmulator

QUERY = "/api/web/v2/authentication/users"


def query(emulator: EntrustEmulator, **body: object) -> HttpRequest:
    payload = {"applicationId": emulator.application_id, "userId": "jsmith", **body}
    return HttpRequest(
        "POST", emulator.base_url + QUERY, QUERY, {"Accept": "application/json"}, payload
    )


def test_sends_json_and_reads_the_reply(entrust_emulator: EntrustEmulator) -> None:
    """A JSON body is sent with its content type; status, headers and body come back."""
    reply = RequestsTransport().send(query(entrust_emulator))
    assert reply.status == 200
    assert (
        reply.header(
            "content-type",
        )
        is not None
    )
    assert b"authenticationTypes" in reply.body
    call = entrust_emulator.calls[-1]
    assert call.headers["content-type"] == "application/json"
    assert call.body["userId"] == "jsmith"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_a_transport_error() -> None:
    """Nothing listening: TransportError naming the path, with the requests error as cause."""
    url = f"http://127.0.0.1:{free_port()}{QUERY}"
    with pytest.raises(TransportError, match="could not reach") as info:
        RequestsTransport().send(HttpRequest("POST", url, QUERY, {}, {"a": 1}))
    assert info.value.path == QUERY
    assert info.value.__cause__ is not None


def test_read_timeout_is_a_transport_error(entrust_emulator: EntrustEmulator) -> None:
    """A reply slower than the read timeout is a TransportError saying so."""
    entrust_emulator.faults.inject("slow", delay=1.0)
    with pytest.raises(TransportError, match="in time"):
        RequestsTransport(timeout=(1.0, 0.2)).send(query(entrust_emulator))


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_dropped_or_reset_connection_is_a_transport_error(
    entrust_emulator: EntrustEmulator, kind: str
) -> None:
    """A connection closed before or during the reply is a TransportError."""
    entrust_emulator.faults.inject(kind)
    with pytest.raises(TransportError):
        RequestsTransport().send(query(entrust_emulator))


def test_secrets_stay_out_of_reprs() -> None:
    """Request headers and bodies, response bodies and cookies are not in repr."""
    request = HttpRequest(
        "POST", "https://x/p", "/p", {"Authorization": "tok-123"}, {"response": "999"}
    )
    assert "tok-123" not in repr(request) and "999" not in repr(request)
