"""When to poll an out-of-band challenge next: a pure schedule, shared by every provider.

Handlers never sleep. A ``poll`` event that finds the IdP still waiting sets the snapshot's
``next_poll_at`` from :meth:`PollSchedule.next_poll`; a poll that fails transiently (HTTP 429,
5xx, a dropped connection) changes nothing, and the raised error's ``retry_after`` comes from
:meth:`PollSchedule.retry_after`, so the caller (a page's timer, a CLI loop) knows how long to
wait before the next try.

The back-off needs no failure counter in the snapshot, which a failed event must leave
unchanged: it is measured from the *outage*, the time since the IdP last answered. Each wait
equals the outage so far, so a caller that follows the waits retries after 1, 2, 4, 8 ... s,
capped at ``max_backoff``; that is exponential back-off, derived from time alone. An IdP's own
``Retry-After`` (429/503) wins over the computed wait, as RFC 8628 and RFC 9110 ask. Both
rules are :mod:`mfa_fsm.core.backoff`'s (``Backoff.after_outage``, ``honour_retry_after``),
shared with the in-step retries and the terminal driver.
"""

from __future__ import annotations

import attrs


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@attrs.frozen
class PollSchedule:
    """How often to poll, and how far to back off when polling fails.

    ``interval`` is the IdP's advice (CyberArk: once a second); ``max_backoff`` caps the wait
    after repeated transient failures.
    """

    interval: float = attrs.field(default=1.0, validator=_positive)
    max_backoff: float = attrs.field(default=60.0, validator=_positive)

    def next_poll(self, now: float) -> float:
        """When to poll again after the IdP answered "still pending" at ``now``."""
        return now + self.interval

    def retry_after(self, *, outage: float, retry_after: float | None = None) -> float:
        """Seconds to wait after a transient failure, ``outage`` seconds after the last answer.

        ``retry_after`` is what the IdP asked for (``Retry-After``), if anything; it is
        honoured up to :data:`~mfa_fsm.core.backoff.MAX_RETRY_AFTER`, and never below the
        normal interval. Otherwise the wait doubles the outage, between ``interval`` and
        ``max_backoff``.
        """
        # Loaded with the first failure, not with every flow's import (issue 12).
        from mfa_fsm.core.backoff import Backoff, honour_retry_after  # noqa: PLC0415

        if retry_after is not None:
            return honour_retry_after(retry_after, floor=self.interval)
        return Backoff(first=self.interval, cap=self.max_backoff).after_outage(outage)
