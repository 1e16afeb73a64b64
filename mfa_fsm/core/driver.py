"""A blocking driver for callers that may wait (a CLI, a script): poll until the OOB ends.

Web handlers never use this: they send one ``poll`` per request and let the page wait. Its
back-off after a failed poll is :class:`~mfa_fsm.core.backoff.Backoff` (without jitter: one
caller polling one flow has nobody to spread out from), the curve the retries and the poll
schedule use too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mfa_fsm.core.backoff import Backoff
from mfa_fsm.core.errors import IdpError, TransportError
from mfa_fsm.core.flow import Flow
from mfa_fsm.core.snapshot import FlowView

#: Longest pause between two ticks, so a spinner keeps moving while the IdP is slow.
TICK = 0.2
#: Back-off after a transient failure (seconds), doubled up to the cap.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 16.0
BACKOFF = Backoff(first=FIRST_BACKOFF, cap=MAX_BACKOFF)


def wait_while_pending(
    flow: Flow,
    *,
    on_tick: Callable[[FlowView], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FlowView:
    """Poll ``flow`` while it is ``OobPending``, honouring ``next_poll_at``; return the view.

    Transient failures (network, HTTP 429/5xx) are waited out with capped exponential
    back-off or the IdP's ``Retry-After``, until the flow's deadline ends it as expired.
    Any other error propagates with the flow unchanged. ``on_tick`` sees the view at most
    every :data:`TICK` seconds (for a spinner).
    """
    view = flow.view()
    failures = 0  # transient failures in a row
    resume_at = 0.0
    while view.state == "OobPending":
        now = flow.clock()
        # Never wait past the deadline: the next send then ends the flow as expired.
        due = min(max(view.next_poll_at or now, resume_at), view.deadline)
        if now < due:
            if on_tick is not None:
                on_tick(view)
            sleep(min(TICK, due - now))
            continue
        try:
            view = flow.send("poll")
            failures = 0
        except (TransportError, IdpError) as exc:
            if isinstance(exc, IdpError) and not exc.transient:
                raise
            failures += 1
            wait = exc.retry_after or BACKOFF.ceiling(failures)
            resume_at = flow.clock() + wait
    return view
