"""The wall-clock deadline of the step in progress, shared by the transports and retries.

Kept apart from :mod:`mfa_fsm.core.transport` (which imports ``requests``) so that the flow
base and the retry policy can open and read a step's deadline without loading an HTTP
library: an Entrust-only handler that brings its own transport never imports ``requests``.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from mfa_fsm.core.errors import UsageError

#: Wall-clock seconds one step (an event's IdP calls, retries and their waits included) may
#: take. The engines' claim (``DEFAULT_CLAIM_TTL``, 60 s) outlasts it, so a step that hits
#: it still saves nothing over a newer step.
DEFAULT_STEP_TIMEOUT = 30.0

#: The deadline (``time.monotonic()`` seconds) of the step in progress in this context.
_STEP_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "mfa_fsm_step_deadline", default=None
)


@contextlib.contextmanager
def step_deadline(seconds: float) -> Iterator[float]:
    """Bound every IdP exchange made inside the ``with`` block to end within ``seconds`` of
    now (wall clock), in all; yields the deadline (``time.monotonic()`` seconds).

    Nested blocks keep the earliest deadline. :class:`RequestsTransport` and
    ``HttpxTransport`` refuse to start an exchange past it and cut one off when it passes
    (TransportError); ``RetryPolicy`` does not wait past it, nor does a driver's pause.
    ``Flow.send`` and ``send_async`` open one of ``Flow.step_timeout`` when none is open,
    and the engines one of their ``step_timeout`` around every call.
    """
    if not seconds > 0:
        raise UsageError("a step deadline must be a positive number of seconds")
    deadline = time.monotonic() + seconds
    outer = _STEP_DEADLINE.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _STEP_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _STEP_DEADLINE.reset(token)


def step_time_left() -> float | None:
    """Seconds left before the deadline of the step in progress (negative once it has
    passed), or None outside any :func:`step_deadline`."""
    deadline = _STEP_DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def current_step_deadline() -> float | None:
    """The deadline (``time.monotonic()`` seconds) of the step in progress, or None outside
    any :func:`step_deadline`."""
    return _STEP_DEADLINE.get()
