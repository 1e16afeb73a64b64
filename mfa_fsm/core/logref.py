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

mfa_fsm's modules log through :class:`LazyLogger`, structlog's logger asked for on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

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
    # What secrets.token_bytes(32) returns, without importing secrets (and with it hmac,
    # hashlib and random) when mfa_fsm is imported.
    return os.urandom(32)


_key = _initial_key()


def set_log_key(key: bytes | str | None) -> None:
    """Use ``key`` (at least 16 bytes; a str is UTF-8 encoded) for every later
    :func:`flow_ref`; ``None`` draws a new random per-process key. Raises UsageError for a
    key that is too short, and then keeps the current one."""
    global _key  # noqa: PLW0603 - one process-wide key, read by every flow_ref call
    if key is None:
        _key = os.urandom(32)  # secrets.token_bytes(32)
        return
    _key = _checked(key.encode("utf-8") if isinstance(key, str) else key)


def flow_ref(flow_id: str) -> str:
    """The reference log lines carry for ``flow_id``: 16 hex digits of HMAC-SHA256 under the
    log key. The same id and key always give the same reference."""
    digest = (_hmac_digest or _load_hmac())(
        _key, flow_id.encode("utf-8", "surrogatepass"), "sha256"
    )
    return digest.hex()[:16]


def flow_digest(flow_id: str, purpose: str) -> bytes:
    """HMAC-SHA256 under the log key of ``purpose``, a NUL byte and ``flow_id`` (32 bytes):
    a keyed value per flow for another ``purpose`` than :func:`flow_ref` (the OpenTelemetry
    trace id of :mod:`mfa_fsm.otel`), equally impossible to turn back into the id."""
    message = purpose.encode("utf-8") + b"\0" + flow_id.encode("utf-8", "surrogatepass")
    return (_hmac_digest or _load_hmac())(_key, message, "sha256")


#: hmac.digest, imported with the first reference (hmac loads hashlib and OpenSSL's hashes).
_hmac_digest: Callable[[bytes, bytes, str], bytes] | None = None


def _load_hmac() -> Callable[[bytes, bytes, str], bytes]:
    global _hmac_digest  # noqa: PLW0603 - set once, on first use
    import hmac  # noqa: PLC0415

    _hmac_digest = hmac.digest
    return _hmac_digest


class LazyLogger:
    """``structlog.get_logger(name)``, asked for when the first event is logged.

    Importing structlog loads all of it (its standard-library integration, its console
    renderer, asyncio): about a sixth of what an Entrust-only handler imports, paid on every
    cold start of a serverless handler that may never log. Every attribute (``info``,
    ``warning``, ``bind``...) is structlog's own, so logging behaves exactly as through
    ``structlog.get_logger(name)``, configuration changes included (its lazy proxy reads the
    configuration on each call).
    """

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        logger = self._logger
        if logger is None:
            import structlog  # noqa: PLC0415 - the point of this class

            # Two threads may both get here; either proxy is the same logger.
            logger = self._logger = structlog.get_logger(self._name)
        return getattr(logger, attribute)
