"""Exchanges: IdP conversations written once as generators, run by a sync or an async driver.

A provider's client method, an event handler and a ``start`` path do no I/O themselves. Each
is a generator that *describes* its HTTP exchanges, in the shape of ``httpx.Auth.auth_flow``
(driven there by ``sync_auth_flow`` / ``async_auth_flow``)::

    def query(self, user_id: str) -> Exchange[QueryReply]:
        response = yield from send(HttpRequest("POST", url, path, headers, body))
        return parse_query(decipher(response, path))

    def _on_poll(self, snapshot, now) -> Exchange[Outcome | None]:
        reply = yield from self.client.poll(...)      # a TransportError is raised here
        ...
        return Outcome(OutcomeKind.OOB_PENDING, {...})

It yields an :class:`~mfa_fsm.core.http.HttpRequest` and receives the
:class:`~mfa_fsm.core.http.HttpResponse`, or yields a :class:`Pause` (a retry's back-off) and
receives ``None``, or yields other I/O with ``blocking()`` / ``awaited()`` methods (a
throttle's count, :class:`~mfa_fsm.core.throttle.Count`) and receives its result; its
return value is the result. A driver runs it:

* :func:`drive` over a :class:`~mfa_fsm.core.http.Transport` (``requests``; pauses with
  ``time.sleep``);
* :func:`drive_async` over an :class:`~mfa_fsm.core.http.AsyncTransport` (``httpx``; pauses
  with ``asyncio.sleep``).

Neither knows any provider. When the transport raises (TransportError, an oversized reply's
IdpReplyError, the engine's claim refusal), the driver throws that exception *into* the
generator at the ``yield``, so a handler's ``try``/``except`` around ``yield from`` works as it
would around a blocking call. Each request the transport was asked to send is noted as a
:class:`CallRecord` (path, status, milliseconds) for the step's log line.

Tracing: :func:`mfa_fsm.otel.instrument` sets :data:`tracing`, which then hears of every
flow step (:func:`traced_step`, opened by ``Flow.start`` and ``Flow.send`` and their async
twins) and of every request a driver sent. Left ``None`` (the default), a step pays one
attribute look-up and nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import attrs

from mfa_fsm.core.deadline import step_time_left
from mfa_fsm.core.errors import StoreError, UsageError
from mfa_fsm.core.http import AsyncTransport, HttpRequest, HttpResponse, Transport

if TYPE_CHECKING:
    from mfa_fsm.core.plans import Io  # by its methods: importing plans costs import time

__all__ = [
    "CallRecord",
    "Exchange",
    "Pause",
    "drive",
    "drive_async",
    "pause",
    "returned",
    "send",
    "traced_step",
]

T = TypeVar("T")


@attrs.frozen
class Pause:
    """An instruction to the driver: wait ``seconds`` (wall clock) before resuming.

    A retry of a safe call yields one between its tries, so provider code never sleeps: the
    sync driver waits with ``time.sleep``, the async one with ``asyncio.sleep``. A pause is
    cut short at the step's deadline (:func:`~mfa_fsm.core.deadline.step_deadline`).
    """

    seconds: float


#: A generator that yields requests (or pauses), receives replies (or ``None`` after a
#: pause), and returns a ``T``: one IdP conversation, driven by :func:`drive` or
#: :func:`drive_async`.
Exchange: TypeAlias = Generator["HttpRequest | Pause | Io", Any, T]


@attrs.frozen
class CallRecord:
    """One IdP call made during a step, as the step's log line reports it: the request's
    ``path``, the reply's HTTP ``status`` (``None`` when no reply came) and the call's
    duration in milliseconds (``ms``)."""

    path: str
    status: int | None
    ms: float


if TYPE_CHECKING:  # a Protocol class costs import time; only the type checker needs it

    class Tracing(Protocol):
        """What :data:`tracing` holds: told of each flow step and each IdP request
        (:class:`mfa_fsm.otel.FlowTracing` is the implementation)."""

        def step(
            self, flow: Any, event: str, before: Any
        ) -> contextlib.AbstractContextManager[Callable[[Any], Any]]:
            """A context around one step of ``flow`` (a flow, or for ``start`` its class)
            taking ``event`` (``"start"`` for the opening) from the ``before`` snapshot
            (``None`` for the opening). It yields a function the step passes its result
            through (the opening's flow, or the step's ``(event taken, outcome)``) and ends
            with the step."""

        def call(
            self,
            request: HttpRequest,
            status: int | None,
            error: BaseException | None,
            started: float,
        ) -> None:
            """One request a driver sent: the reply's HTTP ``status`` (``None``: no reply; then
            ``error`` is what the transport raised), ``started`` its ``perf_counter`` start."""


#: The tracing installed by :func:`mfa_fsm.otel.instrument`; ``None``: no tracing (default).
tracing: Tracing | None = None


def _passed(result: T) -> T:
    return result


_UNTRACED = contextlib.nullcontext(_passed)


def traced_step(
    flow: Any, event: str, before: Any = None
) -> contextlib.AbstractContextManager[Callable[[T], T]]:
    """The installed :data:`tracing`'s context around one step (see :class:`Tracing`), or one
    that does nothing (yields a function returning its argument) when none is installed."""
    installed = tracing
    if installed is None:
        return _UNTRACED
    return installed.step(flow, event, before)


def send(request: HttpRequest) -> Exchange[HttpResponse]:
    """Yield ``request`` and return the reply the driver sends back.

    Use as ``response = yield from send(request)``; a transport failure is raised here.
    """
    response = yield request
    if not isinstance(response, HttpResponse):
        raise UsageError(
            f"an exchange's driver answered {request.path} with {type(response).__name__}, "
            "not an HttpResponse; run exchanges with mfa_fsm.core.exchange.drive or drive_async"
        )
    return response


def pause(seconds: float) -> Exchange[None]:
    """Ask the driver to wait ``seconds`` before going on (``yield from pause(0.5)``)."""
    yield Pause(seconds)


def returned(result: Exchange[T] | T) -> Exchange[T]:
    """The value of ``result``: run it if it is an exchange, else take it as it is.

    Lets a handler or hook that does no I/O stay a plain function returning its value.
    """
    if isinstance(result, Generator):
        value: T = yield from result
        return value
    return result


def _pause_length(pause: Pause) -> float:
    """The pause, never past the step's deadline (the next request then fails at once)."""
    seconds = max(float(pause.seconds), 0.0)
    left = step_time_left()
    if left is not None:
        seconds = min(seconds, max(left, 0.0))
    return seconds


