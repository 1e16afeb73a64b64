"""The flow store contract, checked the same way against every store on real backends."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import redis
import sqlalchemy as sa

from mfa_fsm import stores
from mfa_fsm.core.errors import (
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    SnapshotError,
    StoreUnavailable,
    UsageError,
)
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.stores import DEFAULT_MARGIN, NO_VERSION, expires_at
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.sql import SqlStore
from tests.support.stores import (
    ALL_STORE_KINDS,
    TEST_MARGIN,
    FakeClock,
    StoreKit,
    advanced,
    claim_in_threads,
    contend_in_process,
    contend_in_threads,
    make_snapshot,
    new_flow_id,
)

#: The contract below runs against every store, blocking and async (the async ones behind
#: tests.support.aio.Blocking, their concurrent calls as tasks on one event loop).
KIT_KINDS = ALL_STORE_KINDS

# -- the contract, once per store ------------------------------------------------------------


def test_round_trip(kit: StoreKit) -> None:
    """A created flow loads back equal, secrets included."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    assert kit.store.load(snapshot.flow_id) == snapshot


def test_create_refuses_an_existing_id(kit: StoreKit) -> None:
    """Creating a live flow id again raises FlowConflict and keeps the stored flow."""
    first = make_snapshot(now=kit.clock(), session="first")
    kit.store.create(first)
    with pytest.raises(FlowConflict) as raised:
        kit.store.create(attrs.evolve(first, context=attrs.evolve(first.context, session="x")))
    assert (raised.value.expected, raised.value.actual) == (NO_VERSION, 0)
    assert kit.store.load(first.flow_id) == first


def test_save_advances_the_flow(kit: StoreKit) -> None:
    """Each save at the loaded version stores the next snapshot."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    for _ in range(3):
        loaded = kit.store.load(snapshot.flow_id)
        kit.store.save(advanced(loaded), expected_version=loaded.version)
    assert kit.store.load(snapshot.flow_id) == attrs.evolve(snapshot, version=3)


def test_stale_expected_version_conflicts_and_changes_nothing(kit: StoreKit) -> None:
    """A save at an outdated version raises FlowConflict(actual=stored) and stores nothing."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    winner = advanced(snapshot, state="OobPending")
    kit.store.save(winner, expected_version=0)
    with pytest.raises(FlowConflict) as raised:
        kit.store.save(advanced(snapshot, state="Failed", failure="cancelled"), expected_version=0)
    assert (raised.value.expected, raised.value.actual) == (0, 1)
    assert kit.store.load(snapshot.flow_id) == winner


@pytest.mark.parametrize(("version", "expected"), [(0, 0), (2, 3)])
def test_version_must_increase(kit: StoreKit, version: int, expected: int) -> None:
    """A snapshot whose version is not above expected_version is refused before any write."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    with pytest.raises(UsageError, match="not above expected_version") as raised:
        kit.store.save(
            attrs.evolve(snapshot, version=version, state="Completed"), expected_version=expected
        )
    assert type(raised.value) is UsageError
    assert kit.store.load(snapshot.flow_id) == snapshot


def test_record_lives_until_deadline_plus_margin(kit: StoreKit) -> None:
    """A flow stays loadable through the margin after its deadline, then is gone."""
    snapshot = make_snapshot(now=kit.clock(), lifetime=0.5)
    kit.store.create(snapshot)
    kit.let_time_pass(1.0)  # past the deadline, within the margin: the last page can render
    assert kit.store.load(snapshot.flow_id) == snapshot
    kit.let_time_pass(1.0)  # past deadline + margin
    with pytest.raises(FlowNotFound):
        kit.store.load(snapshot.flow_id)
    with pytest.raises(FlowNotFound):
        kit.store.save(advanced(snapshot), expected_version=0)


def test_expired_id_can_be_created_again(kit: StoreKit) -> None:
    """After expiry the id is free: create succeeds and holds the new flow."""
    old = make_snapshot(now=kit.clock(), lifetime=0.2)
    kit.store.create(old)
    kit.let_time_pass(0.2 + TEST_MARGIN + 0.3)
    new = make_snapshot(flow_id=old.flow_id, now=kit.clock(), session="new")
    kit.store.create(new)
    assert kit.store.load(old.flow_id) == new


def test_save_moves_expiry_to_the_new_deadline(kit: StoreKit) -> None:
    """The expiry follows the newest snapshot's deadline, not the first one's."""
    snapshot = make_snapshot(now=kit.clock(), lifetime=0.2)
    kit.store.create(snapshot)
    later = advanced(snapshot, deadline=kit.clock() + 300)
    kit.store.save(later, expected_version=0)
    kit.let_time_pass(0.2 + TEST_MARGIN + 0.3)
    assert kit.store.load(snapshot.flow_id) == later


def test_delete_is_idempotent(kit: StoreKit) -> None:
    """A deleted flow is not found; deleting again (or an unknown id) is no error."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    kit.store.delete(snapshot.flow_id)
    with pytest.raises(FlowNotFound):
        kit.store.load(snapshot.flow_id)
    kit.store.delete(snapshot.flow_id)
    kit.store.delete(new_flow_id())


