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
Redis are local throw-away servers started by ``tests/servers.py`` (PostgreSQL with
``fsync=off``, as in the tests); the SQLite file uses SQLite's defaults, so every save waits
for the disk. The last line prints the sealed size of an Entrust flow in SecondFactorSelected
holding two 600-character random IdP tokens (the test suite asserts it stays under 2,048).

Run: python bench/store_step.py [--rounds 9] [--cycles 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.servers (the database servers) and its helpers

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
from tests.engine_helpers import entrust_in_second_factor_selected  # noqa: E402
from tests.servers import postgres_server, redis_server  # noqa: E402

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
        view = engine.send(flow_id, "submit_response", response=CODE)
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
        view, _ = engine.send(token, flow_id, "submit_response", response=CODE)
        assert view.state == "Completed"
        return view

    return prepare, step


def timed(variant: Variant, cycles: int) -> float:
    """µs per step, over ``cycles`` steps whose flows were prepared before the clock started."""
    prepare, step = variant
    items = iter(prepare(cycles))
    return per_call_us(lambda: step(next(items)), cycles)


@contextlib.contextmanager
def variants() -> Iterator[dict[str, Variant]]:
    """Every variant, with the servers and files they need for as long as they are used."""
    saved = selected_snapshot_json()
    snapshot = Snapshot.from_json(saved)
    transport = InProcessTransport()
    bare = make_step(saved)
    with (
        tempfile.TemporaryDirectory() as workdir,
        redis_server() as redis_service,
        postgres_server("mfa_fsm_bench") as postgres_service,
    ):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    configure_logging()
    with variants() as found:
        for variant in found.values():  # warm up caches, connections and prepared scripts
            timed(variant, 5)
        results: dict[str, list[float]] = {name: [] for name in found}
        for _ in range(args.rounds):
            for name, variant in found.items():
                results[name].append(timed(variant, args.cycles))
    print(f"{args.rounds} rounds x {args.cycles} steps, variants interleaved; µs per step")
    medians = {name: statistics.median(samples) for name, samples in results.items()}
    bare = medians[BARE]
    for name, samples in results.items():
        median = medians[name]
        print(
            f"  {name:27} median {median:8.1f}  min {min(samples):8.1f}  max {max(samples):8.1f}"
            f"  {median / bare:5.2f}x bare  {1e6 / median:7.0f} flows/s"
        )
    flow = entrust_in_second_factor_selected(token_chars=600)
    token = SealedState({"k": SealedState.generate_key()}).seal(flow.snapshot())
    size = len(flow.snapshot().to_json().encode())
    print(
        f"sealed Entrust flow in SecondFactorSelected (two 600-character IdP tokens): "
        f"{size} bytes of JSON -> {len(token)}-character token (limit 2048)"
    )
    print(
        json.dumps(
            {
                "medians_us": {name: round(median, 1) for name, median in medians.items()},
                "ratios": {name: round(median / bare, 2) for name, median in medians.items()},
                "sealed_token_chars": len(token),
            }
        )
    )


if __name__ == "__main__":
    main()
