"""The two drivers of exchanges (mfa_fsm.core.exchange), over real loopback HTTP: a transport
failure is thrown into the generator, a pause is waited out by the driver (never past the
step's deadline), each request becomes one call record, and both drivers behave alike."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from mfa_fsm import (
    EntrustConfig,
    EntrustFlow,
    HttpRequest,
    IdpReplyError,
    RequestsTransport,
    TransportError,
)
from mfa_fsm.core.deadline import step_deadline
from mfa_fsm.core.errors import FlowBusy, IdpError, UsageError
from mfa_fsm.core.exchange import (
    CallRecord,
    Exchange,
    Pause,
    drive,
    drive_async,
    pause,
    returned,
    send,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.core.transport_async import HttpxTransport
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply, network_down
from tests.core.test_bounded_steps import PATIENT, PUSH_COMPLETE, SLACK, query

Run = Callable[..., Any]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Both:
    """Runs an exchange with the sync driver over requests or the async one over httpx."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.slept: list[float] = []

    def __call__(self, exchange: Exchange[Any], **options: Any) -> Any:
        if self.mode == "sync":
            return drive(exchange, RequestsTransport(), sleep=self.slept.append, **options)

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)

        async def run() -> Any:
            async with HttpxTransport() as transport:
                return await drive_async(exchange, transport, sleep=sleep, **options)

        return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Both:
    return Both(request.param)


def test_a_reply_is_sent_back_and_the_result_returned(
    run: Both, entrust_emulator: EntrustEmulator
) -> None:
    """The generator receives the real reply at its yield; its return value is the result;
    one call record per request."""

    def exchange() -> Exchange[tuple[int, int]]:
        first = yield from send(query(entrust_emulator))
        second = yield from send(query(entrust_emulator))
        return first.status, second.status

    calls: list[CallRecord] = []
    assert run(exchange(), calls=calls) == (200, 200)
    assert [(call.path, call.status) for call in calls] == [
        ("/api/web/v2/authentication/users", 200)
    ] * 2
    assert all(call.ms >= 0 for call in calls)
    assert len(entrust_emulator.calls) == 2


def test_a_transport_failure_is_thrown_into_the_generator(run: Both) -> None:
    """Nothing listens on the port: the TransportError is raised at the yield, where the
    exchange's own try/except catches it and goes on; the call is recorded without status."""
    url = f"http://127.0.0.1:{closed_port()}/x"
    seen: list[str] = []

    def exchange() -> Exchange[str]:
        try:
            yield from send(HttpRequest("POST", url, "/x", {}, {"a": 1}))
        except TransportError as exc:
            seen.append(type(exc).__name__)
            return "handled"
        finally:
            seen.append("finally")
        return "unreachable"

    calls: list[CallRecord] = []
    assert run(exchange(), calls=calls) == "handled"
    assert seen == ["TransportError", "finally"]
    assert [(call.path, call.status) for call in calls] == [("/x", None)]


def test_an_uncaught_failure_propagates(run: Both) -> None:
    """An exchange that does not catch the failure lets it out of the driver, unchanged."""
    url = f"http://127.0.0.1:{closed_port()}/x"

    def exchange() -> Exchange[None]:
        yield from send(HttpRequest("POST", url, "/x", {}, {"a": 1}))

    with pytest.raises(TransportError, match="could not reach the IdP for /x"):
        run(exchange())


def test_pauses_are_performed_by_the_driver(run: Both) -> None:
    """A Pause is handed to the driver's sleep (time.sleep / asyncio.sleep by default); a
    pause of zero sleeps not at all."""

    def exchange() -> Exchange[str]:
        yield from pause(0.25)
        yield Pause(0.0)
        yield from pause(0.5)
        return "done"

    assert run(exchange()) == "done"
    assert run.slept == [0.25, 0.5]


def test_a_pause_never_outlasts_the_step_deadline(run: Both) -> None:
    """Inside a step deadline, a pause longer than the time left is cut to it."""

    def exchange() -> Exchange[None]:
        yield from pause(60.0)

    with step_deadline(1.0):
        run(exchange())
    (slept,) = run.slept
    assert 0.5 < slept <= 1.0


def test_retries_pause_in_the_driver_not_in_provider_code(
    run: Both, entrust_emulator: EntrustEmulator
) -> None:
    """A safe call that meets a 503 is retried after a pause the driver performs (the
    recorded sleep), and succeeds at the second try."""
    entrust_emulator.faults.inject("status", status=503, times=1)
    policy = RetryPolicy(attempts=2, first_delay=0.3, max_delay=0.3, budget=1.0)

    def attempt() -> Exchange[int]:
        response = yield from send(query(entrust_emulator))
        if response.status >= 500:
            raise IdpError("busy", path="/q", status=response.status)
        return response.status

    calls: list[CallRecord] = []
    assert run(policy.exchange(attempt), calls=calls) == 200
    assert len(run.slept) == 1 and 0 <= run.slept[0] <= 0.3
    assert [call.status for call in calls] == [503, 200]


class _Refusing:
    """Refuses every request before it leaves, as the engine's claim does."""

    def send(self, request: HttpRequest) -> Any:
        raise FlowBusy("f", "someone else holds the flow")

    async def send_async(self, request: HttpRequest) -> Any:
        raise FlowBusy("f", "someone else holds the flow")


