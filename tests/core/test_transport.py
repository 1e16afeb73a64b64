"""The requests transport, over real sockets: replies, and every network failure typed."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import attrs
import pytest

from mfa_fsm import EntrustConfig, EntrustFlow, HttpRequest, RequestsTransport, TransportError
from mfa_fsm.core import transport as transport_module
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.transport import default_transport
from mfa_fsm.testing import control
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


def readme_login(config: EntrustConfig, emulator: EntrustEmulator, factor: str = "OTP") -> str:
    """The README's first example: every step restored from JSON, no transport= anywhere."""
    flow = EntrustFlow.start(config=config, verified_user=VerifiedUser("jsmith"))
    flow = EntrustFlow.restore(flow.snapshot().to_json(), config=config)
    flow.send("submit_first_factor")
    flow = EntrustFlow.restore(flow.snapshot().to_json(), config=config)
    flow.send("select_second_factor", factor=factor)
    flow = EntrustFlow.restore(flow.snapshot().to_json(), config=config)
    code = emulator.last_otp("jsmith") if factor == "OTP" else emulator.token_code("jsmith")
    return flow.send("submit_response", answer=code).state


def test_a_login_without_a_transport_opens_one_connection(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Flows given no transport share their configuration's: the four calls of a login
    (query, complete, select, complete) travel over one TCP connection, counted at the
    emulator, and the next login reuses it."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    before = entrust_emulator.connections_opened
    assert readme_login(config, entrust_emulator) == "Completed"
    assert len(entrust_emulator.calls) == 4
    assert entrust_emulator.connections_opened - before == 1
    assert readme_login(config, entrust_emulator) == "Completed"
    assert entrust_emulator.connections_opened - before == 1
    assert default_transport(config) is default_transport(attrs.evolve(config))


def test_the_shared_transport_is_safe_across_threads(entrust_emulator: EntrustEmulator) -> None:
    """Logins in racing threads share one default transport: each completes, and no more
    connections are opened than there were threads at once."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    threads = 4
    pool = ThreadPoolExecutor(threads)
    with entrust_emulator.lock:  # hold the emulator so every thread's first call overlaps
        futures = [
            # TOKEN: its code does not change when another thread's login selects it
            pool.submit(readme_login, config, entrust_emulator, "TOKEN")
            for _ in range(threads * 3)
        ]
        time.sleep(0.2)
    pool.shutdown(wait=True)
    states = [future.result() for future in futures]
    assert states == ["Completed"] * threads * 3
    assert entrust_emulator.connections_opened <= threads


def test_connections_are_counted_over_the_control_route(
    entrust_emulator: EntrustEmulator,
) -> None:
    """GET /_emulator/connections reports the count, its own connection included."""
    RequestsTransport().send(query(entrust_emulator))
    opened = control.get(entrust_emulator.base_url + "/_emulator/connections")["opened"]
    assert opened == entrust_emulator.connections_opened == 2


def test_default_transports_are_kept_per_configuration() -> None:
    """Equal configurations share a transport, others get their own, the least recently
    used beyond DEFAULT_TRANSPORTS is dropped, and an unhashable one gets a fresh one."""
    configs = [
        EntrustConfig(base_url=f"https://idp{n}.invalid", application_id="a")
        for n in range(transport_module.DEFAULT_TRANSPORTS + 1)
    ]
    first = default_transport(configs[0])
    assert default_transport(configs[1]) is not first
    for config in configs[1:]:
        default_transport(config)
    assert default_transport(configs[0]) is not first  # dropped, then made again
    unhashable: dict[str, str] = {}
    assert default_transport(unhashable) is not default_transport(unhashable)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["tok\u00e9n", "tok\u20acn"])
def test_a_header_value_that_is_not_ascii_is_refused_before_sending(
    entrust_emulator: EntrustEmulator, value: str
) -> None:
    """The same guard as the async transport's: http.client would send Latin-1 as is and
    raise UnicodeEncodeError past it; neither reaches the IdP, and the value is not quoted."""
    from tests.core.test_bounded_steps import query  # noqa: PLC0415

    request = attrs.evolve(query(entrust_emulator), headers={"Authorization": value})
    with pytest.raises(
        TransportError, match=r"Authorization header for .* is not visible ASCII"
    ) as info:
        RequestsTransport().send(request)
    assert value not in str(info.value)
    assert entrust_emulator.calls == []
