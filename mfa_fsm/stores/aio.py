"""Flow stores for asyncio applications: the async twins of the stores and the replay ledger.

An :class:`~mfa_fsm.engine.AsyncEngine` awaits every store call, so that a request waiting
for the store holds no thread. The stores here keep exactly the rules of the blocking ones
(compare-and-set on ``version``, claims, expiry at deadline + margin, bounded automatic
purges, the same errors with the same messages), because both run the same code:
:class:`~mfa_fsm.stores.base.Records` writes each rule once as a plan
(:mod:`mfa_fsm.core.plans`), which :class:`AsyncRecordStore` awaits over six async
primitives, as :class:`~mfa_fsm.stores.base.RecordStore` runs it over blocking ones.

- :class:`AsyncMemoryStore` (here): this process's memory, for tests and single-process servers;
- :class:`~mfa_fsm.stores.redis_async.AsyncRedisStore`: ``redis.asyncio`` (the ``redis`` extra);
- :class:`~mfa_fsm.stores.sql_async.AsyncSqlStore`: SQLAlchemy's asyncio engine, aiosqlite for
  SQLite files and psycopg's async mode for PostgreSQL (the ``async-sql`` extra);
- :class:`AsyncStoreLedger`: the replay ledger of sealed state, in any of them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Protocol

from mfa_fsm.core.calls import checked
from mfa_fsm.core.plans import run_async
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, LedgerPlans, Record, Records
from mfa_fsm.stores.memory import MemoryStore

__all__ = [
    "AsyncFlowStore",
    "AsyncMemoryStore",
    "AsyncRecordStore",
    "AsyncStoreLedger",
    "AsyncVersionLedger",
]


class AsyncFlowStore(Protocol):
    """:class:`~mfa_fsm.stores.base.FlowStore`, awaited: the same six methods, each a
    coroutine function with the same arguments, result, and errors."""

    async def create(self, snapshot: Snapshot) -> None: ...

    async def load(self, flow_id: str) -> Snapshot: ...

    async def save(self, snapshot: Snapshot, *, expected_version: int) -> None: ...

    async def delete(self, flow_id: str) -> None: ...

    async def claim(self, flow_id: str, version: int, *, ttl: float) -> str: ...

    async def release(self, flow_id: str, claim: str) -> None: ...


class AsyncVersionLedger(Protocol):
    """:class:`~mfa_fsm.stores.base.VersionLedger`, awaited."""

    async def current(self, flow_id: str) -> int | None: ...

    async def advance(
        self, flow_id: str, *, expected_version: int | None, version: int, expires_at: float
    ) -> None: ...

    async def claim(self, flow_id: str, version: int, *, ttl: float) -> str: ...

    async def release(self, flow_id: str, claim: str) -> None: ...


class AsyncRecordStore(Records, ABC):
    """An :class:`AsyncFlowStore` built on six async primitives a backend implements, with
    the contracts of :class:`~mfa_fsm.stores.base.RecordStore`'s (each atomic; a record past
    its ``expires_at`` is absent). Every method raises what the blocking store's does."""

    @checked
    async def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired records now, at most ``limit`` (all when None); how many it deleted.
        See :meth:`RecordStore.purge_expired <mfa_fsm.stores.base.RecordStore.purge_expired>`."""
        return await run_async(self._purge_expired_plan(limit))

    @checked
    async def create(self, snapshot: Snapshot) -> None:
        """Store a new flow; FlowConflict when a live flow has its id (nothing changed)."""
        await run_async(self._create_plan(snapshot))

    @checked
    async def load(self, flow_id: str) -> Snapshot:
        """The newest snapshot of ``flow_id``; FlowNotFound when there is none, SnapshotError
        when the stored record does not parse or holds another flow."""
        return await run_async(self._load_plan(flow_id))

    @checked
    async def save(self, snapshot: Snapshot, *, expected_version: int) -> None:
        """Compare-and-set: replace the stored snapshot iff it is at ``expected_version``
        (UsageError, FlowConflict or FlowNotFound otherwise, nothing changed)."""
        await run_async(self._save_plan(snapshot, expected_version))

    @checked
    async def delete(self, flow_id: str) -> None:
        """Forget ``flow_id``; deleting a flow that is not there is not an error."""
        await run_async(self._delete_plan(flow_id))

    @checked
    async def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        """Reserve ``flow_id`` at ``version`` for ``ttl`` seconds; returns the claim's id.
        FlowBusy, FlowConflict or FlowNotFound as the blocking stores."""
        return await run_async(self._claim_plan(flow_id, version, ttl))

    @checked
    async def release(self, flow_id: str, claim: str) -> None:
        """End the claim ``claim`` early; a no-op if it has already ended."""
        await run_async(self._release_plan(flow_id, claim))

    # -- the primitives a backend implements; each one atomic, each awaited -------------------

    @abstractmethod
    async def _insert(self, key: str, record: Record) -> bool:
        """Store ``record`` unless a live record has ``key``; if one has, change nothing: False."""

    @abstractmethod
    async def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        """The live record's ``(version, payload)``, or None if missing or expired."""

    @abstractmethod
    async def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        """Replace the live record iff its version is ``expected_version``; False otherwise."""

    @abstractmethod
    async def _remove(self, key: str) -> None:
        """Drop the record, if any."""

    @abstractmethod
    async def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        """Claim the live record until ``until`` iff it is at ``version`` and unclaimed."""

    @abstractmethod
    async def _release(self, key: str, claim: str) -> None:
        """Clear the record's claim iff it is ``claim``."""

    @abstractmethod
    async def _purge(self, now: float, limit: int | None) -> int:
        """Delete up to ``limit`` (None: all) records expired at ``now``; never a live one."""


