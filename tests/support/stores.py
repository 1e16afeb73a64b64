"""Snapshots, a movable clock and store builders shared by the store tests and their workers.

This is a plain module (not conftest) because the multiprocessing tests' workers run in
spawned interpreters, which import it by name.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import redis
import redis.asyncio

from mfa_fsm.core.errors import FlowBusy, FlowConflict
from mfa_fsm.core.snapshot import Challenge, Choice, Snapshot
from mfa_fsm.stores.aio import AsyncMemoryStore
from mfa_fsm.stores.base import RecordStore
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.redis_async import AsyncRedisStore
from mfa_fsm.stores.sql import SqlStore
from mfa_fsm.stores.sql_async import AsyncSqlStore
from tests.support.aio import Blocking, LoopThread

PROVIDER = "teststore"

#: The stores the behavioural suite runs against; each needs what its name says.
STORE_KINDS = ("memory", "sqlite", "postgresql", "redis")
#: Their async twins (mfa_fsm.stores.aio), run through the same tests behind a blocking face
#: (tests.support.aio.Blocking); a test module opts in with ``KIT_KINDS = ALL_STORE_KINDS``.
ASYNC_STORE_KINDS = ("memory-async", "sqlite-async", "postgresql-async", "redis-async")
ALL_STORE_KINDS = STORE_KINDS + ASYNC_STORE_KINDS

#: Stores tests give each record this long past its deadline (short, so expiry tests are quick).
TEST_MARGIN = 1.0


@attrs.frozen
class StoreTestContext:
    """A provider context shaped like a real one: two IdP tokens and a few plain fields."""

    session: str = attrs.field(repr=False)
    first_factor_token: str = attrs.field(default="", repr=False)
    factor: str | None = None
    polls: int = 0


Snapshot.contexts[PROVIDER] = StoreTestContext


class FakeClock:
    """A clock tests move by hand; starts at the real time so real TTLs agree with it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_flow_id() -> str:
    return f"flow-{uuid.uuid4().hex}"


def make_snapshot(
    *,
    flow_id: str | None = None,
    now: float | None = None,
    version: int = 0,
    lifetime: float = 300.0,
    session: str = "s3cr3t-session",
) -> Snapshot:
    """A small valid snapshot in ``SecondFactorSelected``."""
    now = time.time() if now is None else now
    return Snapshot(
        provider=PROVIDER,
        flow_id=new_flow_id() if flow_id is None else flow_id,
        user_id="u",
        state="SecondFactorSelected",
        version=version,
        created_at=now,
        deadline=now + lifetime,
        context=StoreTestContext(session=session),
    )


def advanced(snapshot: Snapshot, **changes: Any) -> Snapshot:
    """The snapshot one step later (version + 1), as a flow would produce it."""
    return attrs.evolve(snapshot, version=snapshot.version + 1, **changes)


def realistic_snapshot(now: float) -> Snapshot:
    """A snapshot as large as a real Entrust one: five factors offered, an OTP challenge
    running, and two IdP tokens of the length Entrust's documented replies show (~540
    random base64 characters, which do not compress)."""
    return Snapshot(
        provider=PROVIDER,
        flow_id=str(uuid.uuid4()),
        user_id="jane.doe@example.com",
        state="SecondFactorSelected",
        version=3,
        created_at=now,
        deadline=now + 300,
        context=StoreTestContext(
            session=secrets.token_urlsafe(405),
            first_factor_token=secrets.token_urlsafe(405),
            factor="OTP",
        ),
        choices=(
            Choice(
                "OTP",
                "otp",
                "One-time code",
                deliveries=("SMS", "EMAIL", "VOICE"),
                default_delivery="SMS",
                detail="+1 ***-***-1234",
            ),
            Choice("TOKEN", "token", "Soft or hard token"),
            Choice("TOKENPUSH", "push", "Approve on Entrust Identity app"),
            Choice("KBA", "kba", "Security questions"),
            Choice("GRID", "grid", "Grid card", supported=False),
        ),
        challenge=Challenge(
            factor="OTP",
            kind="otp",
            prompt="Enter the code sent by SMS to +1 ***-***-1234",
            delivery="SMS",
            attempts_left=3,
        ),
    )


@attrs.define
class StoreKit:
    """A store under test, with the clock it reads and the means to let time pass."""

    kind: str
    target: str
    clock: FakeClock
    stores: list[RecordStore] = attrs.field(factory=list)
    #: The event loop of an async kind's stores (None for a blocking kind).
    loop: LoopThread | None = None

    @property
    def is_async(self) -> bool:
        """Whether the stores are async ones (then ``store`` is their blocking face)."""
        return self.kind.endswith("-async")

    def make(self, **options: Any) -> RecordStore:
        """Another store on the same backend and clock (closed when the test ends); for an
        async kind, its blocking face (``.wrapped`` is the async store itself)."""
        options.setdefault("margin", TEST_MARGIN)
        if not self.is_async:
            store = build_store(self.kind, self.target, clock=self.clock, **options)
            self.stores.append(store)
            return store
        if self.loop is None:
            self.loop = LoopThread()
        made: Any = Blocking(
            build_async_store(self.kind, self.target, clock=self.clock, **options), self.loop
        )
        self.stores.append(made)
        return made  # type: ignore[no-any-return]

    @property
    def store(self) -> RecordStore:
        """The test's main store (made on first use)."""
        if not self.stores:
            self.make()
        return self.stores[0]

    def let_time_pass(self, seconds: float) -> None:
        """Move the clock; Redis counts TTLs on its own clock, so for it really wait."""
        self.clock.advance(seconds)
        if self.kind.startswith("redis"):
            time.sleep(seconds)

    def close(self) -> None:
        """Close every store made (SQL engines, Redis clients), and an async kind's loop."""
        for store in self.stores:
            if self.loop is None:
                close_store(store)
            else:
                self.loop.run(close_async_store(store.wrapped))  # type: ignore[attr-defined]
        if self.loop is not None:
            self.loop.close()