def _recorded(
    step: HttpRequest,
    status: int | None,
    error: Exception | None,
    started: float,
    calls: list[CallRecord] | None,
) -> None:
    """Record one IdP call: in ``calls`` (when given) and as a trace span (when tracing)."""
    if calls is not None:
        calls.append(_record(step, status, started))
    if tracing is not None:
        tracing.call(step, status, error, started)


def drive(
    exchange: Exchange[T],
    transport: Transport,
    *,
    calls: list[CallRecord] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``exchange`` to its end over the blocking ``transport`` and return its result.

    Each yielded request is sent with ``transport.send``; each :class:`Pause` is slept with
    ``sleep``. An exception the transport raises is thrown into the generator at its
    ``yield``; one the generator lets out propagates from here. ``calls``, when given, gets a
    :class:`CallRecord` per request the transport took (a request refused before it left,
    with a :class:`~mfa_fsm.core.errors.StoreError` such as the engine's claim, is no call).
    """
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                if error is not None:
                    step = exchange.throw(error)
                    error = None
                else:
                    step = exchange.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply = None
            if isinstance(step, Pause):
                seconds = _pause_length(step)
                if seconds > 0:
                    sleep(seconds)
                continue
            if not isinstance(step, HttpRequest):
                try:
                    reply = _other_io(step).blocking()  # a throttle's count: not an IdP call
                except Exception as exc:
                    error = exc
                continue
            started = time.perf_counter()
            status: int | None = None
            try:
                reply = transport.send(step)
                status = reply.status
            except StoreError as exc:
                error = exc  # refused before it left: not an IdP call
                continue
            except Exception as exc:
                error = exc
            _recorded(step, status, error, started, calls)
    finally:
        exchange.close()


async def drive_async(
    exchange: Exchange[T],
    transport: AsyncTransport,
    *,
    calls: list[CallRecord] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """Run ``exchange`` to its end over ``transport.send_async`` and return its result.

    The asynchronous twin of :func:`drive`, with the same contract: pauses are awaited with
    ``sleep`` (``asyncio.sleep`` by default), transport exceptions are thrown into the
    generator, and ``calls`` gets one :class:`CallRecord` per request the transport took.
    Cancelling the task closes the exchange (its ``finally`` blocks run) and propagates.
    """
    sleep = sleep or _asyncio_sleep()
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                if error is not None:
                    step = exchange.throw(error)
                    error = None
                else:
                    step = exchange.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply = None
            if isinstance(step, Pause):
                seconds = _pause_length(step)
                if seconds > 0:
                    await sleep(seconds)
                continue
            if not isinstance(step, HttpRequest):
                try:
                    reply = await _other_io(step).awaited()
                except Exception as exc:
                    error = exc
                continue
            started = time.perf_counter()
            status: int | None = None
            try:
                reply = await transport.send_async(step)
                status = reply.status
            except StoreError as exc:
                error = exc
                continue
            except Exception as exc:
                error = exc
            _recorded(step, status, error, started, calls)
    finally:
        exchange.close()


def _asyncio_sleep() -> Callable[[float], Awaitable[None]]:
    # Imported here: a program that never drives asynchronously never loads asyncio.
    import asyncio  # noqa: PLC0415

    return asyncio.sleep


def _other_io(step: object) -> Io:
    """``step``, I/O that is neither a request nor a pause (a throttle's count), or
    UsageError for anything else. The error is thrown into the exchange like a transport's."""
    if callable(getattr(step, "blocking", None)) and callable(getattr(step, "awaited", None)):
        return step  # type: ignore[return-value]  # an Io by its methods
    raise UsageError(
        f"an exchange yielded a {type(step).__name__}; it may yield only an HttpRequest "
        "(use send()), a Pause (use pause()) or I/O with blocking() and awaited()"
    )


def _record(request: HttpRequest, status: int | None, started: float) -> CallRecord:
    return CallRecord(request.path, status, round((time.perf_counter() - started) * 1000, 2))
