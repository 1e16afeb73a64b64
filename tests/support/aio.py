"""Async objects (stores, engines) behind a blocking face, so one test suite runs both kinds.

A :class:`LoopThread` runs one event loop in a thread of its own for a whole test; a
:class:`Blocking` proxy turns each coroutine a method returns into its result, run on that
loop. Calls from several test threads at once run as concurrent tasks on the one loop, which
is how an async server runs concurrent requests: so the store and engine suites, written
blocking, check the async stores' and engines' own concurrency.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from mfa_fsm.engine import AsyncEngine, AsyncSealedEngine
from mfa_fsm.stores.aio import AsyncRecordStore, AsyncStoreLedger

T = TypeVar("T")

#: What a Blocking proxy wraps again when an attribute or a call returns one.
_ASYNC_TYPES = (AsyncEngine, AsyncSealedEngine, AsyncRecordStore, AsyncStoreLedger)


class LoopThread:
    """One event loop, running in a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or its exception)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


class Blocking:
    """``target`` (an async store, ledger or engine) with every coroutine its methods return
    run to its result on ``loop``; attributes that are async objects come wrapped too."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    @property
    def wrapped(self) -> Any:
        """The async object itself."""
        return self._target

    def _wrap(self, value: Any) -> Any:
        return Blocking(value, self._loop) if isinstance(value, _ASYNC_TYPES) else value

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return self._wrap(attribute)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._loop.run(_awaited(result))
            return self._wrap(result)

        return blocking


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
