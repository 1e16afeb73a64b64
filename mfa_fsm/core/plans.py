"""Code written once for blocking and asyncio callers: plans, and the two drivers that run them.

A *plan* is a generator that yields each piece of I/O it needs (:class:`Call`: a method of a
store, a ledger, a flow; :class:`Sleep`: a wait) and is sent its result, or thrown its
exception, exactly as an event handler yields HTTP requests
(:mod:`mfa_fsm.core.exchange`). :func:`run` performs the I/O blocking; :func:`run_async`
awaits it. The engines (``mfa_fsm.engine``), the stores' shared rules
(``mfa_fsm.stores.base``) and sealed state (``mfa_fsm.stores.sealed``) are written as plans,
so that ``Engine`` and ``AsyncEngine``, ``MemoryStore`` and ``AsyncMemoryStore``, differ only
in which driver runs them: the claims, compare-and-set, retries, errors and log lines are
the plan's.

The pattern is httpx's ``Auth.auth_flow`` (one generator, ``sync_auth_flow`` and
``async_auth_flow`` drive it); no library offers it for arbitrary I/O, hence these few lines.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, Protocol, TypeVar

import attrs

from mfa_fsm.core.errors import UsageError

T = TypeVar("T")


class Io(Protocol):
    """One piece of I/O a plan needs: performed blocking, or awaited."""

    def blocking(self) -> Any: ...

    async def awaited(self) -> Any: ...


#: Code written once: yields I/O, is sent its results, returns the call's result.
Plan = Generator[Io, Any, T]


@attrs.frozen
class Call:
    """``function(*args, **kwargs)``: called by :func:`run`, called and awaited by
    :func:`run_async`. Each refuses a function of the other kind with UsageError (a blocking
    store given to an async engine, or the reverse), naming ``kind`` (what was expected)."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)

    def blocking(self) -> Any:
        result = self.function(*self.args, **self.kwargs)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never to be awaited: closed, so no "never awaited" warning
            raise UsageError(
                f"{_name(self.function)}() is asynchronous, and this caller blocks: give an "
                "async store or ledger to the async engines (AsyncEngine, AsyncSealedEngine), "
                "a blocking one to Engine and SealedEngine"
            )
        return result

    async def awaited(self) -> Any:
        result = self.function(*self.args, **self.kwargs)
        if not inspect.isawaitable(result):
            raise UsageError(
                f"{_name(self.function)}() is not asynchronous: the async engines take an "
                "async store or ledger (AsyncMemoryStore, AsyncSqlStore, AsyncRedisStore, "
                "AsyncStoreLedger)"
            )
        return await result


@attrs.frozen
class Sleep:
    """A wait: ``time.sleep``, or ``asyncio.sleep`` (the event loop serves others meanwhile)."""

    seconds: float

    def blocking(self) -> None:
        time.sleep(self.seconds)

    async def awaited(self) -> None:
        import asyncio  # noqa: PLC0415 - only asynchronous callers load asyncio

        await asyncio.sleep(self.seconds)


def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Plan[Any]:
    """The plan of one call: ``result = yield from call(store.load, flow_id)``."""
    return (yield Call(function, args, kwargs))


def run(plan: Plan[T]) -> T:
    """Run ``plan`` to its end, performing its I/O blocking; returns what it returns and
    raises what it raises. An exception of the I/O (any BaseException) is thrown into the
    plan, so its ``finally`` blocks may still do I/O (release a claim) before it goes on."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            io = plan.send(result) if error is None else plan.throw(error)
        except StopIteration as stop:
            done: T = stop.value
            return done
        result = error = None
        try:
            result = io.blocking()
        except BaseException as exc:
            error = exc


async def run_async(plan: Plan[T]) -> T:
    """:func:`run`, awaiting the I/O. A cancelled task's CancelledError is thrown into the
    plan like any exception: its ``finally`` blocks run (a claim is released), then the
    cancellation goes on."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            io = plan.send(result) if error is None else plan.throw(error)
        except StopIteration as stop:
            done: T = stop.value
            return done
        result = error = None
        try:
            result = await io.awaited()
        except BaseException as exc:
            error = exc


def _name(function: Callable[..., Any]) -> str:
    while isinstance(function, functools.partial):
        function = function.func
    owner = getattr(function, "__self__", None)
    name = getattr(function, "__name__", "a function")
    return name if owner is None else f"{type(owner).__name__}.{name}"
