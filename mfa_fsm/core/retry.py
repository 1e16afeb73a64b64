"""Retries for the calls that are safe to repeat: polls and read-only look-ups.

A call that submits an answer or starts a challenge is never retried: a duplicate could send
a second SMS, start a second push or burn one of the user's attempts. Which calls are which
is decided by the provider clients (see their ``safe`` call sites) and listed in the README.

Retries happen inside one step, within a small time budget, with capped exponential back-off
and full jitter (:class:`~mfa_fsm.core.backoff.Backoff`; AWS Architecture Blog, "Exponential
Backoff And Jitter"), and honour the IdP's ``Retry-After`` when it fits the budget. Past the
budget the last error propagates and the flow is unchanged, as after any failed call.

Provider code never sleeps: :meth:`RetryPolicy.exchange` retries an exchange (see
:mod:`mfa_fsm.core.exchange`) and yields a :class:`~mfa_fsm.core.exchange.Pause` between
tries, which the sync driver waits out with ``time.sleep`` and the async one with
``asyncio.sleep``. :meth:`RetryPolicy.call` retries a plain blocking callable the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import attrs

from mfa_fsm.core.deadline import step_time_left
from mfa_fsm.core.errors import IdpError, MfaError, TransportError
from mfa_fsm.core.exchange import Exchange, pause

if TYPE_CHECKING:
    import random

T = TypeVar("T")


def is_transient(error: MfaError) -> bool:
    """Whether ``error`` may clear by itself: a network failure, HTTP 429 or 5xx."""
    return isinstance(error, TransportError) or (isinstance(error, IdpError) and error.transient)


@attrs.frozen
class RetryPolicy:
    """How often and how long a safe call is retried within one step.

    ``attempts`` counts the first try; ``budget`` caps the total seconds spent waiting;
    ``first_delay`` and ``max_delay`` (seconds) shape the jittered back-off.
    ``RetryPolicy(attempts=1)`` turns retries off.
    """

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    first_delay: float = attrs.field(default=0.2, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    budget: float = attrs.field(default=4.0, validator=attrs.validators.ge(0))

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1): the IdP's
        ``retry_after`` if it gave one, else full jitter below the capped exponential."""
        if retry_after is not None:
            return retry_after
        # Loaded with the first retry, not with every flow's import (issue 12).
        from mfa_fsm.core.backoff import Backoff  # noqa: PLC0415

        return Backoff(self.first_delay, self.max_delay).jittered(attempt, rng)

    def _wait(self, error: MfaError, attempt: int, waited: float, rng: random.Random) -> float:
        """Seconds to wait before retrying after ``error``, or -1: give up (re-raise it)."""
        if not is_transient(error) or attempt >= self.attempts:
            return -1.0
        retry_after = error.retry_after if isinstance(error, IdpError) else None
        wait = self.delay(attempt, rng, retry_after)
        left = step_time_left()
        if waited + wait > self.budget or (left is not None and wait >= left):
            return -1.0
        return wait

    def call(
        self,
        operation: Callable[[], T],
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> T:
        """Run ``operation``, retrying transient failures within the budget.

        Raises the last error when the attempts or the budget run out, when the wait would
        pass the step's deadline (``mfa_fsm.core.deadline.step_deadline``), or at once for
        an error that is not transient.
        """
        if rng is None:
            import random  # noqa: PLC0415 - loaded with the first call, not at import

            rng = random.Random()  # noqa: S311 - jitter, not cryptography
        waited = 0.0
        attempt = 1
        while True:
            try:
                return operation()
            except MfaError as error:
                wait = self._wait(error, attempt, waited, rng)
                if wait < 0:
                    raise
            sleep(wait)
            waited += wait
            attempt += 1

    def exchange(
        self, operation: Callable[[], Exchange[T]], *, rng: random.Random | None = None
    ) -> Exchange[T]:
        """Run the exchange ``operation()`` builds, retrying transient failures within the
        budget: the same decisions as :meth:`call`, but the waits are yielded as
        :class:`~mfa_fsm.core.exchange.Pause` for the driver to perform.

        ``operation`` builds a fresh exchange for each try (a generator runs only once), e.g.
        ``lambda: self._post(path, body)``. Raises as :meth:`call` does.
        """
        if rng is None:
            import random  # noqa: PLC0415 - loaded with the first call, not at import

            rng = random.Random()  # noqa: S311 - jitter, not cryptography
        waited = 0.0
        attempt = 1
        while True:
            try:
                return (yield from operation())
            except MfaError as error:
                wait = self._wait(error, attempt, waited, rng)
                if wait < 0:
                    raise
            yield from pause(wait)
            waited += wait
            attempt += 1


#: The default: three tries within four seconds.
DEFAULT_RETRY = RetryPolicy()
#: No retries at all: every call is made once.
NO_RETRY = RetryPolicy(attempts=1)