def test_missing_id(kit: StoreKit) -> None:
    """Loading or saving a flow that was never created raises FlowNotFound, which names the
    flow by its log reference, never by its id (a bearer handle)."""
    snapshot = make_snapshot(now=kit.clock())
    with pytest.raises(FlowNotFound, match=flow_ref(snapshot.flow_id)) as info:
        kit.store.load(snapshot.flow_id)
    assert snapshot.flow_id not in str(info.value)
    assert info.value.flow_id == snapshot.flow_id
    with pytest.raises(FlowNotFound):
        kit.store.save(advanced(snapshot), expected_version=0)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "redis"])
def test_two_stores_on_one_backend_see_the_same_flows(
    make_kit: Callable[[str], StoreKit], kind: str
) -> None:
    """A second store object (another worker's) sees and respects what the first saved."""
    kit = make_kit(kind)
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    other = kit.make()
    other.save(advanced(snapshot), expected_version=0)
    assert kit.store.load(snapshot.flow_id).version == 1
    with pytest.raises(FlowConflict):
        kit.store.save(advanced(snapshot), expected_version=0)


# -- claims: one request at a time reaches the IdP ---------------------------------------------


def test_claim_holds_off_a_second_claim_until_released(kit: StoreKit) -> None:
    """While a claim is live a second claim at that version is FlowBusy; release ends it."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    claim = kit.store.claim(snapshot.flow_id, 0, ttl=30)
    with pytest.raises(FlowBusy) as raised:
        kit.store.claim(snapshot.flow_id, 0, ttl=30)
    assert (raised.value.expected, raised.value.actual) == (0, 0)
    assert isinstance(raised.value, FlowConflict)
    kit.store.release(snapshot.flow_id, claim)
    kit.store.claim(snapshot.flow_id, 0, ttl=30)


def test_claimed_flow_still_loads_and_saving_ends_the_claim(kit: StoreKit) -> None:
    """A claim hides nothing from load; the save at its version ends it."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    kit.store.claim(snapshot.flow_id, 0, ttl=30)
    assert kit.store.load(snapshot.flow_id) == snapshot
    kit.store.save(advanced(snapshot), expected_version=0)
    assert kit.store.load(snapshot.flow_id) == advanced(snapshot)
    kit.store.claim(snapshot.flow_id, 1, ttl=30)


