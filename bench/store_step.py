"""One web request through the engine facade on each store, against the bare engine step.

Every variant runs the same step, the last one of a login: ``submit_response`` on an Entrust
flow in SecondFactorSelected, whose IdP call is answered by an in-process transport, so what
is measured is mfa_fsm and the store, not a network. Interleaved in each round:

* bare engine step (``bench/engine_step.py``): JSON snapshot -> EntrustFlow.restore -> send
  -> JSON snapshot, nothing stored;
* ``Engine.send`` on each store: load -> restore -> claim -> send -> compare-and-set save,
  on MemoryStore, SqlStore on an SQLite file, SqlStore on PostgreSQL, RedisStore;
* ``SealedEngine.send``: open the token -> restore -> send -> seal, without a ledger and with
  a Redis ledger (which adds the replay check, the claim and the ledger's compare-and-set).

Each facade step completes a fresh flow, stored (or sealed) before the clock starts, so
"flows/s" is how many logins one process can finish per second on that store. PostgreSQL and
Redis are local throw-away servers started by ``tests/support/servers.py`` (PostgreSQL with
``fsync=off``, as in the tests); the SQLite file runs as ``SqlStore`` sets it up (WAL,
``synchronous=NORMAL``).

Then bytes per stored flow, per store, at 10 and at ``--flows`` (100,000) stored flows: Entrust
flows waiting for a code, each with its own id and two fresh random 600-character IdP tokens
(1,200 bytes of secrets), bulk-inserted with exactly the records ``create`` writes. "Used" is
what the server counts for the rows or keys and their index entries (``tests/support/
footprint.py``: SQLite dbstat, PostgreSQL pgstattuple, Redis MEMORY USAGE, tracemalloc for
the memory store, the token's length when sealed); "allocated" is all the server holds
(pages, relation size, used_memory) divided by the flows. Target (issue 12): secrets + 300.

Run: python bench/store_step.py [--rounds 9] [--cycles 300] [--flows 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.support (the database servers) and its helpers

from engine_step import (  # noqa: E402 - a sibling script, found next to this one
    CONFIG,
    InProcessTransport,
    configure_logging,
    make_step,
    per_call_us,
    selected_snapshot_json,
)

from mfa_fsm import (  # noqa: E402
    Engine,
    MemoryStore,
    RedisStore,
    SealedEngine,
    SealedState,
    Snapshot,
    SqlStore,
    StoreLedger,
)
from mfa_fsm.stores.base import RecordStore  # noqa: E402
from tests.support.engine import entrust_in_second_factor_selected  # noqa: E402
from tests.support.footprint import (  # noqa: E402
    allocated_bytes,
    bulk_create,
    memory_bytes_per_flow,
    secret_bytes,
    used_bytes,
)
from tests.support.servers import RunningServer, postgres_server, redis_server  # noqa: E402

BARE = "bare engine step"
CODE = "12345678"

#: One timed cycle: a step with nothing prepared (bare), or one that takes what ``prepare``
#: made for it (a flow id, or a flow id and its token).
Variant = tuple[Callable[[int], list[Any]], Callable[[Any], object]]


def stored(engine: Engine, snapshot: Snapshot) -> Variant:
    """Steps through ``engine``, each on a flow stored beforehand."""

    def prepare(count: int) -> list[Any]:
        ids = []
        for _ in range(count):
            flow_id = uuid.uuid4().hex
            engine.store.create(attrs.evolve(snapshot, flow_id=flow_id))
            ids.append(flow_id)
        return ids

    def step(flow_id: Any) -> object:
        view = engine.send(flow_id, "submit_response", answer=CODE)
        assert view.state == "Completed"
        return view

    return prepare, step


def sealed(engine: SealedEngine, snapshot: Snapshot) -> Variant:
    """Steps through a sealed engine, each on a flow sealed beforehand."""

    def prepare(count: int) -> list[Any]:
        flows = []
        for _ in range(count):
            flow = attrs.evolve(snapshot, flow_id=uuid.uuid4().hex)
            flows.append((flow.flow_id, engine.sealed.seal(flow)))
        return flows

    def step(flow: Any) -> object:
        flow_id, token = flow
        view, _ = engine.send(token, flow_id, "submit_response", answer=CODE)
        assert view.state == "Completed"
        return view

    return prepare, step


def timed(variant: Variant, cycles: int) -> float:
    """µs per step, over ``cycles`` steps whose flows were prepared before the clock started."""
    prepare, step = variant
    items = iter(prepare(cycles))
    return per_call_us(lambda: step(next(items)), cycles)


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, RunningServer, RunningServer]]:
    """A scratch directory, a Redis server and a PostgreSQL server, for the whole run."""
    with (
        tempfile.TemporaryDirectory() as workdir,
        redis_server() as redis_service,
        postgres_server("mfa_fsm_bench") as postgres_service,
    ):
        yield workdir, redis_service, postgres_service


@contextlib.contextmanager
def variants(
    workdir: str, redis_service: RunningServer, postgres_service: RunningServer
) -> Iterator[dict[str, Variant]]:
    """Every variant, with the stores they need for as long as they are used."""
    saved = selected_snapshot_json()
    snapshot = Snapshot.from_json(saved)
    transport = InProcessTransport()
    bare = make_step(saved)
    if True:  # (kept as a block: the stores below live as long as the variants)
        client = redis.Redis.from_url(redis_service.url)
        stores = {
            "MemoryStore": MemoryStore(),
            "SqlStore, SQLite file": SqlStore(f"sqlite:///{Path(workdir) / 'flows.db'}"),
            "SqlStore, PostgreSQL": SqlStore(postgres_service.url),
            "RedisStore": RedisStore(client),
        }
        keys = {"k": SealedState.generate_key()}
        ledger = StoreLedger(RedisStore(client, prefix="mfa_fsm:ledger:"))
        found: dict[str, Variant] = {BARE: (lambda count: [None] * count, lambda _: bare())}
        for name, store in stores.items():
            found[name] = stored(Engine(store, [CONFIG], transport=transport), snapshot)
        for name, sealed_state in {
            "SealedState, no ledger": SealedState(keys),
            "SealedState, Redis ledger": SealedState(keys, ledger=ledger),
        }.items():
            found[name] = sealed(
                SealedEngine(sealed_state, [CONFIG], transport=transport), snapshot
            )
        try:
            yield found
        finally:
            for store in stores.values():
                if isinstance(store, SqlStore):
                    store.close()
            client.close()


def waiting_flows(count: int) -> list[Snapshot]:
    """``count`` Entrust flows waiting for a code, each with its own id and two fresh random
    600-character IdP tokens (made from one flow, so that 100,000 take seconds)."""
    base = entrust_in_second_factor_selected(token_chars=600).snapshot()
    flows = []
    for _ in range(count):
        context = attrs.evolve(
            base.context,
            token=secrets.token_urlsafe(600)[:600],
            first_factor_token=secrets.token_urlsafe(600)[:600],
        )
        flows.append(attrs.evolve(base, flow_id=uuid.uuid4().hex, context=context))
    return flows


def footprints(
    counts: tuple[int, ...],
    workdir: str,
    redis_service: RunningServer,
    postgres_service: RunningServer,
) -> dict[str, dict[int, tuple[float, float | None]]]:
    """Store -> count -> (used, allocated) bytes per flow; see the module docs."""
    found: dict[str, dict[int, tuple[float, float | None]]] = {}
    client = redis.Redis.from_url(redis_service.url)
    keys = {"k": SealedState.generate_key()}
    try:
        for count in counts:
            flows = waiting_flows(count)
            found.setdefault("MemoryStore", {})[count] = (memory_bytes_per_flow(flows), None)
            sealed_state = SealedState(keys)
            tokens = sum(len(sealed_state.seal(flow)) for flow in flows[:1000])
            found.setdefault("SealedState (token)", {})[count] = (tokens / min(count, 1000), None)
            stores: dict[str, RecordStore] = {
                "SqlStore, SQLite file": SqlStore(
                    f"sqlite:///{Path(workdir) / f'bytes_{count}.db'}", margin=3600
                ),
                "SqlStore, PostgreSQL": SqlStore(
                    postgres_service.url, table=f"bytes_{count}", margin=3600
                ),
                "RedisStore": RedisStore(client, prefix=f"bytes{count}:", margin=3600),
            }
            for name, store in stores.items():
                started = time.perf_counter()
                used, allocated = used_bytes(store), allocated_bytes(store)
                bulk_create(store, flows)
                used = (used_bytes(store) - used) / count
                allocated = (allocated_bytes(store) - allocated) / count
                found.setdefault(name, {})[count] = (used, allocated)
                print(
                    f"  ({name}: {count} flows stored and counted in "
                    f"{time.perf_counter() - started:.1f} s)",
                    file=sys.stderr,
                )
                if isinstance(store, SqlStore):
                    store.close()
    finally:
        client.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--flows", type=int, default=100_000)
    args = parser.parse_args()
    configure_logging()
    with servers() as (workdir, redis_service, postgres_service):
        with variants(workdir, redis_service, postgres_service) as found:
            for variant in found.values():  # warm up caches, connections and prepared scripts
                timed(variant, 5)
            results: dict[str, list[float]] = {name: [] for name in found}
            for _ in range(args.rounds):
                for name, variant in found.items():
                    results[name].append(timed(variant, args.cycles))
        counts = (10, args.flows)
        sizes = footprints(counts, workdir, redis_service, postgres_service)
    print(f"{args.rounds} rounds x {args.cycles} steps, variants interleaved; µs per step")
    medians = {name: statistics.median(samples) for name, samples in results.items()}
    bare = medians[BARE]
    for name, samples in results.items():
        median = medians[name]
        print(
            f"  {name:27} median {median:8.1f}  min {min(samples):8.1f}  max {max(samples):8.1f}"
            f"  {median / bare:5.2f}x bare  {1e6 / median:7.0f} flows/s"
        )
    budget = secret_bytes(waiting_flows(1)[0]) + 300
    print(f"bytes per stored flow (1,200 bytes of secrets each; target secrets + 300 = {budget}):")
    print(f"  {'store':27} {'used @10':>9} {f'used @{counts[1]:,}':>13} {'allocated':>10}")
    for name, by_count in sizes.items():
        small, large = by_count[counts[0]], by_count[counts[1]]
        allocated = "" if large[1] is None else f"{large[1]:10.0f}"
        print(f"  {name:27} {small[0]:9.0f} {large[0]:13.0f} {allocated:>10}")
    print(
        json.dumps(
            {
                "medians_us": {name: round(median, 1) for name, median in medians.items()},
                "ratios": {name: round(median / bare, 2) for name, median in medians.items()},
                "bytes_per_flow": {
                    name: {
                        str(count): [round(used), None if alloc is None else round(alloc)]
                        for count, (used, alloc) in by_count.items()
                    }
                    for name, by_count in sizes.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
