"""A blocking driver for callers that may wait (a CLI, a script): poll until the OOB ends.

Web handlers never use this: they send one ``poll`` per request and let the page wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mfa_fsm.core.errors import IdpError, TransportError
from mfa_fsm.core.flow import Flow
from mfa_fsm.core.snapshot import FlowView

#: Longest pause between two ticks, so a spinner keeps moving while the IdP is slow.
TICK = 0.2
#: Back-off after a transient failure, doubled up to the cap.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 16.0


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
    backoff = FIRST_BACKOFF
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
            backoff = FIRST_BACKOFF
        except (TransportError, IdpError) as exc:
            if isinstance(exc, IdpError) and not exc.transient:
                raise
            wait = exc.retry_after or backoff
            resume_at = flow.clock() + wait
            backoff = min(backoff * 2, MAX_BACKOFF)
    return view