def test_a_request_refused_before_it_left_is_no_call() -> None:
    """A StoreError from the transport is thrown in like any failure, but recorded as no
    IdP call, by both drivers."""

    def exchange() -> Exchange[None]:
        yield from send(HttpRequest("POST", "http://127.0.0.1:9/x", "/x", {}, {}))

    calls: list[CallRecord] = []
    with pytest.raises(FlowBusy):
        drive(exchange(), _Refusing(), calls=calls)
    with pytest.raises(FlowBusy):
        asyncio.run(drive_async(exchange(), _Refusing(), calls=calls))
    assert calls == []


def test_an_exchange_may_yield_only_requests_and_pauses() -> None:
    """Anything else is a programming error, named."""

    def exchange() -> Any:
        yield "GET /"

    with pytest.raises(UsageError, match="yielded a str"):
        drive(exchange(), _Refusing())


def test_returned_takes_a_plain_value_as_it_is() -> None:
    """A handler that calls no IdP may return its outcome directly."""
    assert drive(returned(42), _Refusing()) == 42


def test_cancelling_the_task_closes_the_exchange(entrust_emulator: EntrustEmulator) -> None:
    """A cancelled async step runs the exchange's finally blocks and propagates."""
    entrust_emulator.faults.inject("slow", delay=2.0)
    closed: list[bool] = []

    def exchange() -> Exchange[None]:
        try:
            yield from send(query(entrust_emulator))
        finally:
            closed.append(True)

    async def scenario() -> None:
        async with HttpxTransport() as transport:
            task = asyncio.create_task(drive_async(exchange(), transport))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert closed == [True]


# -- the flow's twins: one code path ----------------------------------------------------------


def entrust_config(emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
    )


def test_send_async_needs_an_async_transport(entrust_emulator: EntrustEmulator) -> None:
    """start_async and send_async without an AsyncTransport: a UsageError that names one,
    before any IdP call; a flow given only an async transport cannot send blocking."""
    config = entrust_config(entrust_emulator)
    user = VerifiedUser("jsmith")
    with pytest.raises(UsageError, match="HttpxTransport"):
        asyncio.run(EntrustFlow.start_async(config=config, verified_user=user))
    flow = EntrustFlow.start(config=config, verified_user=user, transport=RequestsTransport())
    with pytest.raises(UsageError, match="HttpxTransport"):
        asyncio.run(flow.send_async("submit_first_factor"))
    calls = len(entrust_emulator.calls)

    async def over_httpx() -> None:
        async with HttpxTransport() as transport:
            restored = EntrustFlow.restore(flow.snapshot(), config=config, transport=transport)
            with pytest.raises(UsageError, match="no send"):
                restored.send("submit_first_factor")
            view = await restored.send_async("submit_first_factor")
            assert view.state == "AwaitingSecondFactor"
            assert [call.status for call in restored.calls] == [200]

    asyncio.run(over_httpx())
    assert len(entrust_emulator.calls) == calls + 1


def test_a_scripted_transport_serves_both_drivers() -> None:
    """ScriptedTransport answers send_async from the same script, for unit tests of async
    steps without a server."""
    script = ScriptedTransport([json_reply({"ok": 1}), network_down("/y")])

    def exchange() -> Exchange[int]:
        first = yield from send(HttpRequest("GET", "https://idp.invalid/x", "/x"))
        try:
            yield from send(HttpRequest("GET", "https://idp.invalid/y", "/y"))
        except TransportError:
            return first.status
        return 0

    assert asyncio.run(drive_async(exchange(), script)) == 200
    assert [request.path for request in script.requests] == ["/x", "/y"]


def test_an_async_step_is_bounded_by_step_timeout_and_changes_nothing(
    entrust_emulator: EntrustEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_async opens the same step deadline as send: a dripped poll (retried, as polls
    are) ends at Flow.step_timeout with a TransportError, and the flow is as it was."""
    monkeypatch.setattr(EntrustFlow, "step_timeout", 2.0)
    config = entrust_config(entrust_emulator)

    async def scenario() -> None:
        async with HttpxTransport(timeout=PATIENT, deadline=60.0) as transport:
            flow = await EntrustFlow.start_async(
                config=config, verified_user=VerifiedUser("jsmith"), transport=transport
            )
            await flow.send_async("submit_first_factor")
            await flow.send_async("select_second_factor", factor="TOKENPUSH")
            before = flow.snapshot()
            entrust_emulator.faults.inject("drip", path=PUSH_COMPLETE, times=None, delay=1.0)
            started = time.monotonic()
            with pytest.raises(TransportError):
                await flow.send_async("poll")
            assert 2.0 <= time.monotonic() - started < 2.0 + SLACK
            assert flow.snapshot() == before

    asyncio.run(scenario())


def test_an_oversized_reply_fails_an_async_step_and_changes_nothing(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Over httpx, a reply past max_reply_bytes is an IdpReplyError; the flow is unchanged."""
    config = entrust_config(entrust_emulator)

    async def scenario() -> None:
        async with HttpxTransport(max_reply_bytes=64 * 1024) as transport:
            flow = await EntrustFlow.start_async(
                config=config, verified_user=VerifiedUser("jsmith"), transport=transport
            )
            before = flow.snapshot()
            entrust_emulator.faults.inject("oversized", announce=False)
            with pytest.raises(IdpReplyError, match="65536-byte limit"):
                await flow.send_async("submit_first_factor")
            assert flow.snapshot() == before

    asyncio.run(scenario())
