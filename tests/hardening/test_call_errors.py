"""Calls that do not match the public API raise a typed MfaError, never Python's own error.

A wrong keyword, a missing or extra argument, or a value of the wrong type given to an
engine, a flow, a store, a provider configuration or the web blueprint factory is a
UsageError (InvalidInput for a value that names the offending field) whose message says
what to pass instead; Python's TypeError, AttributeError or ValueError never reaches the
caller, and nothing was changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from mfa_fsm import (
    CyberArkConfig,
    Engine,
    EntrustConfig,
    InvalidInput,
    MfaError,
    SealedEngine,
    UsageError,
)
from mfa_fsm.core.calls import checked, is_count, is_seconds
from mfa_fsm.cyberark.flow import CyberArkFlow
from mfa_fsm.duo import DuoConfig
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.stores.sql import SqlStore
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.web import mfa_blueprint


@pytest.fixture(scope="module")
def emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator() as running:
        yield running


class World:
    """One engine, sealed engine, store and flow to call wrongly."""

    def __init__(self, base_url: str) -> None:
        self.config = CyberArkConfig(base_url=base_url)
        self.store = MemoryStore()
        self.engine = Engine(self.store, [self.config])
        self.sealed = SealedState({"k1": SealedState.generate_key()})
        self.sealed_engine = SealedEngine(self.sealed, [self.config])
        self.view = self.engine.start("cyberark", user="bob")
        self.sealed_view, self.token = self.sealed_engine.start("cyberark", user="bob")
        self.flow = CyberArkFlow.start(config=self.config, user="bob")


@pytest.fixture
def world(emulator: CyberArkEmulator) -> World:
    return World(emulator.base_url)


#: name -> (the wrong call, the error class it must raise, what its message must say)
WRONG_CALLS: dict[str, tuple[Callable[[World], Any], type[MfaError], str]] = {
    # Engine and SealedEngine: constructors
    "Engine(unknown keyword)": (
        lambda w: Engine(w.store, [w.config], claim_tt=5),
        UsageError,
        r"^Engine\(\) got an unexpected keyword argument 'claim_tt'; see help\(Engine\)",
    ),
    "Engine(no configs)": (lambda w: Engine(w.store), UsageError, "missing a required argument"),
    "Engine(configs=None)": (
        lambda w: Engine(w.store, None),
        UsageError,
        "configs must be a list of provider configurations",
    ),
    "Engine(store=None)": (
        lambda w: Engine(None, [w.config]),
        UsageError,
        r"store must be a FlowStore \(MemoryStore, SqlStore, RedisStore\)",
    ),
    "Engine(claim_ttl='5')": (
        lambda w: Engine(w.store, [w.config], claim_ttl="5"),
        UsageError,
        "claim_ttl must be positive",
    ),
    "Engine(step_timeout=True)": (
        lambda w: Engine(w.store, [w.config], step_timeout=True),
        UsageError,
        "step_timeout must be positive",
    ),
    "Engine(clock=5)": (
        lambda w: Engine(w.store, [w.config], clock=5),
        UsageError,
        "clock must be a callable",
    ),
    "Engine(transport=5)": (
        lambda w: Engine(w.store, [w.config], transport=5),
        UsageError,
        r"transport must have a send\(HttpRequest\) method",
    ),
    "SealedEngine(sealed=store)": (
        lambda w: SealedEngine(w.store, [w.config]),
        UsageError,
        r"sealed must be a SealedState\(keys, ...\)",
    ),
    # Engine: calls
    "Engine.start(unknown keyword)": (
        lambda w: w.engine.start("cyberark", usr="bob"),
        UsageError,
        r"^CyberArkFlow\.start\(\) got an unexpected keyword argument 'usr'; see help",
    ),
    "Engine.start(config=)": (
        lambda w: w.engine.start("cyberark", user="bob", config=w.config),
        UsageError,
        r"start\(\) got \['config'\], which the engine passes itself",
    ),
    "Engine.start(transport=, clock=)": (
        lambda w: w.engine.start("cyberark", user="bob", transport=None, clock=None),
        UsageError,
        r"start\(\) got \['clock', 'transport'\]",
    ),
    "Engine.start(no provider)": (
        lambda w: w.engine.start(),
        UsageError,
        r"^Engine\.start\(\) missing a required argument: 'provider'",
    ),
    "Engine.send(no event)": (
        lambda w: w.engine.send(w.view.flow_id),
        UsageError,
        r"^Engine\.send\(\) missing a required argument: 'event'",
    ),
    "Engine.view(extra argument)": (
        lambda w: w.engine.view(w.view.flow_id, 1),
        UsageError,
        r"^Engine\.view\(\) too many positional arguments",
    ),
    "Engine.view(unknown keyword)": (
        lambda w: w.engine.view(w.view.flow_id, x=1),
        UsageError,
        "unexpected keyword argument 'x'",
    ),
    "Engine.hand_off(extra argument)": (
        lambda w: w.engine.hand_off(w.view.flow_id, 1),
        UsageError,
        "too many positional arguments",
    ),
    "Engine.delete(nothing)": (lambda w: w.engine.delete(), UsageError, "missing a required"),
    "SealedEngine.start(unknown keyword)": (
        lambda w: w.sealed_engine.start("cyberark", usr="bob"),
        UsageError,
        "unexpected keyword argument 'usr'",
    ),
    "SealedEngine.send(no event)": (
        lambda w: w.sealed_engine.send(w.token, w.sealed_view.flow_id),
        UsageError,
        r"^SealedEngine\.send\(\) missing a required argument: 'event'",
    ),
    "SealedEngine.view(no flow id)": (
        lambda w: w.sealed_engine.view(w.token),
        UsageError,
        "missing a required argument: 'flow_id'",
    ),
    "SealedEngine.hand_off(no flow id)": (
        lambda w: w.sealed_engine.hand_off(w.token),
        UsageError,
        r"^SealedEngine\.hand_off\(\) missing a required argument: 'flow_id'",
    ),
    # Flow
    "Flow.start(unknown keyword)": (
        lambda w: CyberArkFlow.start(config=w.config, usr="bob"),
        UsageError,
        "unexpected keyword argument 'usr'",
    ),
    "Flow.start(no config)": (
        lambda w: CyberArkFlow.start(user="bob"),
        UsageError,
        "missing a required argument: 'config'",
    ),
    "Flow.start(positional)": (
        lambda w: CyberArkFlow.start(w.config, "bob"),
        UsageError,
        "too many positional arguments",
    ),
    "Flow.start(config of another type)": (
        lambda w: CyberArkFlow.start(config=5, user="bob"),
        UsageError,
        r"^CyberArkFlow takes a CyberArkConfig as config=, not a int$",
    ),
    "Flow.restore(no config)": (
        lambda w: CyberArkFlow.restore(w.flow.snapshot()),
        UsageError,
        "missing a required argument: 'config'",
    ),
    "Flow.restore(unknown keyword)": (
        lambda w: CyberArkFlow.restore(w.flow.snapshot(), config=w.config, store=w.store),
        UsageError,
        "unexpected keyword argument 'store'",
    ),
    "Flow.restore(clock=5)": (
        lambda w: CyberArkFlow.restore(w.flow.snapshot(), config=w.config, clock=5),
        UsageError,
        "clock must be a callable",
    ),
    "Flow.send(positional data)": (
        lambda w: w.flow.send("submit_first_factor", "secret"),
        UsageError,
        r"^CyberArkFlow\.send\(\)|^Flow\.send\(\) too many positional arguments",
    ),
    # Stores
    "MemoryStore(unknown keyword)": (
        lambda w: MemoryStore(ttl=5),
        UsageError,
        r"^MemoryStore\(\) got an unexpected keyword argument 'ttl'",
    ),
    "MemoryStore(margin='5')": (
        lambda w: MemoryStore(margin="5"),
        UsageError,
        "margin must not be negative",
    ),
    "SqlStore(url=5)": (lambda w: SqlStore(5), UsageError, "url must be a database URL"),
    "RedisStore(client=url)": (
        lambda w: RedisStore("redis://127.0.0.1:6379"),
        UsageError,
        r"client must be a redis\.Redis",
    ),
    "RedisStore(unknown keyword)": (
        lambda w: RedisStore(redis.Redis(), prefx="x"),
        UsageError,
        "unexpected keyword argument 'prefx'",
    ),
    "store.create(a view)": (
        lambda w: w.store.create(w.view),
        InvalidInput,
        r"^snapshot: must be a Snapshot: save what Flow\.snapshot\(\) returns$",
    ),
    "store.save(JSON text)": (
        lambda w: w.store.save(w.flow.snapshot().to_json(), expected_version=0),
        InvalidInput,
        "snapshot: must be a Snapshot",
    ),
    "store.save(expected_version='0')": (
        lambda w: w.store.save(w.flow.snapshot(), expected_version="0"),
        InvalidInput,
        "expected_version: must be the version the flow was loaded at",
    ),
    "store.save(no expected_version)": (
        lambda w: w.store.save(w.flow.snapshot()),
        UsageError,
        "missing a required argument: 'expected_version'",
    ),
    "store.claim(ttl='5')": (
        lambda w: w.store.claim(w.view.flow_id, 0, ttl="5"),
        UsageError,
        "ttl must be positive",
    ),
    "store.purge_expired(limit=1.5)": (
        lambda w: w.store.purge_expired(1.5),
        UsageError,
        "limit must be at least 1",
    ),
    "store.load(two ids)": (
        lambda w: w.store.load(w.view.flow_id, w.view.flow_id),
        UsageError,
        "too many positional arguments",
    ),
    "SealedState(keys=one key)": (
        lambda w: SealedState(SealedState.generate_key()),
        UsageError,
        r"keys must map key ids to keys",
    ),
    "SealedState(max_age='60')": (
        lambda w: SealedState({"k1": SealedState.generate_key()}, max_age="60"),
        UsageError,
        "max_age must be positive",
    ),
    "SealedState.open(no flow id)": (
        lambda w: w.sealed.open(w.token),
        UsageError,
        "missing a required argument: 'flow_id'",
    ),
    # Provider configurations
    "CyberArkConfig(misspelt field)": (
        lambda w: CyberArkConfig(base_url=w.config.base_url, poll_intervall=1),
        UsageError,
        r"^CyberArkConfig\(\) got an unexpected keyword argument 'poll_intervall'",
    ),
    "EntrustConfig(no application id)": (
        lambda w: EntrustConfig(base_url=w.config.base_url),
        UsageError,
        r"^EntrustConfig\(\) missing a required argument: 'application_id'",
    ),
    "DuoConfig(nothing)": (
        lambda w: DuoConfig(),
        UsageError,
        r"^DuoConfig\(\) missing a required argument: 'credentials'",
    ),
    # The web blueprint factory
    "mfa_blueprint(None)": (
        lambda w: mfa_blueprint(None),
        UsageError,
        r"mfa_blueprint\(\) takes an Engine or SealedEngine",
    ),
    "mfa_blueprint(a store)": (
        lambda w: mfa_blueprint(w.store),
        UsageError,
        r"mfa_blueprint\(\) takes an Engine or SealedEngine",
    ),
    "mfa_blueprint(unknown keyword)": (
        lambda w: mfa_blueprint(w.engine, secure=False),
        UsageError,
        "unexpected keyword argument 'secure'",
    ),
}


@pytest.mark.parametrize("name", WRONG_CALLS)
def test_wrong_calls_raise_typed_errors_that_say_what_to_do(world: World, name: str) -> None:
    """Each wrong call raises its typed error (no TypeError, AttributeError, ValueError),
    with a message that names the argument; the stored flows are unchanged."""
    call, error, message = WRONG_CALLS[name]
    stored = world.engine.view(world.view.flow_id)
    snapshot = world.flow.snapshot()
    with pytest.raises(error, match=message) as raised:
        call(world)
    assert raised.value.__cause__ is None
    assert world.engine.view(world.view.flow_id) == stored
    assert world.flow.snapshot() == snapshot


def test_a_bad_call_never_runs_the_body() -> None:
    """checked() turns only a call that does not bind into UsageError; a TypeError raised
    inside the function is raised as it was."""
    ran: list[int] = []

    @checked
    def fails_inside(value: int) -> None:
        ran.append(value)
        raise TypeError("from inside")

    with pytest.raises(UsageError, match=r"fails_inside\(\) got an unexpected keyword"):
        fails_inside(1, extra=2)  # type: ignore[call-arg]
    assert ran == []
    with pytest.raises(TypeError, match=r"^from inside$"):
        fails_inside(1)
    assert ran == [1]


@pytest.mark.parametrize(
    ("value", "zero", "ok"),
    [
        (1, False, True),
        (0.5, False, True),
        (0, False, False),
        (0, True, True),
        (-1, True, False),
        (True, False, False),
        ("5", False, False),
        (float("nan"), True, False),
        (None, False, False),
    ],
)
def test_is_seconds_takes_only_real_numbers(value: object, zero: bool, ok: bool) -> None:
    assert is_seconds(value, zero=zero) is ok


def test_is_count_takes_only_whole_numbers() -> None:
    assert is_count(1, least=1)
    assert not is_count(0, least=1)
    assert not is_count(True, least=0)
    assert not is_count(1.0, least=0)
