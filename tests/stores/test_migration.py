"""Snapshots written by another schema: older ones are migrated on load, the rest refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mfa_fsm.core.errors import SnapshotError
from mfa_fsm.core.plans import run
from mfa_fsm.core.snapshot import MIGRATIONS, SCHEMA_VERSION, Snapshot, migrate
from mfa_fsm.stores.base import Record
from tests.support.stores import StoreKit, make_snapshot


def _v0_from(snapshot: Snapshot) -> dict[str, Any]:
    """``snapshot`` as an imagined schema 0 wrote it: the step counter was called "step"."""
    data = snapshot.to_dict()
    data["schema"] = 0
    data["step"] = data.pop("version")
    return data


def _v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    data["version"] = data.pop("step")
    return data


@pytest.fixture
def v0_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MIGRATIONS, 0, _v0_to_v1)


def test_schema_1_reads_as_schema_2_with_the_result_not_handed_off() -> None:
    """Schema 2 only added Result.handed_off: a schema-1 snapshot loads unchanged otherwise."""
    assert SCHEMA_VERSION == 2
    assert sorted(MIGRATIONS) == [1]
    snapshot = make_snapshot(version=3)
    old = {**snapshot.to_dict(), "schema": 1}
    assert Snapshot.from_json(json.dumps(old)) == snapshot


@pytest.mark.usefixtures("v0_migration")
def test_registered_migration_upgrades_an_older_snapshot() -> None:
    """A schema-0 snapshot loads through its migration as the equal schema-1 snapshot."""
    snapshot = make_snapshot(version=3)
    old = _v0_from(snapshot)
    assert Snapshot.from_json(json.dumps(old)) == snapshot
    assert old["schema"] == 0 and "step" in old  # the caller's data is left alone


@pytest.mark.usefixtures("v0_migration")
def test_store_loads_an_older_snapshot_migrated(kit: StoreKit) -> None:
    """A flow saved by an older mfa_fsm loads from every store as the current schema."""
    snapshot = make_snapshot(now=kit.clock(), version=2)
    record = Record(2, kit.clock() + 60, json.dumps(_v0_from(snapshot)), snapshot.provider)
    run(kit.store._create_record(snapshot.flow_id, record))
    assert kit.store.load(snapshot.flow_id) == snapshot


def test_older_snapshot_without_migration_is_refused() -> None:
    """With no migration from its schema, an old snapshot is refused, saying so."""
    with pytest.raises(SnapshotError, match=r"schema 0 is too old.*no migration"):
        Snapshot.from_dict(_v0_from(make_snapshot()))


def test_newer_snapshot_is_refused() -> None:
    """A snapshot of a later schema is refused as written by a newer mfa_fsm, never guessed."""
    data = {**make_snapshot().to_dict(), "schema": SCHEMA_VERSION + 1}
    with pytest.raises(SnapshotError, match="written by a newer mfa_fsm"):
        Snapshot.from_dict(data)


@pytest.mark.parametrize("schema", [None, True, "1", 1.0])
def test_malformed_schema_is_refused(schema: object) -> None:
    """A schema that is not an integer is refused before any migration is looked up."""
    with pytest.raises(SnapshotError, match="not a schema number"):
        migrate({**make_snapshot().to_dict(), "schema": schema})
