"""Fixtures: real Redis and PostgreSQL servers for the session, and one store per test.

The servers start only when a test asks for them. A missing server binary fails the tests
that need it, with the install command, rather than skipping them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from mfa_fsm.stores.base import RecordStore
from tests.servers import RunningServer, ServerUnavailable, postgres_server, redis_server
from tests.stores.store_helpers import (
    STORE_KINDS,
    TEST_MARGIN,
    FakeClock,
    build_store,
    close_store,
)


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RunningServer]:
    """A real redis-server on a free loopback port, for the whole session."""
    try:
        with redis_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[RunningServer]:
    """A real PostgreSQL cluster on a free loopback port with an empty database."""
    try:
        with postgres_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@attrs.define
class StoreKit:
    """A store under test, with the clock it reads and the means to let time pass."""

    kind: str
    target: str
    clock: FakeClock
    stores: list[RecordStore] = attrs.field(factory=list)

    def make(self, **options: object) -> RecordStore:
        """Another store on the same backend and clock (closed when the test ends)."""
        options.setdefault("margin", TEST_MARGIN)
        store = build_store(self.kind, self.target, clock=self.clock, **options)
        self.stores.append(store)
        return store

    @property
    def store(self) -> RecordStore:
        """The test's main store (made on first use)."""
        if not self.stores:
            self.make()
        return self.stores[0]

    def let_time_pass(self, seconds: float) -> None:
        """Move the clock; Redis counts TTLs on its own clock, so for it really wait."""
        self.clock.advance(seconds)
        if self.kind == "redis":
            time.sleep(seconds)


def _target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'flows.db'}"
    if kind == "postgresql":
        server: RunningServer = request.getfixturevalue("postgres_service")
        return server.url
    if kind == "redis":
        server = request.getfixturevalue("redis_service")
        return server.url
    return ""


@pytest.fixture(params=STORE_KINDS)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    """One StoreKit per store kind: the behavioural suite runs once against each."""
    kind: str = request.param
    store_kit = StoreKit(kind, _target(kind, request, tmp_path), FakeClock())
    yield store_kit
    for store in store_kit.stores:
        close_store(store)


@pytest.fixture
def make_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], StoreKit]]:
    """Build a StoreKit of a kind a test chooses (for tests parametrised on a subset)."""
    kits: list[StoreKit] = []

    def make(kind: str) -> StoreKit:
        store_kit = StoreKit(kind, _target(kind, request, tmp_path), FakeClock())
        kits.append(store_kit)
        return store_kit

    yield make
    for store_kit in kits:
        for store in store_kit.stores:
            close_store(store)
