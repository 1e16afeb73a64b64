"""A flow store in an SQL database through SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

One table, one row per flow::

    flow_id        primary key
    version        the snapshot's step counter; compare-and-set compares on it
    provider       copied from the snapshot, for operators' queries
    state          copied from the snapshot, for operators' queries
    expires_at     epoch seconds (deadline + margin); a row past it is invisible
    payload        the snapshot's JSON in rows written before ``packed``; now always ''
    claim          the id of the request claiming the flow, or NULL
    claimed_until  epoch seconds when that claim ends, or NULL
    packed         the snapshot in compact form (``mfa_fsm.stores.compact``), or NULL

Compare-and-set is one statement, ``UPDATE ... WHERE flow_id = :id AND version = :expected``,
and succeeds iff it changed a row; it also sets ``claim`` and ``claimed_until`` to NULL, which
ends the claim. A claim is one statement too: ``UPDATE ... SET claim = :claim, claimed_until =
:until WHERE flow_id = :id AND version = :v AND (claimed_until IS NULL OR claimed_until <=
:now)``. Both are atomic on SQLite (writers are serialised by the database lock) and on
PostgreSQL at READ COMMITTED (a concurrent UPDATE of the same row waits for the first to
commit, then re-checks the WHERE clause against the new row, finds the version moved or the
claim taken, and changes nothing). Expired rows stay in the table, invisible, until a purge
deletes them: every ``purge_every`` writes the store deletes at most ``purge_limit`` of them
(``DELETE ... WHERE flow_id IN (SELECT flow_id ... WHERE expires_at <= :now LIMIT :n)``; on
PostgreSQL the inner select takes ``FOR UPDATE SKIP LOCKED``, so two workers purging at once
neither wait for each other nor deadlock), and ``mfa-fsm purge URL`` deletes them all from a
periodic job. The outer ``expires_at <= :now`` is checked again on each row, so a row that a
concurrent request has just re-created under the same id is never deleted.

The time used for expiry and claims is the store's ``clock`` (this process's), not the
database's, so that every backend expires records the same way and tests can move time; the
servers' clocks must agree to well within a claim's ttl (NTP does).

A table made by an mfa_fsm from before claims gains the two claim columns on first use, and
one from before compact storage the ``packed`` column (``ALTER TABLE ... ADD COLUMN``, all
nullable, so existing rows stay valid, unclaimed, and readable from ``payload``).

SQLite files are opened in WAL mode with ``synchronous=NORMAL`` (when the store makes the
engine from a URL): readers no longer wait for writers, and a write waits for the disk only
at checkpoints. The price: a committed write can be lost if the machine (not the process)
loses power before the next checkpoint; the database itself stays consistent. For a store of
in-flight logins, which last minutes, that is the right trade; pass your own ``Engine`` to
choose otherwise.

Requires the ``sql`` extra (``pip install 'mfa_fsm[sql]'``: SQLAlchemy 2 and psycopg 3);
PostgreSQL URLs look like ``postgresql+psycopg://user:password@host/dbname``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from mfa_fsm.core.calls import checked
from mfa_fsm.core.errors import UsageError
from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record, RecordStore

#: Columns that tables made by an older mfa_fsm lack; ``create_schema`` adds them.
_ADDED_COLUMNS = ("claim", "claimed_until", "packed")


class SqlStore(RecordStore):
    """Snapshots in one SQL table; see :class:`~mfa_fsm.stores.base.FlowStore`.

    ``url`` is an SQLAlchemy URL or an ``Engine`` the application already has (which the
    store then never disposes of). The table is created, if missing, on first use. Database
    errors raise :class:`~mfa_fsm.core.errors.StoreUnavailable` (never SQLAlchemy's own,
    whose text lists bound parameters: flow ids, snapshots); each operation is its own
    transaction, so a failed one leaves the table as it was.
    """

    backend_errors = (SQLAlchemyError,)

    @checked
    def __init__(
        self,
        url: str | sa.Engine = "sqlite:///mfa_fsm.db",
        *,
        table: str = "mfa_fsm_flows",
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        if not isinstance(url, str | sa.Engine):
            raise UsageError(
                "url must be a database URL (sqlite:///PATH, postgresql+psycopg://...) or "
                "an sqlalchemy Engine"
            )
        super().__init__(margin=margin, clock=clock)
        self._owns_engine = not isinstance(url, sa.Engine)
        self.engine = sa.create_engine(url) if isinstance(url, str) else url
        if self._owns_engine and _is_sqlite_file(self.engine):
            sa.event.listen(self.engine, "connect", _wal_mode)
        self._sql = Statements(table, self.engine.dialect.name)
        self.table = self._sql.table
        # Every operation but create is one statement, atomic on its own, so it runs in
        # autocommit mode: that spares a BEGIN and a COMMIT round trip each on PostgreSQL.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def close(self) -> None:
        """Close the database connections, if the store created the engine from a URL."""
        if self._owns_engine:
            self.engine.dispose()

    def create_schema(self) -> None:
        """Create the table and its index if they do not exist, and add the claim columns to
        a table made before claims existed; done on first use anyway."""
        with self._schema_lock:
            if self._schema_ready:
                return
            try:
                self.table.metadata.create_all(self.engine, checkfirst=True)
            except DBAPIError:
                # Another process may have created the table between our check and our
                # CREATE (PostgreSQL then reports a duplicate); only that case is fine.
                if not sa.inspect(self.engine).has_table(self.table.name):
                    raise
            for name in _ADDED_COLUMNS:
                self._add_column(name)
            self._schema_ready = True

    def _columns(self) -> set[str]:
        return {column["name"] for column in sa.inspect(self.engine).get_columns(self.table.name)}

    def _add_column(self, name: str) -> None:
        if name in self._columns():
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(self._sql.add_column_ddl(name, self.engine.dialect))
        except DBAPIError:
            # As for the table: another process may have added it first.
            if name not in self._columns():
                raise

    def _purge(self, now: float, limit: int | None) -> int:
        return self._rowcount(self._sql.purge(now, limit))

    def _rowcount(self, statement: sa.Executable) -> int:
        """Run one data-changing statement on its own; how many rows it changed."""
        self.create_schema()
        with self._autocommit.connect() as conn:
            return conn.execute(statement).rowcount

    def _values(self, key: str, record: Record) -> dict[str, object]:
        """The row ``record`` is stored as (for bulk loads: the footprint bench and tests)."""
        return Statements.values(key, record)

    def _insert(self, key: str, record: Record) -> bool:
        self.create_schema()
        try:
            with self.engine.begin() as conn:
                for statement in self._sql.insert(key, record, self._clock()):
                    conn.execute(statement)
        except IntegrityError:
            return False
        return True

    def _fetch(self, key: str) -> tuple[int, str | bytes] | None:
        self.create_schema()
        with self._autocommit.connect() as conn:
            return Statements.fetched(conn.execute(self._sql.fetch(key, self._clock())))

    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        return self._rowcount(self._sql.swap(key, expected_version, record, self._clock())) == 1

    def _remove(self, key: str) -> None:
        self._rowcount(self._sql.remove(key))

    def _claim(self, key: str, version: int, claim: str, until: float) -> bool:
        return self._rowcount(self._sql.claim(key, version, claim, until, self._clock())) == 1

    def _release(self, key: str, claim: str) -> None:
        self._rowcount(self._sql.release(key, claim))


class Statements:
    """The table and every statement of the SQL stores, built once for both: ``SqlStore``
    executes them on a blocking engine, ``AsyncSqlStore`` awaits them on an async one. Each
    method returns statements for one primitive (see the module docs for why each is
    atomic); times are epoch seconds from the store's clock."""

    def __init__(self, table: str, dialect: str) -> None:
        self.dialect = dialect
        self.table = sa.Table(
            table,
            sa.MetaData(),
            sa.Column("flow_id", sa.String(255), primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("provider", sa.String(64), nullable=False),
            sa.Column("state", sa.String(64), nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False, index=True),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("claim", sa.String(32), nullable=True),
            sa.Column("claimed_until", sa.Float, nullable=True),
            sa.Column("packed", sa.LargeBinary, nullable=True),
        )

    @staticmethod
    def values(key: str, record: Record) -> dict[str, object]:
        packed = isinstance(record.payload, bytes)
        return {
            "flow_id": key,
            "version": record.version,
            "provider": record.provider,
            "state": record.state,
            "expires_at": record.expires_at,
            "payload": "" if packed else record.payload,
            "claim": None,
            "claimed_until": None,
            "packed": record.payload if packed else None,
        }

    def insert(self, key: str, record: Record, now: float) -> tuple[sa.Executable, ...]:
        """Run in one transaction; IntegrityError when a live row holds ``key``."""
        t = self.table
        # An expired row still holds the primary key; clear it in the same transaction so
        # that an expired flow id behaves as absent, like everywhere else.
        return (
            sa.delete(t).where(t.c.flow_id == key, t.c.expires_at <= now),
            sa.insert(t).values(self.values(key, record)),
        )

    def fetch(self, key: str, now: float) -> sa.Select[Any]:
        t = self.table
        return sa.select(t.c.version, t.c.payload, t.c.packed).where(
            t.c.flow_id == key, t.c.expires_at > now
        )

    @staticmethod
    def fetched(result: sa.Result[Any]) -> tuple[int, str | bytes] | None:
        """What :meth:`fetch` found: ``(version, payload)``, or None."""
        row = result.one_or_none()
        if row is None:
            return None
        return row.version, row.payload if row.packed is None else bytes(row.packed)

    def swap(self, key: str, expected_version: int, record: Record, now: float) -> sa.Update:
        t = self.table
        return (
            sa.update(t)
            .where(t.c.flow_id == key, t.c.version == expected_version, t.c.expires_at > now)
            .values(self.values(key, record))
        )

    def remove(self, key: str) -> sa.Delete:
        return sa.delete(self.table).where(self.table.c.flow_id == key)

    def claim(self, key: str, version: int, claim: str, until: float, now: float) -> sa.Update:
        t = self.table
        return (
            sa.update(t)
            .where(
                t.c.flow_id == key,
                t.c.version == version,
                t.c.expires_at > now,
                sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until <= now),
            )
            .values(claim=claim, claimed_until=until)
        )

    def release(self, key: str, claim: str) -> sa.Update:
        t = self.table
        return (
            sa.update(t)
            .where(t.c.flow_id == key, t.c.claim == claim)
            .values(claim=None, claimed_until=None)
        )

    def purge(self, now: float, limit: int | None) -> sa.Delete:
        t = self.table
        expired = t.c.expires_at <= now
        if limit is None:
            return sa.delete(t).where(expired)
        batch = sa.select(t.c.flow_id).where(expired).limit(limit)
        if self.dialect == "postgresql":
            batch = batch.with_for_update(skip_locked=True)
        return sa.delete(t).where(expired, t.c.flow_id.in_(batch))

    def add_column_ddl(self, name: str, dialect: sa.Dialect) -> sa.TextClause:
        """``ALTER TABLE ... ADD COLUMN`` for a column an older table lacks."""
        column = self.table.c[name]
        quote = dialect.identifier_preparer
        return sa.text(
            f"ALTER TABLE {quote.format_table(self.table)} ADD COLUMN "
            f"{quote.format_column(column)} {column.type.compile(dialect)}"
        )


def _is_sqlite_file(engine: sa.Engine) -> bool:
    url = engine.url
    database = url.database or ""
    memory = database in ("", ":memory:") or "mode=memory" in str(url.query.get("mode", ""))
    return engine.dialect.name == "sqlite" and not memory


def _wal_mode(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL journal and synchronous=NORMAL on every new SQLite connection (see the module
    docs for what this trades). journal_mode persists in the file; synchronous does not."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError:
        # A read-only file keeps its journal mode; its writes fail with their own error.
        pass
    finally:
        cursor.close()
