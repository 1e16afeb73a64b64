"""The one back-off policy: how long to wait before trying an IdP again, in seconds.

Three callers wait for an IdP, and all take their waits from here:

* the in-step retries of safe calls (:class:`~mfa_fsm.core.retry.RetryPolicy`): capped
  exponential back-off with **full jitter** (AWS Architecture Blog, "Exponential Backoff And
  Jitter": wait a uniform random time in ``[0, min(cap, first * 2**(n-1))]``), so clients
  that failed together do not retry together;
* the poll schedule of an out-of-band challenge (:class:`~mfa_fsm.core.polling.PollSchedule`):
  the same exponential curve, derived from the length of the **outage** instead of a failure
  counter (a failed event must leave the snapshot unchanged, so nothing can count);
* the terminal driver (:func:`~mfa_fsm.core.driver.wait_while_pending`): the same curve
  without jitter (one caller polling one flow has nobody to spread out from).

An IdP's own ``Retry-After`` (HTTP 429/503; RFC 9110 section 10.2.3) wins over every computed
wait: :func:`honour_retry_after` bounds it to what a step can sensibly wait.

Written here rather than taken from a library (``backoff``, ``tenacity``): those wrap a call
and sleep themselves, while here the wait is a number a driver, a page timer or a snapshot's
``next_poll_at`` acts on; the arithmetic is three lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from mfa_fsm.core.replies import MAX_RETRY_AFTER

if TYPE_CHECKING:
    import random

__all__ = ["MAX_RETRY_AFTER", "Backoff", "honour_retry_after"]


def _not_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@attrs.frozen
class Backoff:
    """Capped exponential back-off: the ``n``-th wait is ``min(cap, first * 2**(n-1))`` s.

    ``first`` is the first wait and ``cap`` the longest, in seconds (both at least 0).
    """

    first: float = attrs.field(validator=_not_negative)
    cap: float = attrs.field(validator=_not_negative)

    def ceiling(self, attempt: int) -> float:
        """The wait after failure number ``attempt`` (counted from 1), without jitter."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        # min() first: 2 ** 1100 would overflow a float long before any cap is reached.
        return min(self.cap, self.first * 2.0 ** min(attempt - 1, 64))

    def jittered(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: a uniform random wait in ``[0, ceiling(attempt)]``."""
        return rng.uniform(0, self.ceiling(attempt))

    def after_outage(self, outage: float) -> float:
        """The wait after a failure ``outage`` seconds into an outage: the outage so far,
        between ``first`` and the larger of ``cap`` and ``first``.

        A caller that waits as told and fails again has an outage of ``first + wait``, so its
        waits run ``first, 2 first, 4 first ...`` up to ``cap``: the exponential curve of
        :meth:`ceiling`, measured in time instead of failures.
        """
        return min(max(outage, self.first), max(self.cap, self.first))


def honour_retry_after(
    retry_after: float, *, floor: float = 0.0, cap: float = MAX_RETRY_AFTER
) -> float:
    """An IdP's ``Retry-After`` (seconds) as the wait to use: at least ``floor`` (a poll
    interval: never poll faster than normal) and at most ``cap``
    (:data:`~mfa_fsm.core.replies.MAX_RETRY_AFTER` by default: an MFA step cannot usefully
    wait longer)."""
    return min(max(retry_after, floor), cap)