class AsyncMemoryStore(AsyncRecordStore):
    """:class:`~mfa_fsm.stores.memory.MemoryStore` for the async engines: the same dict
    behind the same lock (each primitive is a few dict operations and never waits), so it
    is safe between tasks and threads alike. Lost when the process exits."""

    @checked
    def __init__(self, *, margin: float = DEFAULT_MARGIN, clock: Clock = time.time) -> None:
        super().__init__(margin=margin, clock=clock)
        # Only the memory store's primitives are used; the rules are this store's own.
        self._memory = MemoryStore(margin=margin, clock=clock)

    async def _insert(self, key: str, record: Record) -> bool:
        return self._memory._insert(key, record)

    async def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        return self._memory._fetch(key)

    async def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        return self._memory._swap(key, expected_version, record)

    async def _remove(self, key: str) -> None:
        self._memory._remove(key)

    async def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        return self._memory._claim(key, version, claim, until)

    async def _release(self, key: str, claim: str) -> None:
        self._memory._release(key, claim)

    async def _purge(self, now: float, limit: int | None) -> int:
        return self._memory._purge(now, limit)


class AsyncStoreLedger(LedgerPlans):
    """:class:`~mfa_fsm.stores.base.StoreLedger` in an :class:`AsyncRecordStore`, for an
    ``AsyncSealedEngine``'s ``SealedState(keys, ledger=AsyncStoreLedger(...))``. Give it a
    namespace of its own, as there: ``AsyncStoreLedger(AsyncRedisStore(client,
    prefix="mfa_fsm:ledger:"))``."""

    def __init__(self, records: AsyncRecordStore) -> None:
        super().__init__(records)
        self._store = records

    async def current(self, flow_id: str) -> int | None:
        """The newest recorded version of ``flow_id``, or None if unknown or expired."""
        return await run_async(self._current_plan(flow_id))

    async def advance(
        self, flow_id: str, *, expected_version: int | None, version: int, expires_at: float
    ) -> None:
        """Compare-and-set the recorded version; see ``VersionLedger.advance``."""
        await run_async(self._advance_plan(flow_id, expected_version, version, expires_at))

    async def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        """Reserve ``flow_id`` at ``version`` for ``ttl`` seconds."""
        return await self._store.claim(flow_id, version, ttl=ttl)

    async def release(self, flow_id: str, claim: str) -> None:
        """End the claim ``claim`` early; a no-op if it has already ended."""
        await self._store.release(flow_id, claim)
