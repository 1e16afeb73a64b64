"""A flow store in an SQL database for asyncio applications: SQLAlchemy's asyncio engine.

The same table, rows and statements as :class:`~mfa_fsm.stores.sql.SqlStore` (both take them
from :class:`~mfa_fsm.stores.sql.Statements`; see ``mfa_fsm.stores.sql`` for why each is
atomic), so blocking and async workers can share one database. The URL picks the async
driver, as SQLAlchemy's asyncio extension documents:

- ``sqlite+aiosqlite:///flows.db`` (aiosqlite; the default): the file opened in WAL mode, as
  by ``SqlStore``;
- ``postgresql+psycopg://user:password@host/dbname`` (psycopg 3 in its async mode, which
  SQLAlchemy selects under ``create_async_engine``) or ``postgresql+asyncpg://...``.

Requires the ``async-sql`` extra (``pip install 'mfa_fsm[async-sql]'``: SQLAlchemy's asyncio
support, aiosqlite and psycopg; asyncpg on your side if you prefer it). Database errors raise
:class:`~mfa_fsm.core.errors.StoreUnavailable`, without SQLAlchemy's text (it quotes bound
parameters).
"""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import UsageError
from mfa_fsm.stores.aio import AsyncRecordStore
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record
from mfa_fsm.stores.sql import _ADDED_COLUMNS, Statements, _is_sqlite_file, _wal_mode


class AsyncSqlStore(AsyncRecordStore):
    """Snapshots in one SQL table, awaited: an :class:`~mfa_fsm.stores.aio.AsyncFlowStore`.

    ``url`` is an async SQLAlchemy URL (see the module docs) or an
    ``sqlalchemy.ext.asyncio.AsyncEngine`` the application already has (which the store then
    never disposes of). The table is created, if missing, on first use; ``table``,
    ``margin`` and ``clock`` are as for :class:`~mfa_fsm.stores.sql.SqlStore`. Close a store
    made from a URL with ``await store.close()``.
    """

    backend_errors = (SQLAlchemyError,)

    @checked
    def __init__(
        self,
        url: str | AsyncEngine = "sqlite+aiosqlite:///mfa_fsm.db",
        *,
        table: str = "mfa_fsm_flows",
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(url, str | AsyncEngine):
            raise UsageError(
                "url must be an async database URL (sqlite+aiosqlite:///PATH, "
                "postgresql+psycopg://...) or an sqlalchemy.ext.asyncio.AsyncEngine"
            )
        super().__init__(margin=margin, clock=clock)
        self._owns_engine = not isinstance(url, AsyncEngine)
        try:
            self.engine = create_async_engine(url) if isinstance(url, str) else url
        except SQLAlchemyError as exc:  # e.g. a URL of a driver that is not async
            raise UsageError(
                f"the URL names no async driver SQLAlchemy can use ({type(exc).__name__}): "
                "use sqlite+aiosqlite:///PATH or postgresql+psycopg://..."
            ) from None
        if self._owns_engine and _is_sqlite_file(self.engine.sync_engine):
            sa.event.listen(self.engine.sync_engine, "connect", _wal_mode)
        self._sql = Statements(table, self.engine.dialect.name)
        self.table = self._sql.table
        # One statement per operation but create, so autocommit, as SqlStore.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the database connections, if the store created the engine from a URL."""
        if self._owns_engine:
            await self.engine.dispose()

    async def create_schema(self) -> None:
        """Create the table if missing and add the columns an older table lacks, as
        :meth:`SqlStore.create_schema <mfa_fsm.stores.sql.SqlStore.create_schema>`; done on
        first use anyway."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            try:
                async with self.engine.begin() as conn:
                    await conn.run_sync(self.table.metadata.create_all, checkfirst=True)
            except DBAPIError:
                # Another process may have created it between the check and the CREATE.
                if not await self._has_table():
                    raise
            for name in _ADDED_COLUMNS:
                await self._add_column(name)
            self._schema_ready = True

    async def _has_table(self) -> bool:
        async with self.engine.connect() as conn:
            found: bool = await conn.run_sync(
                lambda sync: sa.inspect(sync).has_table(self.table.name)
            )
            return found

    async def _columns(self) -> set[str]:
        async with self.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns(self.table.name)}
            )

    async def _add_column(self, name: str) -> None:
        if name in await self._columns():
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(self._sql.add_column_ddl(name, self.engine.dialect))
        except DBAPIError:
            if name not in await self._columns():  # another process added it first
                raise

    async def _rowcount(self, statement: sa.Executable) -> int:
        await self.create_schema()
        async with self._autocommit.connect() as conn:
            result = await conn.execute(statement)
            return result.rowcount

    async def _insert(self, key: str, record: Record) -> bool:
        await self.create_schema()
        try:
            async with self.engine.begin() as conn:
                for statement in self._sql.insert(key, record, self._clock()):
                    await conn.execute(statement)
        except IntegrityError:
            return False
        return True

    async def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        await self.create_schema()
        async with self._autocommit.connect() as conn:
            return Statements.fetched(await conn.execute(self._sql.fetch(key, self._clock())))

    async def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        statement = self._sql.swap(key, expected_version, record, self._clock())
        return await self._rowcount(statement) == 1

    async def _remove(self, key: str) -> None:
        await self._rowcount(self._sql.remove(key))

    async def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        statement = self._sql.claim(key, version, claim, until, self._clock())
        return await self._rowcount(statement) == 1

    async def _release(self, key: str, claim: str) -> None:
        await self._rowcount(self._sql.release(key, claim))

    async def _purge(self, now: float, limit: int | None) -> int:
        return await self._rowcount(self._sql.purge(now, limit))
