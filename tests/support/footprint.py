"""What stored flows cost, in bytes, as each real server counts them.

Shared by the compact-storage tests and ``bench/store_step.py``. "Used" bytes are what the
server reports for the flows' rows or keys and their index entries, so they do not depend on
how full the last page is and are the same at 10 flows as at 100,000:

* SQLite: ``dbstat`` (the table's and its indexes' pages, less their unused bytes);
* PostgreSQL: ``pgstattuple`` (every tuple of the table, its TOAST table and their indexes,
  plus its 4-byte line pointer);
* Redis: ``MEMORY USAGE`` of every flow key (key, value and Redis's per-key overhead);
* memory: what ``tracemalloc`` saw the store allocate (records, payloads, dict slots);
* sealed: the token's length (what a cookie carries).

"Allocated" bytes are what the server holds in all (SQLite pages, PostgreSQL relation size,
Redis ``used_memory``), meaningful per flow only for many flows.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterable, Sequence

import attrs
import redis
import sqlalchemy as sa

from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.stores.base import RecordStore
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.sql import SqlStore


def secret_bytes(snapshot: Snapshot) -> int:
    """The bytes of secrets a snapshot must hold: IdP tokens, session ids, cookies."""
    total = 0
    for holder in (snapshot.context, snapshot.result):
        if holder is None:
            continue
        for field in attrs.fields(type(holder)):
            if field.repr is not False:  # secrets are exactly the fields kept out of repr
                continue
            value = getattr(holder, field.name)
            if isinstance(value, str):
                total += len(value.encode())
            elif isinstance(value, dict):
                total += sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
    return total


def used_bytes(store: RecordStore) -> int:
    """Bytes the server reports for the store's flows (see the module docs); not for memory."""
    if isinstance(store, SqlStore):
        store.create_schema()
        if store.engine.dialect.name == "sqlite":
            return _sqlite_used(store)
        return _postgres_used(store)
    if isinstance(store, RedisStore):
        client: redis.Redis = store.client
        keys = list(client.scan_iter(match=store.prefix + "*", count=1000))
        total = 0
        for start in range(0, len(keys), 1000):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.memory_usage(key, samples=0)
            total += sum(int(n or 0) for n in pipe.execute())
        return total
    raise TypeError(f"no server-side count for {type(store).__name__}")


def allocated_bytes(store: RecordStore) -> int:
    """Bytes the server holds for the store in all: pages, relation size, used_memory."""
    if isinstance(store, SqlStore):
        store.create_schema()
        with store.engine.connect() as conn:
            if store.engine.dialect.name == "sqlite":
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
                size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
                return int(pages) * int(size)
            query = sa.text("SELECT pg_total_relation_size(:t)")
            return int(conn.execute(query, {"t": store.table.name}).scalar_one())
    if isinstance(store, RedisStore):
        return int(store.client.info("memory")["used_memory"])
    raise TypeError(f"no server-side count for {type(store).__name__}")


def _sqlite_used(store: SqlStore) -> int:
    names = [store.table.name, *(index.name for index in store.table.indexes)]
    with store.engine.connect() as conn:
        # SQLite names the primary key's index itself; dbstat lists it under that name.
        auto = conn.exec_driver_sql(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?",
            (store.table.name,),
        ).scalars()
        names += [name for name in auto if name not in names]
        marks = ",".join("?" * len(names))
        used = conn.exec_driver_sql(
            f"SELECT sum(pgsize - unused) FROM dbstat WHERE name IN ({marks})",  # noqa: S608
            tuple(names),
        ).scalar_one()
    return int(used or 0)


def _postgres_used(store: SqlStore) -> int:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        # The table, its TOAST table (where PostgreSQL moves values of large rows), and
        # every index of either.
        relations = conn.execute(
            sa.text(
                "WITH t AS (SELECT oid, reltoastrelid FROM pg_class "
                "WHERE oid = CAST(:t AS regclass)), "
                "r AS (SELECT oid FROM t UNION ALL SELECT reltoastrelid FROM t "
                "WHERE reltoastrelid <> 0) "
                "SELECT oid::regclass::text FROM r UNION ALL "
                "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN r ON i.indrelid = r.oid"
            ),
            {"t": store.table.name},
        ).scalars()
        total = 0
        for relation in list(relations):
            row = conn.execute(
                sa.text("SELECT tuple_len, tuple_count FROM pgstattuple(:r)"), {"r": relation}
            ).one()
            total += int(row.tuple_len) + 4 * int(row.tuple_count)
    return total


def bulk_create(store: RecordStore, snapshots: Sequence[Snapshot]) -> None:
    """Store many new flows fast: one transaction (SQL) or pipeline (Redis) per thousand,
    with exactly the records ``store.create`` would write."""
    records = [(s.flow_id, store._record_of(s)) for s in snapshots]
    if isinstance(store, SqlStore):
        store.create_schema()
        for start in range(0, len(records), 1000):
            rows = [store._values(key, record) for key, record in records[start : start + 1000]]
            with store.engine.begin() as conn:
                conn.execute(sa.insert(store.table), rows)
        return
    if isinstance(store, RedisStore):
        for start in range(0, len(records), 1000):
            pipe = store.client.pipeline(transaction=False)
            for key, record in records[start : start + 1000]:
                pipe.set(store.prefix + key, store._value(record), px=store._ttl_ms(record))
            pipe.execute()
        return
    for key, record in records:
        store._insert(key, record)


def memory_bytes_per_flow(snapshots: Iterable[Snapshot]) -> float:
    """Bytes a fresh MemoryStore keeps per flow for ``snapshots``: everything ``create``
    allocates and keeps (record, packed payload, dict slots), plus the flow id string the
    store keeps as its key (allocated earlier, with the snapshot)."""
    batch = list(snapshots)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = MemoryStore()
        for snapshot in batch:
            store.create(snapshot)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    keys = sum(sys.getsizeof(snapshot.flow_id) for snapshot in batch)
    return (kept + keys) / len(batch)
