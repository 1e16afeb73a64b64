"""Hostile flow ids and tokens at every Engine and SealedEngine entry, on every store; store
backends that fail; records altered in the store.

Every entry (start, send, view, hand_off, delete) checks its flow id and token before any
store or IdP sees them, so a value of the wrong type or form raises an MfaError (InvalidInput
or FlowNotFound; SealedStateError for a token), never AttributeError, TypeError,
UnicodeEncodeError, a driver's DataError or RecursionError, and the real flow is unchanged.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from mfa_fsm import (
    CyberArkConfig,
    Engine,
    FlowNotFound,
    InvalidInput,
    MfaError,
    SealedEngine,
    SealedStateError,
    SnapshotError,
    StoreUnavailable,
    UsageError,
)
from mfa_fsm.stores.compact import pack
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.stores.sql import SqlStore
from mfa_fsm.testing import CyberArkEmulator
from tests.support.servers import RunningServer, redis_server
from tests.support.stores import StoreKit

#: name -> a flow id (or token) a hostile or broken caller might pass
HOSTILE_IDS: dict[str, Any] = {
    "None": None,
    "int": 5,
    "float": 1.5,
    "bytes": b"flow",
    "list": ["flow"],
    "dict": {"flow": 1},
    "empty": "",
    "lone surrogate": "\ud800",
    "NUL": "flow\x00id",
    "CR/LF": "flow\r\nid",
    "non-ASCII": "flöw",
    "oversize": "f" * 100_000,
    "SQL injection": "' OR '1'='1",
}


@pytest.fixture
def emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator() as running:
        yield running


def _refused(call: Any, *args: Any) -> MfaError:
    with pytest.raises(MfaError) as caught:
        call(*args)
    assert isinstance(caught.value, InvalidInput | FlowNotFound | SealedStateError), caught.value
    return caught.value


@pytest.mark.parametrize("name", HOSTILE_IDS)
def test_engine_entries_refuse_hostile_flow_ids(
    kit: StoreKit, emulator: CyberArkEmulator, name: str
) -> None:
    """view/send/hand_off/delete and start(flow_id=...) on every store: an MfaError, and the
    real flow is as it was."""
    engine = Engine(kit.store, [CyberArkConfig(base_url=emulator.base_url)])
    real = engine.start("cyberark", user="bob")
    hostile = HOSTILE_IDS[name]
    _refused(lambda: engine.view(hostile))
    _refused(lambda: engine.send(hostile, "submit_first_factor"))
    _refused(lambda: engine.hand_off(hostile))
    _refused(lambda: engine.delete(hostile))
    if hostile is not None:  # flow_id=None is start()'s default: a new random id
        with pytest.raises(UsageError):
            engine.start("cyberark", user="bob", flow_id=hostile)
    with pytest.raises(UsageError):
        engine.start(hostile, user="bob")
    assert engine.view(real.flow_id) == real


@pytest.mark.parametrize("name", HOSTILE_IDS)
def test_sealed_engine_refuses_hostile_ids_and_tokens(
    emulator: CyberArkEmulator, name: str
) -> None:
    """SealedEngine.send/view/hand_off with a hostile flow id or token: an MfaError."""
    engine = SealedEngine(
        SealedState({"k1": SealedState.generate_key()}),
        [CyberArkConfig(base_url=emulator.base_url)],
    )
    real, token = engine.start("cyberark", user="bob")
    hostile = HOSTILE_IDS[name]
    for flow_id, sealed in ((hostile, token), (real.flow_id, hostile)):
        _refused(engine.view, sealed, flow_id)
        _refused(engine.send, sealed, flow_id, "submit_first_factor")
        _refused(engine.hand_off, sealed, flow_id)
    assert engine.view(token, real.flow_id) == real


def _raw_write(kit: StoreKit, key: str, payload: bytes) -> None:
    """Overwrite the stored record of ``key`` behind the store's back (a tampered store)."""
    store = kit.store
    if isinstance(store, SqlStore):
        table = store.table
        with store.engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.flow_id == key).values(packed=payload))
    elif isinstance(store, RedisStore):
        head = store.client.get(store.prefix + key)
        assert head is not None
        version = head.partition(b"\n")[0].split(b" ")[0]
        store.client.set(store.prefix + key, version + b"\n" + payload, keepttl=True)
    else:
        record = store._records[key]  # type: ignore[attr-defined]
        store._records[key] = type(record)(  # type: ignore[attr-defined]
            version=record.version,
            expires_at=record.expires_at,
            payload=payload,
            provider=record.provider,
            state=record.state,
        )