def test_claim_at_a_stale_version_conflicts(kit: StoreKit) -> None:
    """Claiming a version the flow has left is FlowConflict with the stored version."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    kit.store.save(advanced(snapshot), expected_version=0)
    with pytest.raises(FlowConflict) as raised:
        kit.store.claim(snapshot.flow_id, 0, ttl=30)
    assert type(raised.value) is FlowConflict
    assert (raised.value.expected, raised.value.actual) == (0, 1)


def test_claim_of_a_missing_flow(kit: StoreKit) -> None:
    """Claiming a flow that is not stored is FlowNotFound; releasing it is no error."""
    flow_id = new_flow_id()
    with pytest.raises(FlowNotFound):
        kit.store.claim(flow_id, 0, ttl=30)
    kit.store.release(flow_id, "0123456789abcdef")


def test_claim_expires_and_a_stale_release_spares_the_next_claim(kit: StoreKit) -> None:
    """A claim ends after its ttl; its late release leaves the claim taken since untouched."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    stale = kit.store.claim(snapshot.flow_id, 0, ttl=0.5)
    kit.let_time_pass(0.6)
    current = kit.store.claim(snapshot.flow_id, 0, ttl=30)
    kit.store.release(snapshot.flow_id, stale)
    with pytest.raises(FlowBusy):
        kit.store.claim(snapshot.flow_id, 0, ttl=30)
    kit.store.release(snapshot.flow_id, current)
    kit.store.claim(snapshot.flow_id, 0, ttl=30)


def test_claims_change_neither_payload_nor_expiry(kit: StoreKit) -> None:
    """Claiming and releasing keep the snapshot and its expiry as they were."""
    snapshot = make_snapshot(now=kit.clock(), lifetime=0.5)
    kit.store.create(snapshot)
    kit.store.release(snapshot.flow_id, kit.store.claim(snapshot.flow_id, 0, ttl=30))
    kit.store.claim(snapshot.flow_id, 0, ttl=30)
    assert kit.store.load(snapshot.flow_id) == snapshot
    kit.let_time_pass(0.5 + TEST_MARGIN + 0.3)
    with pytest.raises(FlowNotFound):
        kit.store.load(snapshot.flow_id)


@pytest.mark.parametrize("ttl", [0, -1.0])
def test_claim_ttl_must_be_positive(kit: StoreKit, ttl: float) -> None:
    """A claim that would end at once is a usage error."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    with pytest.raises(UsageError, match="ttl"):
        kit.store.claim(snapshot.flow_id, 0, ttl=ttl)


def test_concurrent_claims_have_one_winner(kit: StoreKit) -> None:
    """Threads claiming one version at the same instant: exactly one gets the claim."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    outcomes = claim_in_threads(kit.store, snapshot.flow_id, WORKERS)
    assert sorted(outcomes) == ["busy"] * (WORKERS - 1) + ["claimed"]


# -- concurrency: real threads and processes against real servers ----------------------------

WORKERS = 6
ROUNDS = 5


def _check_one_winner_per_version(outcomes: list[tuple[int, bool]], final: int) -> None:
    wins = Counter(version for version, won in outcomes if won)
    tries = Counter(version for version, _ in outcomes)
    assert wins == Counter(range(1, ROUNDS + 1)), "each version must be won exactly once"
    assert tries == Counter(dict.fromkeys(range(1, ROUNDS + 1), WORKERS))
    assert final == sum(wins.values()) == ROUNDS


