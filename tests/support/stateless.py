"""A stateless handler in miniature: every step restores the flow from JSON, as a web
request that keeps nothing in memory would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mfa_fsm import EventNotAllowed, Flow, FlowView, MfaError, Snapshot
from mfa_fsm.core.exchange import drive
from mfa_fsm.core.http import Transport
from mfa_fsm.core.transport import RequestsTransport
from mfa_fsm.core.transport_async import HttpxTransport
from mfa_fsm.testing.leaks import SecretRecorder

F = TypeVar("F", bound=Flow)
T = TypeVar("T")

#: The two drivers every end-to-end test runs over.
DRIVERS = ("sync", "async")


class _NoBlocking:
    """The blocking side of an async test's transport: any use is a test failure."""

    def send(self, request: Any) -> Any:
        raise AssertionError(f"a blocking send of {request.path} under the async driver")


class Driver:
    """Starts and steps flows with one of the two drivers, for tests parametrised over both:
    ``"sync"`` (``Flow.start`` / ``Flow.send`` over requests) or ``"async"``
    (``await Flow.start_async`` / ``await Flow.send_async`` over httpx, on one event loop
    kept for the whole test). Close it at the end (the fixture does)."""

    def __init__(self, mode: str) -> None:
        if mode not in DRIVERS:
            raise ValueError(f"mode must be one of {DRIVERS}")
        self.mode = mode
        self._runner = asyncio.Runner() if mode == "async" else None
        self._opened: list[HttpxTransport] = []

    def recorder(self) -> SecretRecorder:
        """A fresh recording transport with its own connections: requests when sync; httpx
        when async, whose blocking side then refuses, so no step falls back to requests."""
        if self.mode == "sync":
            return SecretRecorder(RequestsTransport())
        inner_async = HttpxTransport()
        self._opened.append(inner_async)
        return SecretRecorder(_NoBlocking(), inner_async=inner_async)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._runner is not None, "only the async driver runs coroutines"
        return self._runner.run(coroutine)

    def start(self, flow_class: type[F], **options: Any) -> F:
        if self._runner is None:
            return flow_class.start(**options)
        return self.run(flow_class.start_async(**options))

    def send(self, flow: Flow, event: str, **data: Any) -> FlowView:
        if self._runner is None:
            return flow.send(event, **data)
        return self.run(flow.send_async(event, **data))

    def close(self) -> None:
        if self._runner is None:
            return
        for transport in self._opened:
            self._runner.run(transport.aclose())
        self._runner.close()


SYNC = Driver("sync")


class StatelessClient:
    """Runs each event of one flow in a fresh context: JSON -> restore -> send -> JSON.

    ``settings`` are what the flow class takes besides the snapshot (``config=``,
    ``transport=``, ``clock=``); they are passed again on every restore, never stored.
    ``driver`` sends each event with ``send`` (sync, the default) or ``send_async``.
    """

    def __init__(self, flow: Flow, *, driver: Driver = SYNC, **settings: Any) -> None:
        self.flow_class = type(flow)
        self.driver = driver
        self.settings = settings
        self.saved = flow.snapshot().to_json()
        self.view = flow.view()

    def send(self, event: str, **data: Any) -> FlowView:
        flow = self.restore()
        self.view = self.driver.send(flow, event, **data)
        self.saved = flow.snapshot().to_json()
        return self.view

    def restore(self) -> Flow:
        return self.flow_class.restore(self.saved, **self.settings)


def checked_step(flow: Flow, calls: Callable[[], int], event: str, **data: Any) -> Snapshot | None:
    """Send one event and check the engine's invariants; the new snapshot, or None if refused.

    An error leaves the snapshot as it was, and a refused event calls nothing; a successful
    step adds one to ``version``, except a poll before ``next_poll_at``, which changes nothing
    and calls nothing; once the deadline has passed, the step ends ``Failed(expired)``.
    ``calls`` counts the IdP calls made so far (the emulator's call log).
    """
    before = flow.snapshot()
    made = calls()
    try:
        view = flow.send(event, **data)
    except EventNotAllowed:
        assert flow.snapshot() == before
        assert calls() == made, "a refused event called the IdP"
        return None
    except MfaError:
        assert flow.snapshot() == before, "an error changed the flow"
        return None
    after = flow.snapshot()
    if after.version == before.version:
        assert event == "poll" and after == before, "only an early poll is a no-op"
        assert calls() == made, "an early poll called the IdP"
        assert before.next_poll_at is not None and flow.clock() < before.next_poll_at
        return after
    assert after.version == before.version + 1
    assert view.state == after.state
    if flow.clock() >= before.deadline and not before.is_final:
        assert (after.state, after.failure) == ("Failed", "expired")
    return after


class Driven:
    """A provider client whose calls (exchanges) are run at once over a blocking transport,
    with the sync driver: ``Driven(client, transport).preauth("alice")`` returns the reply.
    Setting an attribute (``client_ip``) sets it on the client."""

    def __init__(self, client: Any, transport: Transport) -> None:
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_transport", transport)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        return lambda *args, **kwargs: drive(method(*args, **kwargs), self._transport)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)