def test_altered_records_are_snapshot_errors(kit: StoreKit, emulator: CyberArkEmulator) -> None:
    """A record holding another flow's snapshot, or JSON nested deeply: SnapshotError."""
    engine = Engine(kit.store, [CyberArkConfig(base_url=emulator.base_url)])
    first = engine.start("cyberark", user="bob")
    second = engine.start("cyberark", user="alice")
    _raw_write(kit, first.flow_id, pack(kit.store.load(second.flow_id)))
    with pytest.raises(SnapshotError, match="another flow"):
        engine.view(first.flow_id)
    _raw_write(kit, second.flow_id, b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(SnapshotError):
        engine.view(second.flow_id)


def _no_secret_in(error: BaseException, *secrets: str) -> None:
    text = "".join(traceback.format_exception(error)) + str(error) + repr(error)
    for secret in secrets:
        assert secret not in text


def test_postgresql_errors_are_store_unavailable(
    postgres_service: RunningServer, emulator: CyberArkEmulator
) -> None:
    """A lock_timeout during the claim and during the save on a real PostgreSQL: the engine
    raises StoreUnavailable whose message and traceback carry no flow id nor snapshot."""
    plain = SqlStore(postgres_service.url, table="mfa_fsm_unavailable")
    impatient = SqlStore(
        sa.create_engine(postgres_service.url, connect_args={"options": "-c lock_timeout=200ms"}),
        table="mfa_fsm_unavailable",
    )
    config = CyberArkConfig(base_url=emulator.base_url)
    view = Engine(plain, [config]).start("cyberark", user="bob")
    engine = Engine(impatient, [config])
    table = plain.table
    try:
        with plain.engine.begin() as locker:
            locker.execute(
                sa.select(table.c.flow_id).where(table.c.flow_id == view.flow_id).with_for_update()
            )
            with pytest.raises(StoreUnavailable) as claim:
                engine.send(view.flow_id, "submit_first_factor")
            assert (claim.value.backend, claim.value.error) == ("SqlStore", "OperationalError")
            _no_secret_in(claim.value, view.flow_id)
            with pytest.raises(StoreUnavailable) as save:
                impatient.save(
                    attrs_evolve_version(impatient_load(plain, view.flow_id)),
                    expected_version=0,
                )
            assert save.value.operation == "save"
            _no_secret_in(save.value, view.flow_id)
        assert engine.view(view.flow_id) == view
    finally:
        impatient.engine.dispose()
        plain.close()


def impatient_load(store: SqlStore, flow_id: str) -> Any:
    return store.load(flow_id)


def attrs_evolve_version(snapshot: Any) -> Any:
    import attrs  # noqa: PLC0415

    return attrs.evolve(snapshot, version=snapshot.version + 1)


def test_stopped_redis_is_store_unavailable(emulator: CyberArkEmulator) -> None:
    """A real Redis stopped under a live flow: StoreUnavailable on every entry, no flow id in
    the message or the traceback."""
    with redis_server() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        engine = Engine(RedisStore(client), [CyberArkConfig(base_url=emulator.base_url)])
        view = engine.start("cyberark", user="bob")
    for call in (
        lambda: engine.view(view.flow_id),
        lambda: engine.send(view.flow_id, "submit_first_factor"),
        lambda: engine.hand_off(view.flow_id),
        lambda: engine.delete(view.flow_id),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.backend == "RedisStore"
        assert "Redis" in str(caught.value) and "retry" in str(caught.value)
        _no_secret_in(caught.value, view.flow_id)
    client.close()