def test_concurrent_threads_one_winner_per_version(kit: StoreKit) -> None:
    """Threads saving the same version at once: one wins per version, the rest get FlowConflict."""
    snapshot = make_snapshot(now=kit.clock())
    kit.store.create(snapshot)
    outcomes = contend_in_threads(kit.store, snapshot.flow_id, WORKERS, ROUNDS)
    _check_one_winner_per_version(outcomes, kit.store.load(snapshot.flow_id).version)


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_concurrent_processes_one_winner_per_version(
    make_kit: Callable[[str], StoreKit], kind: str
) -> None:
    """Spawned processes with their own connections: one winner per version, others conflict."""
    kit = make_kit(kind)
    snapshot = make_snapshot()
    kit.store.create(snapshot)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results: Any = context.Queue()
    workers = [
        context.Process(
            target=contend_in_process,
            kwargs={
                "kind": kind,
                "target": kit.target,
                "flow_id": snapshot.flow_id,
                "rounds": ROUNDS,
                "barrier": barrier,
                "results": results,
            },
        )
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [status for status, _ in reports] == ["ok"] * WORKERS, reports
    outcomes = [outcome for _, worker_outcomes in reports for outcome in worker_outcomes]
    _check_one_winner_per_version(outcomes, kit.store.load(snapshot.flow_id).version)


# -- what each backend adds ------------------------------------------------------------------


def test_expires_at_defaults_to_a_300_second_margin() -> None:
    """A record outlives its snapshot's deadline by DEFAULT_MARGIN (300 s) unless told."""
    snapshot = make_snapshot(now=1000.0)
    assert DEFAULT_MARGIN == 300.0
    assert expires_at(snapshot) == snapshot.deadline + 300.0
    assert expires_at(snapshot, 5) == snapshot.deadline + 5
    assert MemoryStore().margin == DEFAULT_MARGIN


def test_negative_margin_is_refused() -> None:
    """A negative margin is a configuration error."""
    with pytest.raises(UsageError, match="margin"):
        MemoryStore(margin=-1)


def test_memory_store_sweeps_expired_records() -> None:
    """Abandoned flows are dropped by the automatic purge and by purge_expired."""
    clock = FakeClock()
    store = MemoryStore(margin=0, clock=clock)
    stale = [make_snapshot(now=clock(), lifetime=1) for _ in range(3)]
    for snapshot in stale:
        store.create(snapshot)
    clock.advance(2)
    for _ in range(store.purge_every - 3):  # the purge_every-th write purges
        store.create(make_snapshot(now=clock()))
    assert len(store._records) == store.purge_every - 3
    store.create(make_snapshot(now=clock(), lifetime=1))
    store.create(make_snapshot(now=clock(), lifetime=1))
    clock.advance(2)
    assert store.purge_expired(limit=1) == 1
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    with pytest.raises(UsageError, match="limit"):
        store.purge_expired(limit=0)


def test_sql_store_purges_expired_rows_and_fills_columns(tmp_path: Any) -> None:
    """Expired rows stay invisible until purge_expired deletes them; provider/state are kept."""
    clock = FakeClock()
    store = SqlStore(f"sqlite:///{tmp_path / 'f.db'}", table="flows", margin=0, clock=clock)
    short, long = make_snapshot(now=clock(), lifetime=1), make_snapshot(now=clock())
    store.create(short)
    store.create(long)
    store.save(advanced(long, state="OobPending"), expected_version=0)
    clock.advance(2)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(store.table.c.flow_id, store.table.c.state)).all()
    assert sorted(rows) == sorted([(short.flow_id, short.state), (long.flow_id, "OobPending")])
    assert store.purge_expired() == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(store.table.c.provider)).scalars().all() == ["teststore"]
    store.close()


