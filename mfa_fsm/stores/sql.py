"""A flow store in an SQL database through SQLAlchemy Core: SQLite by default, PostgreSQL by URL.

One table, one row per flow::

    flow_id     primary key
    version     the snapshot's step counter; compare-and-set compares on it
    provider    copied from the snapshot, for operators' queries
    state       copied from the snapshot, for operators' queries
    expires_at  epoch seconds (deadline + margin); a row past it is invisible
    payload     the snapshot's JSON

Compare-and-set is one statement, ``UPDATE ... WHERE flow_id = :id AND version = :expected``,
and succeeds iff it changed a row. That is atomic on SQLite (writers are serialised by the
database lock) and on PostgreSQL at READ COMMITTED (a concurrent UPDATE of the same row waits
for the first to commit, then re-checks the WHERE clause against the new row, finds the
version moved, and changes nothing). Expired rows stay in the table, invisible, until
:meth:`SqlStore.purge_expired` deletes them; run it from a periodic job.

The time used for expiry is the store's ``clock`` (this process's), not the database's, so
that every backend expires records the same way and tests can move time.

Requires the ``sql`` extra (``pip install 'mfa_fsm[sql]'``: SQLAlchemy 2 and psycopg 3);
PostgreSQL URLs look like ``postgresql+psycopg://user:password@host/dbname``.
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from mfa_fsm.stores.base import DEFAULT_MARGIN, Clock, Record, RecordStore


class SqlStore(RecordStore):
    """Snapshots in one SQL table; see :class:`~mfa_fsm.stores.base.FlowStore`.

    ``url`` is an SQLAlchemy URL or an ``Engine`` the application already has (which the
    store then never disposes of). The table is created, if missing, on first use. Database
    errors propagate as SQLAlchemy's exceptions; each operation is its own transaction, so a
    failed one leaves the table as it was.
    """

    def __init__(
        self,
        url: str | sa.Engine = "sqlite:///mfa_fsm.db",
        *,
        table: str = "mfa_fsm_flows",
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(margin=margin, clock=clock)
        self._owns_engine = not isinstance(url, sa.Engine)
        self.engine = sa.create_engine(url) if isinstance(url, str) else url
        self.table = sa.Table(
            table,
            sa.MetaData(),
            sa.Column("flow_id", sa.String(255), primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("provider", sa.String(64), nullable=False),
            sa.Column("state", sa.String(64), nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False, index=True),
            sa.Column("payload", sa.Text, nullable=False),
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def close(self) -> None:
        """Close the database connections, if the store created the engine from a URL."""
        if self._owns_engine:
            self.engine.dispose()

    def create_schema(self) -> None:
        """Create the table and its index if they do not exist; done on first use anyway."""
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
            self._schema_ready = True

    def purge_expired(self) -> int:
        """Delete every expired row now; returns how many were deleted."""
        self.create_schema()
        t = self.table
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(t).where(t.c.expires_at <= self._clock()))
            return result.rowcount

    def _values(self, key: str, record: Record) -> dict[str, object]:
        return {
            "flow_id": key,
            "version": record.version,
            "provider": record.provider,
            "state": record.state,
            "expires_at": record.expires_at,
            "payload": record.payload,
        }

    def _insert(self, key: str, record: Record) -> bool:
        self.create_schema()
        t = self.table
        try:
            with self.engine.begin() as conn:
                # An expired row still holds the primary key; clear it in the same transaction
                # so that an expired flow id behaves as absent, like everywhere else.
                conn.execute(
                    sa.delete(t).where(t.c.flow_id == key, t.c.expires_at <= self._clock())
                )
                conn.execute(sa.insert(t).values(self._values(key, record)))
        except IntegrityError:
            return False
        return True

    def _fetch(self, key: str) -> tuple[int, str] | None:
        self.create_schema()
        t = self.table
        query = sa.select(t.c.version, t.c.payload).where(
            t.c.flow_id == key, t.c.expires_at > self._clock()
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else (row.version, row.payload)

    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        self.create_schema()
        t = self.table
        statement = (
            sa.update(t)
            .where(
                t.c.flow_id == key,
                t.c.version == expected_version,
                t.c.expires_at > self._clock(),
            )
            .values(self._values(key, record))
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def _remove(self, key: str) -> None:
        self.create_schema()
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.flow_id == key))
