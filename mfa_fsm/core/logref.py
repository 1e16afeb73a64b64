"""Flow ids in log lines: a keyed digest, never the id itself.

A flow id is a bearer handle: whoever holds it can send the flow's next event through
``Engine.send``. Log lines travel further than the store (log shippers, support tickets,
dashboards), so every mfa_fsm log event names a flow by ``flow_ref``, the first 16 hex
digits of HMAC-SHA256(log key, flow id) (RFC 2104), and never by its id.

To find a flow's lines, compute its reference with the same key::

    from mfa_fsm import flow_ref
    flow_ref(flow_id)   # then search the logs for flow_ref="<that>"

The log key is random per process unless the application sets one, so references of one
process cannot be joined with another's (or turned back into ids by anyone without the key).
To correlate across worker processes and restarts, give every process the same key: set the
environment variable ``MFA_FSM_LOG_KEY`` (at least 16 characters, from the application's
secrets) before mfa_fsm is imported, or call :func:`set_log_key` at start-up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from mfa_fsm.core.errors import UsageError

#: The environment variable a shared log key is read from at import time.
LOG_KEY_ENV = "MFA_FSM_LOG_KEY"

_MIN_KEY_BYTES = 16


def _checked(key: bytes) -> bytes:
    if len(key) < _MIN_KEY_BYTES:
        raise UsageError(
            f"the log key must be at least {_MIN_KEY_BYTES} bytes; take one from the "
            "application's secrets (e.g. secrets.token_hex(16))"
        )
    return key


def _initial_key() -> bytes:
    configured = os.environ.get(LOG_KEY_ENV)
    if configured:
        return _checked(configured.encode("utf-8"))
    return secrets.token_bytes(32)


_key = _initial_key()


def set_log_key(key: bytes | str | None) -> None:
    """Use ``key`` (at least 16 bytes; a str is UTF-8 encoded) for every later
    :func:`flow_ref`; ``None`` draws a new random per-process key. Raises UsageError for a
    key that is too short, and then keeps the current one."""
    global _key  # noqa: PLW0603 - one process-wide key, read by every flow_ref call
    if key is None:
        _key = secrets.token_bytes(32)
        return
    _key = _checked(key.encode("utf-8") if isinstance(key, str) else key)


def flow_ref(flow_id: str) -> str:
    """The reference log lines carry for ``flow_id``: 16 hex digits of HMAC-SHA256 under the
    log key. The same id and key always give the same reference."""
    digest = hmac.new(_key, flow_id.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return digest.hexdigest()[:16]
