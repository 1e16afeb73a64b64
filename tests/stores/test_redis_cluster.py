"""The Redis store on a real three-node Redis Cluster: the way to scale the store out.

The fixture starts three ``redis-server --cluster-enabled yes`` nodes and has
``redis-cli --cluster create`` split the hash slots among them; the store gets a
``redis.cluster.RedisCluster`` client and nothing else changes.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from mfa_fsm import Engine, EntrustConfig
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.engine import PauseAfter, engine_step, entrust_config, race_in_threads
from tests.support.servers import RunningServer

LOGINS = 20
WORKERS = 3
ROUNDS = 3


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing the session's cluster never meet."""
    return f"mfa_fsm:test:{secrets.token_hex(4)}:"


@pytest.fixture
def cluster_client(redis_cluster_service: list[RunningServer]) -> Iterator[RedisCluster]:
    node = redis_cluster_service[0]
    client = RedisCluster(host=node.host, port=node.port)
    yield client
    client.close()


@pytest.fixture
def store(cluster_client: RedisCluster, prefix: str) -> RedisStore:
    return RedisStore(cluster_client, prefix=prefix)


@pytest.fixture
def config(entrust_emulator: EntrustEmulator) -> EntrustConfig:
    return entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)


def keys_per_node(nodes: list[RunningServer], prefix: str) -> list[int]:
    """How many of this test's keys each node holds (asked of each node directly)."""
    counts = []
    for node in nodes:
        with redis.Redis(host=node.host, port=node.port) as direct:
            counts.append(len(direct.keys(prefix + "*")))
    return counts


def test_cluster_has_three_masters(redis_cluster_service: list[RunningServer]) -> None:
    with redis.Redis(port=redis_cluster_service[0].port) as direct:
        info = direct.cluster("info")
        assert info["cluster_state"] == "ok" and int(info["cluster_size"]) == 3


def test_twenty_entrust_logins_spread_over_every_node(
    cluster_client: RedisCluster,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
    redis_cluster_service: list[RunningServer],
) -> None:
    """20 of 20 logins complete through the Engine; their keys live on all three nodes, each
    on the node that owns its hash slot. (Fixed flow ids, so the spread is the same on every
    run; random ones spread the same way, leaving a node empty once in ~1100 runs of 20.)"""
    prefix = "mfa_fsm:cluster-logins:"
    store = RedisStore(cluster_client, prefix=prefix)
    flow_ids = [f"login-{index:02d}" for index in range(LOGINS)]
    for flow_id in flow_ids:  # what a failed earlier run may have left
        store.delete(flow_id)
    engine = Engine(store, [config], transport=recorder)
    for flow_id in flow_ids:
        engine.start("entrust", verified_user=VerifiedUser("jsmith"), flow_id=flow_id)
        engine.send(flow_id, "submit_first_factor")
        engine.send(flow_id, "select_second_factor", factor="OTP", delivery="SMS")
        code = entrust_emulator.last_otp("jsmith")
        view = engine.send(flow_id, "submit_response", answer=code)
        assert (view.state, view.version) == ("Completed", 3)
        assert store.load(flow_id).version == 3
    counts = keys_per_node(redis_cluster_service, prefix)
    ports = [node.port for node in redis_cluster_service]
    owners = Counter(
        ports.index(cluster_client.get_node_from_key(prefix + f).port) for f in flow_ids
    )
    assert counts == [owners[i] for i in range(3)]
    assert sum(counts) == LOGINS and all(count > 0 for count in counts), counts
    for flow_id in flow_ids:
        engine.delete(flow_id)
    assert keys_per_node(redis_cluster_service, prefix) == [0, 0, 0]


def test_racing_steps_one_winner_per_version(
    store: RedisStore,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """Threads polling one flow at once through the cluster: one winner per version, and the
    IdP sees one poll per winning step."""
    engine = Engine(store, [config], transport=recorder)
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    assert engine.send(flow_id, "select_second_factor", factor="TOKENPUSH").state == "OobPending"
    first = store.load(flow_id).version
    polls = len(entrust_emulator.calls_to("/TOKENPUSH/complete"))

    def make_step(barrier: Any) -> Callable[[], int]:
        racer = Engine(PauseAfter(store, "load", barrier), [config], transport=recorder)
        return engine_step(racer, flow_id, "poll")

    outcomes = race_in_threads(make_step, WORKERS, ROUNDS)
    versions = range(first, first + ROUNDS)
    assert Counter(version for version, won in outcomes if won) == Counter(versions)
    assert Counter(version for version, _ in outcomes) == Counter(dict.fromkeys(versions, WORKERS))
    assert len(entrust_emulator.calls_to("/TOKENPUSH/complete")) - polls == ROUNDS
    final = store.load(flow_id)
    assert final.version == first + ROUNDS and final.context.polls == ROUNDS
    entrust_emulator.approve_push("jsmith")
    assert engine.send(flow_id, "poll").state == "Completed"