def build_store(kind: str, target: str, *, clock: Any = time.time, **options: Any) -> RecordStore:
    """A store of ``kind``; ``target`` is the SQL URL or the Redis URL (unused for memory)."""
    if kind == "memory":
        return MemoryStore(clock=clock, **options)
    if kind in ("sqlite", "postgresql"):
        return SqlStore(target, clock=clock, **options)
    if kind == "redis":
        return RedisStore(redis.Redis.from_url(target), clock=clock, **options)
    raise ValueError(f"unknown store kind {kind!r}")


def build_async_store(kind: str, target: str, *, clock: Any = time.time, **options: Any) -> Any:
    """An async store of ``kind`` (one of ASYNC_STORE_KINDS)."""
    if kind == "memory-async":
        return AsyncMemoryStore(clock=clock, **options)
    if kind == "redis-async":
        return AsyncRedisStore(redis.asyncio.Redis.from_url(target), clock=clock, **options)
    if kind in ("sqlite-async", "postgresql-async"):
        return AsyncSqlStore(async_sql_url(target), clock=clock, **options)
    raise ValueError(f"unknown async store kind {kind!r}")


def async_sql_url(url: str) -> str:
    """The async driver's URL for a blocking store's: aiosqlite, psycopg's async mode."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    return url  # postgresql+psycopg: SQLAlchemy's asyncio engine drives psycopg async


async def close_async_store(store: Any) -> None:
    """Release an async store's connections (its SQL engine, its Redis client)."""
    close = getattr(store, "close", None)
    if close is not None:
        await close()
    client = getattr(store, "client", None)
    if client is not None:
        await client.aclose()


def close_store(store: RecordStore) -> None:
    """Release the store's connections (SQL engine, Redis client)."""
    close = getattr(store, "close", None)
    if close is not None:
        close()
    client = getattr(store, "client", None)
    if client is not None:
        client.close()


def contend(store: RecordStore, flow_id: str, rounds: int, barrier: Any) -> list[tuple[int, bool]]:
    """Race the other workers for every step of one flow; returns (version tried, won) pairs.

    Each round all workers load the flow (so all hold the same version), wait for each other,
    then all save the next version at once: compare-and-set must let exactly one through.
    The second wait keeps anyone from loading before every save of the round is done.
    """
    outcomes = []
    for _ in range(rounds):
        loaded = store.load(flow_id)
        barrier.wait(timeout=60)
        try:
            store.save(advanced(loaded), expected_version=loaded.version)
            outcomes.append((loaded.version + 1, True))
        except FlowConflict:
            outcomes.append((loaded.version + 1, False))
        barrier.wait(timeout=60)
    return outcomes


def contend_in_process(
    *, kind: str, target: str, flow_id: str, rounds: int, barrier: Any, results: Any
) -> None:
    """Entry point of a spawned worker: its own store and connections, outcomes to a queue."""
    store = build_store(kind, target, margin=TEST_MARGIN)
    try:
        results.put(("ok", contend(store, flow_id, rounds, barrier)))
    except BaseException as exc:  # report anything, or the parent only sees a timeout
        results.put(("error", repr(exc)))
        raise
    finally:
        close_store(store)


def in_threads(workers: int, job: Callable[[threading.Barrier], list[Any]]) -> list[Any]:
    """Run ``job(barrier)`` in ``workers`` threads sharing one barrier; all their results.

    The first exception of any thread is raised here (and aborts the barrier, so the other
    threads stop waiting), since a thread's exception is otherwise lost.
    """
    barrier = threading.Barrier(workers)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.extend(job(barrier))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def contend_in_threads(store: RecordStore, flow_id: str, workers: int, rounds: int) -> list[Any]:
    """Run ``contend`` in ``workers`` threads on one shared store; all their outcomes."""
    return in_threads(workers, lambda barrier: contend(store, flow_id, rounds, barrier))


def claim_in_threads(store: RecordStore, flow_id: str, workers: int) -> list[str]:
    """``workers`` threads claim version 0 of one flow at once; "claimed" or "busy" each."""

    def claim(barrier: threading.Barrier) -> list[str]:
        barrier.wait(timeout=60)
        try:
            store.claim(flow_id, 0, ttl=30)
        except FlowBusy:
            return ["busy"]
        return ["claimed"]

    return in_threads(workers, claim)
