"""Nothing left at rest: the final token leaves every store at hand-off, expired flows are
purged without anyone calling purge_expired, and `mfa-fsm purge` does it from cron.

Each store is read raw (the dict, the table's rows, the Redis keys), not through load():
what matters is what an attacker with a copy of the database would find.
"""

from __future__ import annotations

import io
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from mfa_fsm import (
    Engine,
    EntrustConfig,
    FlowConflict,
    FlowNotFound,
    ResultUnavailable,
    SealedEngine,
    SealedStateError,
    StoreLedger,
)
from mfa_fsm.cli import main
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.stores import compact
from mfa_fsm.stores.base import RecordStore
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.stores.sql import SqlStore
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder, find_leaks
from tests.support.engine import entrust_config
from tests.support.stores import TEST_MARGIN, StoreKit, make_snapshot

KEY = bytes(range(32))


@pytest.fixture
def config(entrust_emulator: EntrustEmulator) -> EntrustConfig:
    return entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)


def fresh_store(kit: StoreKit, **options: Any) -> RecordStore:
    """A store of the kit's kind in a namespace of its own (the servers are shared)."""
    name = f"at_rest_{uuid.uuid4().hex[:12]}"
    if kit.kind in ("sqlite", "postgresql"):
        options["table"] = name
    elif kit.kind == "redis":
        options["prefix"] = f"{name}:"
    return kit.make(**options)


def readable(value: object) -> str:
    """A stored value as text: packed snapshots (mfa_fsm.stores.compact) inflated with zlib
    directly, so what is checked is the bytes at rest, not what a store's reader returns."""
    if isinstance(value, bytes | memoryview) and bytes(value[:1]) == b"\x01":
        inflater = zlib.decompressobj(-14, zdict=compact.DICTIONARY_V1)
        return inflater.decompress(bytes(value)[1:]).decode()
    return repr(value)


def raw_records(store: RecordStore) -> list[str]:
    """Every record the backend holds, live or expired, as text (packed values inflated)."""
    if isinstance(store, MemoryStore):
        return [f"{key} {readable(record.payload)}" for key, record in store._records.items()]
    if isinstance(store, SqlStore):
        store.create_schema()
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(store.table))
            return [" ".join(readable(value) for value in row) for row in rows]
    assert isinstance(store, RedisStore)
    keys = store.client.keys(store.prefix + "*")
    # Each value is "<version>[ <claim>]\n<packed snapshot>" (mfa_fsm.stores.redis).
    values = (bytes(store.client.get(key)).partition(b"\n") for key in keys)
    return [f"{head!r} {readable(payload)}" for head, _, payload in values]


def complete_login(engine: Engine, emulator: EntrustEmulator) -> str:
    """jsmith signs in with a TOKEN code; returns the flow id of the Completed flow."""
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    engine.send(flow_id, "select_second_factor", factor="TOKEN")
    view = engine.send(flow_id, "submit_response", answer=emulator.token_code("jsmith"))
    assert view.state == "Completed"
    return flow_id


# -- hand-off -----------------------------------------------------------------------------------