def test_sql_store_leaves_a_given_engine_open(tmp_path: Any) -> None:
    """close() disposes only an engine the store made itself; the table is made on first use."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'f.db'}")
    store = SqlStore(engine)
    assert not sa.inspect(engine).has_table("mfa_fsm_flows")
    store.create(make_snapshot())
    assert sa.inspect(engine).has_table("mfa_fsm_flows")
    store.close()
    with engine.connect() as conn:  # still usable
        assert conn.execute(sa.text("select count(*) from mfa_fsm_flows")).scalar() == 1
    engine.dispose()


def test_sql_schema_creation_tolerates_a_concurrent_creator(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another process creates the table between our check and our CREATE, all is well."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store, other = SqlStore(url), SqlStore(url)
    create_all = store.table.metadata.create_all

    def lose_the_race(bind: sa.Engine, checkfirst: bool = True) -> None:
        other.create_schema()  # the other process wins...
        create_all(bind, checkfirst=False)  # ...so our CREATE TABLE fails for real

    monkeypatch.setattr(store.table.metadata, "create_all", lose_the_race)
    snapshot = make_snapshot()
    store.create(snapshot)
    assert other.load(snapshot.flow_id) == snapshot
    store.close()
    other.close()


def test_sql_errors_are_store_unavailable_and_change_nothing(tmp_path: Any) -> None:
    """A database error (here: a read-only file) is raised as StoreUnavailable, naming the
    driver's exception class but not repeating its text (which lists bound parameters)."""
    path = tmp_path / "ro.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table other (x)")
    conn.close()
    store = SqlStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StoreUnavailable, match="OperationalError") as caught:
        store.create(make_snapshot())
    assert "readonly" not in str(caught.value)
    assert caught.value.__suppress_context__
    assert not sa.inspect(store.engine).has_table("mfa_fsm_flows")
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "sqlite-async", "postgresql-async"])
def test_sql_table_of_the_first_release_gains_the_claim_columns(
    make_kit: Callable[[str], StoreKit], kind: str
) -> None:
    """A table made before claims existed gets the claim columns (by SqlStore and by
    AsyncSqlStore); its rows load and claim."""
    kit = make_kit(kind)
    table = f"flows_{new_flow_id().replace('-', '_')}"
    old = sa.Table(
        table,
        sa.MetaData(),
        sa.Column("flow_id", sa.String(255), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
        sa.Column("payload", sa.Text, nullable=False),
    )
    snapshot = make_snapshot(now=kit.clock())
    engine = sa.create_engine(kit.target)
    old.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(old).values(
                flow_id=snapshot.flow_id,
                version=0,
                provider=snapshot.provider,
                state=snapshot.state,
                expires_at=kit.clock() + 60,
                payload=snapshot.to_json(),
            )
        )
    first, second = kit.make(table=table), kit.make(table=table)
    assert first.load(snapshot.flow_id) == snapshot
    columns = {column["name"] for column in sa.inspect(engine).get_columns(table)}
    assert {"claim", "claimed_until"} <= columns
    other: Any = second  # a SqlStore, or an AsyncSqlStore's blocking face
    other.create_schema()  # a second process finds the columns already there
    first.claim(snapshot.flow_id, 0, ttl=30)
    with pytest.raises(FlowBusy):
        second.claim(snapshot.flow_id, 0, ttl=30)
    second.save(advanced(snapshot), expected_version=0)
    assert first.load(snapshot.flow_id) == advanced(snapshot)
    engine.dispose()


