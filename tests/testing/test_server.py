"""Tests of the shared emulator server base, over real HTTP on loopback."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mfa_fsm.testing import EmulatorServer, FaultPlan
from mfa_fsm.testing._server import (
    UNKNOWN_ENUM_VALUE,
    BadRequest,
    EmulatorReply,
    EmulatorRequest,
)


class EchoEmulator(EmulatorServer):
    """Answers every request with what it received, plus the serving thread's name."""

    def handle(self, request: EmulatorRequest) -> EmulatorReply:
        if request.path == "/boom":
            raise BadRequest("boom is not allowed")
        if request.path == "/json":
            request.json()  # raises BadRequest on junk
        return EmulatorReply.json(
            {
                "status": "OK",
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "auth": request.header("AUTHORIZATION"),
                "body": request.json_or_none(),
                "thread": threading.current_thread().name,
            }
        )

    def handle_control(self, request: EmulatorRequest, route: str) -> EmulatorReply | None:
        if route == "ping":
            return EmulatorReply.json({"pong": True})
        return None


@pytest.fixture
def emu() -> Iterator[EchoEmulator]:
    with EchoEmulator() as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_context_manager_serves_on_loopback(emu: EchoEmulator, http: requests.Session) -> None:
    """The server answers on 127.0.0.1 at base_url while inside the with block."""
    assert emu.base_url.startswith("http://127.0.0.1:")
    reply = http.get(emu.base_url + "/hello")
    assert reply.status_code == 200
    assert reply.json()["path"] == "/hello"


def test_base_url_requires_a_running_server() -> None:
    """base_url raises before start() and after stop()."""
    server = EchoEmulator()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_start_twice_is_refused(emu: EchoEmulator) -> None:
    """Starting a running emulator raises instead of leaking a second server."""
    with pytest.raises(RuntimeError):
        emu.start()


def test_request_is_parsed(emu: EchoEmulator, http: requests.Session) -> None:
    """Method, bare path, query dict, case-insensitive headers and JSON body reach handle."""
    reply = http.post(
        emu.base_url + "/a/b?x=1&y=two",
        json={"k": [1, 2]},
        headers={"Authorization": "Bearer abc"},
    ).json()
    assert reply["method"] == "POST"
    assert reply["path"] == "/a/b"
    assert reply["query"] == {"x": "1", "y": "two"}
    assert reply["auth"] == "Bearer abc"
    assert reply["body"] == {"k": [1, 2]}


def test_content_length_is_always_sent(emu: EchoEmulator, http: requests.Session) -> None:
    """Every answer, even an empty one, carries a Content-Length matching its body."""
    reply = http.get(emu.base_url + "/x")
    assert int(reply.headers["Content-Length"]) == len(reply.content)
    emu.faults.inject("empty")
    reply = http.get(emu.base_url + "/x")
    assert reply.headers["Content-Length"] == "0"


def test_keep_alive_reuses_the_connection(emu: EchoEmulator, http: requests.Session) -> None:
    """A requests.Session sends consecutive requests over one kept-alive connection."""
    first = http.get(emu.base_url + "/1").json()["thread"]
    second = http.get(emu.base_url + "/2").json()["thread"]
    assert first == second  # one handler thread = one connection


def test_bad_request_maps_to_400(emu: EchoEmulator, http: requests.Session) -> None:
    """BadRequest raised by a handler, or a malformed JSON body, is answered with HTTP 400."""
    assert http.get(emu.base_url + "/boom").status_code == 400
    reply = http.post(emu.base_url + "/json", data=b"{not json")
    assert reply.status_code == 400
    assert "Malformed JSON" in reply.json()["message"]
    assert http.post(emu.base_url + "/json").status_code == 400


def test_call_log_records_each_request(emu: EchoEmulator, http: requests.Session) -> None:
    """Each handled request is logged with method, path, status and parsed JSON body."""
    http.post(emu.base_url + "/api/one", json={"clientIp": "1.2.3.4"})
    http.get(emu.base_url + "/api/two")
    http.post(emu.base_url + "/api/three", data=b"not json")
    assert [c.path for c in emu.calls] == ["/api/one", "/api/two", "/api/three"]
    first = emu.calls[0]
    assert (first.method, first.status, first.body) == ("POST", 200, {"clientIp": "1.2.3.4"})
    assert first.time > 0
    assert emu.calls[2].body is None
    assert [c.path for c in emu.calls_to("/api/t")] == ["/api/two", "/api/three"]
    emu.clear_calls()
    assert emu.calls == []


def test_control_routes_are_not_logged_or_faulted(
    emu: EchoEmulator, http: requests.Session
) -> None:
    """Requests under /_emulator/ bypass pending faults and stay out of the call log."""
    emu.faults.inject("status")
    http.get(emu.base_url + "/_emulator/calls")
    assert emu.calls == []
    assert len(emu.faults.pending()) == 1


