"""Flow stores: where a flow's snapshot waits between two requests of a stateless handler.

======================  =========================================  ===================
store                   where the snapshot lives                   extra to install
======================  =========================================  ===================
``MemoryStore``         this process's memory (tests, the demo)    none
``SqlStore``            an SQL table (SQLite, PostgreSQL)          ``mfa_fsm[sql]``
``RedisStore``          one Redis key per flow                     ``mfa_fsm[redis]``
``SealedState``         the client, encrypted (cookie or field)    ``mfa_fsm[sealed]``
======================  =========================================  ===================

Every server-side store implements :class:`FlowStore` (compare-and-set on the snapshot's
version; see ``mfa_fsm.stores.base``). For ``AsyncEngine`` each has an async twin over the
same rules and records (``mfa_fsm.stores.aio``): ``AsyncMemoryStore``, ``AsyncSqlStore``
(``mfa_fsm[async-sql]``), ``AsyncRedisStore``, and ``AsyncStoreLedger``. The optional backends
are imported on first use, so
``import mfa_fsm.stores`` needs none of their libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mfa_fsm.stores.base import (
    DEFAULT_MARGIN,
    NO_VERSION,
    FlowStore,
    RecordStore,
    StoreLedger,
    VersionLedger,
    expires_at,
)
from mfa_fsm.stores.memory import MemoryStore

if TYPE_CHECKING:
    from mfa_fsm.stores.redis import RedisStore
    from mfa_fsm.stores.sealed import SealedState
    from mfa_fsm.stores.sql import SqlStore

__all__ = [
    "DEFAULT_MARGIN",
    "NO_VERSION",
    "FlowStore",
    "MemoryStore",
    "RecordStore",
    "RedisStore",
    "SealedState",
    "SqlStore",
    "StoreLedger",
    "VersionLedger",
    "expires_at",
]

# Names whose modules import an optional dependency: loaded when first asked for.
_LAZY = {
    "RedisStore": "mfa_fsm.stores.redis",
    "SealedState": "mfa_fsm.stores.sealed",
    "SqlStore": "mfa_fsm.stores.sql",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