def test_final_token_leaves_the_store_at_hand_off(
    kit: StoreKit,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """hand_off returns the token once; the raw record then holds no token and no IdP secret."""
    store = fresh_store(kit)
    engine = Engine(store, [config], transport=recorder, clock=kit.clock)
    flow_id = complete_login(engine, entrust_emulator)
    token = engine.view(flow_id).result.token  # type: ignore[union-attr]
    assert token and token in "".join(raw_records(store))  # held until handed off

    handed = engine.hand_off(flow_id)
    assert handed.state == "Completed" and handed.result is not None
    assert handed.result.token == token and not handed.result.handed_off
    raw = raw_records(store)
    assert len(raw) == 1 and flow_id in raw[0]
    assert not find_leaks(raw, recorder.secrets | {token})

    shown = engine.view(flow_id)  # the final page still renders, without the token
    assert shown.state == "Completed" and shown.result is not None
    assert (shown.result.handed_off, shown.result.token, shown.result.cookies) == (True, "", {})
    assert shown.result.display_name == "John Smith"
    with pytest.raises(ResultUnavailable, match="already handed") as info:
        engine.hand_off(flow_id)
    assert flow_id not in str(info.value)

    kit.let_time_pass(TEST_MARGIN + 0.2)  # the re-delivery window is one margin
    with pytest.raises(FlowNotFound):
        engine.view(flow_id)


def test_hand_off_of_an_unfinished_flow_is_refused_and_changes_nothing(
    config: EntrustConfig, entrust_emulator: EntrustEmulator
) -> None:
    """Only a Completed flow has a result to hand off; anything else is left as it was."""
    store = MemoryStore()
    engine = Engine(store, [config])
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    before = store.load(flow_id)
    with pytest.raises(ResultUnavailable, match="not Completed"):
        engine.hand_off(flow_id)
    assert store.load(flow_id) == before


def test_concurrent_hand_offs_deliver_the_result_once(
    config: EntrustConfig, entrust_emulator: EntrustEmulator
) -> None:
    """Two requests that loaded the Completed flow: compare-and-set lets one hand it off."""
    store = MemoryStore()
    engine = Engine(store, [config])
    flow_id = complete_login(engine, entrust_emulator)
    loaded = store.load(flow_id)

    class Stale:
        """The store as the slower request saw it: still the Completed snapshot."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def load(self, flow_id: str) -> Any:
            return loaded

    engine.hand_off(flow_id)
    with pytest.raises(FlowConflict):
        Engine(Stale(), [config]).hand_off(flow_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("with_ledger", [True, False])
def test_sealed_hand_off_seals_a_token_without_the_result(
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
    with_ledger: bool,
) -> None:
    """The token given back after hand-off holds no IdP secret; with a ledger the old token,
    which does, is refused from then on."""
    ledger = StoreLedger(MemoryStore()) if with_ledger else None
    sealed = SealedState({"k": KEY}, ledger=ledger)
    engine = SealedEngine(sealed, [config], transport=recorder)
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    flow_id = view.flow_id
    view, token = engine.send(token, flow_id, "submit_first_factor")
    view, token = engine.send(token, flow_id, "select_second_factor", factor="TOKEN")
    code = entrust_emulator.token_code("jsmith")
    view, token = engine.send(token, flow_id, "submit_response", answer=code)
    handed, scrubbed_token = engine.hand_off(token, flow_id)
    assert handed.result is not None and handed.result.token
    inside = sealed.open(scrubbed_token, flow_id=flow_id)
    assert inside.result is not None and inside.result.handed_off
    assert not find_leaks([inside.to_json()], recorder.secrets | {handed.result.token})
    with pytest.raises(ResultUnavailable):
        engine.hand_off(scrubbed_token, flow_id)
    if with_ledger:
        with pytest.raises(SealedStateError, match="replayed"):
            engine.hand_off(token, flow_id)
    else:  # documented: without a ledger a copy of the old token can be handed off again
        assert engine.hand_off(token, flow_id)[0].result == handed.result


# -- automatic purging --------------------------------------------------------------------------


def test_expired_flows_are_purged_by_later_writes(kit: StoreKit) -> None:
    """Without any purge_expired call, expired records are gone after purge_every writes."""
    store = fresh_store(kit)
    store.purge_every = 5
    for _ in range(3):
        store.create(make_snapshot(now=kit.clock(), lifetime=1))
    assert len(raw_records(store)) == 3
    kit.let_time_pass(1 + TEST_MARGIN + 0.2)
    live = [make_snapshot(now=kit.clock()) for _ in range(2)]
    store.create(live[0])  # the 4th write: no purge yet
    assert len(raw_records(store)) == (1 if kit.kind == "redis" else 4)
    store.create(live[1])  # the 5th write purges
    remaining = raw_records(store)
    assert len(remaining) == 2
    assert all(any(s.flow_id in line for line in remaining) for s in live)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgresql"])
def test_one_automatic_purge_deletes_at_most_purge_limit(
    make_kit: Callable[[str], StoreKit], kind: str
) -> None:
    """The piggy-backed purge is bounded: purge_limit records per purge_every writes."""
    kit = make_kit(kind)
    store = fresh_store(kit)
    store.purge_every, store.purge_limit = 2, 3
    stale = [make_snapshot(now=kit.clock(), lifetime=1) for _ in range(6)]
    for snapshot in stale:
        store.create(snapshot)  # six writes: three purges, nothing expired yet
    kit.let_time_pass(1 + TEST_MARGIN + 0.2)
    for expected in (5, 4):  # each round: two live records more, three expired ones fewer
        for _ in range(2):
            store.create(make_snapshot(now=kit.clock()))
        assert len(raw_records(store)) == expected
    assert store.purge_expired() == 0


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgresql"])
def test_purge_never_touches_a_live_record(make_kit: Callable[[str], StoreKit], kind: str) -> None:
    """An expired id created again is live: neither purge deletes it."""
    kit = make_kit(kind)
    store = fresh_store(kit)
    old = make_snapshot(now=kit.clock(), lifetime=1)
    store.create(old)
    kit.let_time_pass(1 + TEST_MARGIN + 0.2)
    again = make_snapshot(flow_id=old.flow_id, now=kit.clock())
    store.create(again)
    assert store.purge_expired() == 0
    assert store.load(old.flow_id) == again


def test_redis_keys_carry_their_ttl(make_kit: Callable[[str], StoreKit]) -> None:
    """Redis needs no purge: every key (flows and a ledger's) is written with its TTL."""
    kit = make_kit("redis")
    store = fresh_store(kit)
    assert isinstance(store, RedisStore)
    snapshot = make_snapshot(now=kit.clock(), lifetime=60)
    store.create(snapshot)
    StoreLedger(store).advance(
        "ledger-flow", expected_version=None, version=0, expires_at=time.time() + 5
    )
    ttls = [store.client.pttl(key) for key in store.client.keys(store.prefix + "*")]
    assert len(ttls) == 2 and all(0 < ttl <= 61_000 + TEST_MARGIN * 1000 for ttl in ttls)
    assert store.purge_expired() == 0


def test_a_failing_automatic_purge_does_not_fail_the_write(
    tmp_path: Any, leak_guard: list[dict[str, object]]
) -> None:
    """The write has happened when the purge runs: a purge error is logged, not raised."""
    store = SqlStore(f"sqlite:///{tmp_path / 'f.db'}")
    store.purge_every = 1

    def broken(now: float, limit: int | None) -> int:
        raise sa.exc.OperationalError("DELETE", {}, Exception("database is locked"))

    store._purge = broken  # type: ignore[method-assign]
    snapshot = make_snapshot()
    store.create(snapshot)
    assert store.load(snapshot.flow_id) == snapshot
    assert [e["error"] for e in leak_guard if e["event"] == "mfa_fsm.purge_failed"] == [
        "OperationalError"
    ]
    store.close()


# -- mfa-fsm purge --------------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), stdout=out)
    return status, out.getvalue()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_purge_command_deletes_every_expired_row(
    make_kit: Callable[[str], StoreKit], kind: str
) -> None:
    """`mfa-fsm purge URL --table T` deletes the expired rows (real time) and keeps live ones."""
    kit = make_kit(kind)
    store = fresh_store(kit, margin=0)
    assert isinstance(store, SqlStore)
    store.purge_every = 0  # only the command purges here
    long_ago = time.time() - 3600
    for _ in range(3):
        store.create(make_snapshot(now=long_ago, lifetime=1))
    live = make_snapshot()
    store.create(live)
    status, out = run("purge", kit.target, "--table", store.table.name)
    assert (status, out) == (0, f"deleted 3 expired records from {store.table.name}\n")
    assert len(raw_records(store)) == 1 and live.flow_id in raw_records(store)[0]
    assert run("purge", kit.target, "--table", store.table.name)[1].startswith("deleted 0 ")


def test_purge_command_on_redis_and_bad_urls(make_kit: Callable[[str], StoreKit]) -> None:
    """Redis has nothing to purge (TTLs); a memory or unknown URL is refused, saying why."""
    status, out = run("purge", make_kit("redis").target)
    assert status == 0 and "TTL" in out
    for url in ("memory", "mysql://x"):
        status, out = run("purge", url)
        assert status == 2 and "purge takes a store URL" in out
