"""The engine hands its own transport and clock to every flow it starts or restores, and
refuses what it cannot use with a message that says what to do."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mfa_fsm import Engine, EntrustConfig, SealedEngine
from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.stores.memory import MemoryStore
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.engine import entrust_config

#: well before the emulator's (real) clock, so the flow's lifetime, not the IdP token's, sets
#: the first deadline: NOW + flow_lifetime
NOW = time.time() - 10_000


@pytest.fixture
def emulator() -> Iterator[EntrustEmulator]:
    with EntrustEmulator() as running:
        yield running


@pytest.fixture
def config(emulator: EntrustEmulator) -> EntrustConfig:
    return entrust_config(emulator.base_url, emulator.application_id)


def test_start_and_send_use_the_engines_transport_and_clock(config: EntrustConfig) -> None:
    clock = [NOW]
    transport = SecretRecorder()
    engine = Engine(
        MemoryStore(clock=lambda: clock[0]), [config], transport=transport, clock=lambda: clock[0]
    )
    view = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    assert transport.secrets  # the IdP call of start went through the engine's transport
    assert view.deadline == NOW + config.flow_lifetime  # the engine's clock, not the wall clock
    sent = len(transport.secrets)
    assert engine.send(view.flow_id, "submit_first_factor").state == "AwaitingSecondFactor"
    assert len(transport.secrets) > sent  # the step's call too
    clock[0] = view.deadline  # the engine's clock says the deadline has come
    assert engine.send(view.flow_id, "cancel").failure == "expired"


def test_the_sealed_engine_uses_its_transport_and_clock(config: EntrustConfig) -> None:
    clock = [NOW]
    transport = SecretRecorder()
    sealed = SealedState({"k1": bytes(32)}, clock=lambda: clock[0])
    engine = SealedEngine(sealed, [config], transport=transport, clock=lambda: clock[0])
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    assert transport.secrets and view.deadline == NOW + config.flow_lifetime
    view, token = engine.send(token, view.flow_id, "submit_first_factor")
    assert view.state == "AwaitingSecondFactor"
    _, new_token = engine.send(
        token, view.flow_id, "select_second_factor", factor="OTP", delivery="SMS"
    )
    assert new_token != token  # an advancing step gives a new token


@pytest.mark.parametrize(("ttl", "ok"), [(0.5, True), (60, True), (0, False), (-1, False)])
def test_claim_ttl_must_be_positive(config: EntrustConfig, ttl: float, ok: bool) -> None:
    if ok:
        assert Engine(MemoryStore(), [config], claim_ttl=ttl).claim_ttl == ttl
    else:
        with pytest.raises(
            UsageError, match=r"^claim_ttl must be positive: it is how long a step holds its flow$"
        ):
            Engine(MemoryStore(), [config], claim_ttl=ttl)


def test_two_configurations_of_one_provider_are_refused(config: EntrustConfig) -> None:
    with pytest.raises(UsageError, match=r"^two EntrustConfig were given; an engine takes one"):
        Engine(MemoryStore(), [config, config])