def test_calls_over_http(emu: EchoEmulator, http: requests.Session) -> None:
    """GET /_emulator/calls lists the log as JSON and DELETE clears it."""
    http.post(emu.base_url + "/x", json={"a": 1})
    calls = http.get(emu.base_url + "/_emulator/calls").json()
    assert [(c["method"], c["path"], c["status"], c["body"]) for c in calls] == [
        ("POST", "/x", 200, {"a": 1})
    ]
    assert http.delete(emu.base_url + "/_emulator/calls").status_code == 204
    assert emu.calls == []


def test_subclass_control_hook(emu: EchoEmulator, http: requests.Session) -> None:
    """Subclass control routes answer; unknown control routes get 404."""
    assert http.get(emu.base_url + "/_emulator/ping").json() == {"pong": True}
    assert http.get(emu.base_url + "/_emulator/nope").status_code == 404


# -- faults ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, 500, 502, 504])
def test_status_fault(emu: EchoEmulator, http: requests.Session, status: int | None) -> None:
    """A status fault answers the given 5xx (503 by default) with a plain-text body, once."""
    emu.faults.inject("status", status=status)
    reply = http.get(emu.base_url + "/x")
    assert reply.status_code == (status or 503)
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert http.get(emu.base_url + "/x").status_code == 200


@pytest.mark.parametrize(("retry_after", "header"), [(7, "7"), (None, None)])
def test_rate_limit_fault(
    emu: EchoEmulator, http: requests.Session, retry_after: int | None, header: str | None
) -> None:
    """A rate_limit fault answers 429 with Retry-After only when retry_after is given."""
    emu.faults.inject("rate_limit", retry_after=retry_after)
    reply = http.get(emu.base_url + "/x")
    assert reply.status_code == 429
    assert reply.headers.get("Retry-After") == header