def test_sql_column_race_is_tolerated(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """If another process adds a claim column between our look and our ALTER, all is well."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store, other = SqlStore(url), SqlStore(url)
    other.create_schema()
    present = store._columns()
    # Our first look misses the column, so our ALTER runs and fails for real (duplicate
    # column); the second look, after the failure, finds it.
    looks = iter([present - {"claim"}, present])
    monkeypatch.setattr(store, "_columns", lambda: next(looks))
    store._add_column("claim")
    assert next(looks, None) is None
    store.close()
    other.close()


def test_redis_ttl_follows_deadline_plus_margin(make_kit: Callable[[str], StoreKit]) -> None:
    """The flow is one key whose TTL ends at deadline + margin, set again by each save."""
    kit = make_kit("redis")
    store = kit.make(margin=30, prefix=f"ttl-test:{new_flow_id()}:")
    assert isinstance(store, RedisStore)
    snapshot = make_snapshot(now=kit.clock(), lifetime=60)
    store.create(snapshot)
    key = store.prefix + snapshot.flow_id
    assert 89_000 < store.client.pttl(key) <= 90_000
    store.save(advanced(snapshot, deadline=kit.clock() + 600), expected_version=0)
    assert 629_000 < store.client.pttl(key) <= 630_000
    store.claim(snapshot.flow_id, 1, ttl=30)
    assert 628_000 < store.client.pttl(key) <= 630_000
    assert store.client.keys(store.prefix + "*") == [key.encode()]


def test_redis_save_survives_a_script_cache_flush(make_kit: Callable[[str], StoreKit]) -> None:
    """After SCRIPT FLUSH (a restart, a failover) save falls back from EVALSHA to EVAL."""
    kit = make_kit("redis")
    store = kit.store
    assert isinstance(store, RedisStore)
    snapshot = make_snapshot(now=kit.clock())
    store.create(snapshot)
    store.client.script_flush()
    store.save(advanced(snapshot), expected_version=0)
    assert store.load(snapshot.flow_id) == advanced(snapshot)


def test_redis_store_refuses_foreign_values(make_kit: Callable[[str], StoreKit]) -> None:
    """A key under the prefix that another application wrote raises SnapshotError, not junk."""
    kit = make_kit("redis")
    store = kit.store
    assert isinstance(store, RedisStore)
    flow_id = new_flow_id()
    store.client.set(store.prefix + flow_id, "not a record", px=60_000)
    with pytest.raises(SnapshotError, match="another application"):
        store.load(flow_id)


def test_redis_store_works_with_decoded_responses(make_kit: Callable[[str], StoreKit]) -> None:
    """A client made with decode_responses=True works the same."""
    kit = make_kit("redis")
    store = RedisStore(redis.Redis.from_url(kit.target, decode_responses=True))
    snapshot = make_snapshot()
    store.create(snapshot)
    store.save(advanced(snapshot), expected_version=0)
    assert store.load(snapshot.flow_id) == advanced(snapshot)
    store.client.close()


def test_optional_stores_load_lazily() -> None:
    """mfa_fsm.stores hands out the optional stores by name and refuses unknown names."""
    assert stores.SqlStore is SqlStore
    assert stores.RedisStore is RedisStore
    assert stores.SealedState.__name__ == "SealedState"
    with pytest.raises(AttributeError, match="NoSuchStore"):
        _ = stores.NoSuchStore


def test_memory_store_needs_no_optional_dependency() -> None:
    """mfa_fsm.stores and MemoryStore work without sqlalchemy, redis or cryptography installed."""
    code = (
        "import sys\n"
        "for name in ('sqlalchemy', 'redis', 'cryptography', 'psycopg'):\n"
        "    sys.modules[name] = None\n"
        "from mfa_fsm.stores import MemoryStore\n"
        "import mfa_fsm.stores.memory\n"
        "MemoryStore()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sqlite_files_run_in_wal_mode(tmp_path: Any) -> None:
    """A store that opens an SQLite file sets WAL and synchronous=NORMAL on its connections;
    an engine the application passes in is left as the application made it."""
    store = SqlStore(f"sqlite:///{tmp_path / 'wal.db'}")
    store.create(make_snapshot())
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
    store.close()
    own = sa.create_engine(f"sqlite:///{tmp_path / 'own.db'}")
    theirs = SqlStore(own)
    theirs.create(make_snapshot())
    with own.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "delete"
    own.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "redis"])
def test_blocking_and_async_stores_share_one_backend(
    make_kit: Callable[[str], StoreKit], kind: str
) -> None:
    """A blocking and an async store on one database or Redis see the same flows, versions
    and claims: workers of both kinds can serve one application during a migration."""
    blocking, awaited = make_kit(kind), make_kit(f"{kind}-async")
    snapshot = make_snapshot(now=blocking.clock())
    blocking.store.create(snapshot)
    assert awaited.store.load(snapshot.flow_id) == snapshot
    claim = awaited.store.claim(snapshot.flow_id, 0, ttl=30)
    with pytest.raises(FlowBusy):
        blocking.store.claim(snapshot.flow_id, 0, ttl=30)
    awaited.store.save(advanced(snapshot), expected_version=0)  # ends the claim
    assert claim and blocking.store.load(snapshot.flow_id) == advanced(snapshot)
    with pytest.raises(FlowConflict):
        awaited.store.save(advanced(snapshot), expected_version=0)
    blocking.store.claim(snapshot.flow_id, 1, ttl=30)