def test_slow_fault_trips_client_timeout(emu: EchoEmulator, http: requests.Session) -> None:
    """A slow fault delays the answer so a short client timeout fires; later calls are fine."""
    emu.faults.inject("slow", delay=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(emu.base_url + "/x", timeout=0.1)
    assert http.get(emu.base_url + "/x", timeout=2).status_code == 200


def test_slow_fault_then_real_answer(emu: EchoEmulator, http: requests.Session) -> None:
    """A slow fault still answers normally once the delay has passed."""
    emu.faults.inject("slow", delay=0.1)
    started = time.monotonic()
    reply = http.get(emu.base_url + "/x", timeout=2)
    assert time.monotonic() - started >= 0.1
    assert reply.json()["status"] == "OK"


def test_drop_fault_closes_without_reply(emu: EchoEmulator, http: requests.Session) -> None:
    """A drop fault closes the socket with no reply; the next request works again."""
    emu.faults.inject("drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(emu.base_url + "/x")
    assert http.get(emu.base_url + "/x").status_code == 200
    assert emu.calls[0].status is None
    assert emu.calls[0].fault == "drop"


def test_reset_fault_breaks_mid_body(emu: EchoEmulator, http: requests.Session) -> None:
    """A reset fault sends headers and part of the body, then hangs up."""
    emu.faults.inject("reset")
    with pytest.raises(
        (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    ):
        http.get(emu.base_url + "/x")
    assert http.get(emu.base_url + "/x").status_code == 200


def test_empty_fault(emu: EchoEmulator, http: requests.Session) -> None:
    """An empty fault answers 200 with no body."""
    emu.faults.inject("empty")
    reply = http.get(emu.base_url + "/x")
    assert (reply.status_code, reply.content) == (200, b"")


def test_html_fault(emu: EchoEmulator, http: requests.Session) -> None:
    """An html fault answers 200 with an HTML page instead of JSON."""
    emu.faults.inject("html")
    reply = http.get(emu.base_url + "/x")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.text.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(("body", "expected"), [(None, {"unexpected": True}), ([1, 2], [1, 2])])
def test_wrong_shape_fault(
    emu: EchoEmulator, http: requests.Session, body: Any, expected: Any
) -> None:
    """A wrong_shape fault answers 200 JSON of an unexpected shape."""
    emu.faults.inject("wrong_shape", body=body)
    assert http.get(emu.base_url + "/x").json() == expected


def test_unknown_enum_fault(emu: EchoEmulator, http: requests.Session) -> None:
    """An unknown_enum fault lets the handler answer, then replaces its status value."""
    emu.faults.inject("unknown_enum")
    reply = http.get(emu.base_url + "/x").json()
    assert reply["status"] == UNKNOWN_ENUM_VALUE
    assert reply["path"] == "/x"


def test_fault_path_and_times(emu: EchoEmulator, http: requests.Session) -> None:
    """Faults hit only matching paths, the given number of times, or until cleared."""
    emu.faults.inject("status", path="/complete", times=2)
    assert http.get(emu.base_url + "/query").status_code == 200
    assert http.get(emu.base_url + "/x/complete").status_code == 503
    assert http.get(emu.base_url + "/y/complete").status_code == 503
    assert http.get(emu.base_url + "/z/complete").status_code == 200
    emu.faults.inject("rate_limit", times=None)
    for _ in range(3):
        assert http.get(emu.base_url + "/x").status_code == 429
    emu.faults.clear()
    assert http.get(emu.base_url + "/x").status_code == 200


def test_faults_are_logged(emu: EchoEmulator, http: requests.Session) -> None:
    """Faulted requests appear in the call log with their fault kind and status."""
    emu.faults.inject("rate_limit")
    http.post(emu.base_url + "/x", json={"clientIp": "1.2.3.4"})
    (call,) = emu.calls
    assert (call.status, call.fault, call.body) == (429, "rate_limit", {"clientIp": "1.2.3.4"})


def test_inject_validates_arguments() -> None:
    """inject refuses unknown kinds, provider-only kinds, bad statuses, slow without delay, a
    drip without a positive delay and an oversized reply smaller than its JSON frame."""
    plan = FaultPlan()
    for kwargs in (
        {"kind": "bogus"},
        {"kind": "stale_success"},
        {"kind": "status", "status": 404},
        {"kind": "slow"},
        {"kind": "drop", "times": 0},
        {"kind": "drip", "delay": 0},
        {"kind": "oversized", "size": 4},
    ):
        with pytest.raises(ValueError, match=r"."):
            plan.inject(**kwargs)
    assert plan.pending() == []


def test_faults_over_http(emu: EchoEmulator, http: requests.Session) -> None:
    """POST /_emulator/faults injects, GET lists, DELETE clears; bad specs get 400."""
    created = http.post(
        emu.base_url + "/_emulator/faults", json={"kind": "status", "status": 502, "path": "/p"}
    )
    assert created.status_code == 201
    assert http.get(emu.base_url + "/_emulator/faults").json()[0]["kind"] == "status"
    assert http.get(emu.base_url + "/p").status_code == 502
    http.post(emu.base_url + "/_emulator/faults", json={"kind": "drop", "times": None})
    assert http.delete(emu.base_url + "/_emulator/faults").status_code == 204
    assert http.get(emu.base_url + "/p").status_code == 200
    for spec in ({"kind": "nope"}, {"times": 1}, {"kind": "drop", "colour": "red"}, [1]):
        assert http.post(emu.base_url + "/_emulator/faults", json=spec).status_code == 400


# -- lifecycle --------------------------------------------------------------------


def test_stop_leaves_no_threads() -> None:
    """stop() ends idle keep-alive connections and sleeping slow faults, leaving no threads."""
    before = set(threading.enumerate())
    server = EchoEmulator().start()
    session = requests.Session()
    session.get(server.base_url + "/x")  # leaves an idle keep-alive connection
    server.faults.inject("slow", delay=30)

    def hang() -> None:
        with contextlib.suppress(requests.RequestException):
            session.get(server.base_url + "/slow")

    slow = threading.Thread(target=hang)
    slow.start()
    time.sleep(0.1)  # let the slow request reach the server
    started = time.monotonic()
    server.stop()
    slow.join(timeout=5)
    session.close()
    assert time.monotonic() - started < 2
    assert set(threading.enumerate()) <= before


def test_restart_after_stop() -> None:
    """An emulator can be started again after stop(), keeping its state."""
    server = EchoEmulator()
    with server, requests.Session() as http:
        http.get(server.base_url + "/one")
    with server, requests.Session() as http:
        assert http.get(server.base_url + "/two").status_code == 200
    assert [c.path for c in server.calls] == ["/one", "/two"]


def test_serving_is_silent(capfd: pytest.CaptureFixture[str]) -> None:
    """Serving, faults and client hang-ups print nothing to stdout or stderr."""
    with EchoEmulator() as server, requests.Session() as http:
        http.get(server.base_url + "/x")
        server.faults.inject("slow", delay=0.3)
        with pytest.raises(requests.exceptions.ReadTimeout):
            http.get(server.base_url + "/x", timeout=0.05)
        server.faults.inject("drop")
        with pytest.raises(requests.exceptions.ConnectionError):
            http.get(server.base_url + "/x")
        time.sleep(0.35)  # let the slow handler write to the closed socket
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_the_old_name_of_logged_request_still_works_with_a_warning() -> None:
    """``CallRecord`` (the name the flow's own IdP-call record also has) is a deprecated alias
    of LoggedRequest for one release."""
    from mfa_fsm.testing import _server  # noqa: PLC0415

    with pytest.warns(DeprecationWarning, match=r"_server\.CallRecord is now LoggedRequest"):
        old = _server.CallRecord
    assert old is _server.LoggedRequest
    with pytest.raises(AttributeError, match="no attribute 'CallRecords'"):
        _ = _server.CallRecords
