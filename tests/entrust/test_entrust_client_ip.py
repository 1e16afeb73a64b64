"""The end user's address reaches every Entrust request, per step (Flow API and engines)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from mfa_fsm import (
    Engine,
    EntrustConfig,
    EntrustFlow,
    InvalidInput,
    MemoryStore,
    SealedEngine,
    StoreLedger,
    VerifiedUser,
)
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE

ALICE_IP, BOB_IP, FIXED_IP = "203.0.113.10", "2001:db8::20", "192.0.2.1"


def config_for(emulator: EntrustEmulator, **extra: Any) -> EntrustConfig:
    return EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, **extra
    )


def addresses(emulator: EntrustEmulator, since: int) -> list[Any]:
    """The clientIp of each call logged after the first ``since`` (None: a call with no body,
    the logout, which the API gives no body to carry one)."""
    return [call.body.get("clientIp") if call.body else None for call in emulator.calls[since:]]


def test_flow_api_sends_each_steps_address(entrust_emulator: EntrustEmulator) -> None:
    """start(client_ip=) and send(client_ip=) put that step's address on each of its calls
    (query, select, complete); a step without one falls back to the config's fixed address."""
    config = config_for(entrust_emulator, client_ip=FIXED_IP)
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), client_ip=ALICE_IP
    )
    assert addresses(entrust_emulator, 0) == [ALICE_IP]
    flow.send("submit_first_factor", client_ip=BOB_IP)
    assert addresses(entrust_emulator, 1) == [BOB_IP]
    flow.send("select_second_factor", factor="TOKEN")
    assert addresses(entrust_emulator, 2) == [FIXED_IP]
    flow.send("submit_response", answer=DEMO_TOKEN_CODE, client_ip=ALICE_IP)
    assert addresses(entrust_emulator, 3) == [ALICE_IP]
    assert flow.state == "Completed"


def test_malformed_address_is_refused_before_any_call(entrust_emulator: EntrustEmulator) -> None:
    """A client_ip that is not an IP address is InvalidInput, with no IdP call."""
    with pytest.raises(InvalidInput, match="client_ip"):
        EntrustFlow.start(
            config=config_for(entrust_emulator),
            verified_user=VerifiedUser("jsmith"),
            client_ip="not-an-ip",
        )
    flow = EntrustFlow.start(
        config=config_for(entrust_emulator), verified_user=VerifiedUser("jsmith")
    )
    calls = len(entrust_emulator.calls)
    with pytest.raises(InvalidInput, match="client_ip"):
        flow.send("submit_first_factor", client_ip="10.0.0.300")
    assert len(entrust_emulator.calls) == calls
    assert flow.version == 0


def login_two_users(engine: Any, emulator: EntrustEmulator, sealed: bool) -> None:
    """Interleave two users' logins through ``engine``; every call of each step must carry
    the address of the user whose step it was."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("submit_first_factor", {}),
        ("select_second_factor", {"factor": "TOKEN"}),
        ("submit_response", {"answer": DEMO_TOKEN_CODE}),
    ]
    held: dict[str, Any] = {}
    emulator.add_user("ann", authenticators=("TOKEN",))
    for user, ip in (("jsmith", ALICE_IP), ("ann", BOB_IP)):
        since = len(emulator.calls)
        started = engine.start("entrust", verified_user=VerifiedUser(user), client_ip=ip)
        held[user] = started
        assert set(addresses(emulator, since)) == {ip}
    for event, data in steps:
        for user, ip in (("jsmith", ALICE_IP), ("ann", BOB_IP)):
            since = len(emulator.calls)
            if sealed:
                view, token = held[user]
                held[user] = engine.send(token, view.flow_id, event, client_ip=ip, **data)
                state = held[user][0].state
            else:
                state = engine.send(held[user].flow_id, event, client_ip=ip, **data).state
            assert addresses(emulator, since) == [ip] * (len(emulator.calls) - since)
            assert len(emulator.calls) > since
    assert state == "Completed"


def test_engine_steps_carry_their_own_users_address(entrust_emulator: EntrustEmulator) -> None:
    """Two users' interleaved steps through one Engine each carry their own address."""
    engine = Engine(MemoryStore(), [config_for(entrust_emulator, client_ip=FIXED_IP)])
    login_two_users(engine, entrust_emulator, sealed=False)


def test_sealed_engine_steps_carry_their_own_users_address(
    entrust_emulator: EntrustEmulator,
) -> None:
    """The same through a SealedEngine: the address is never sealed into the token."""
    sealed = SealedState({"k": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore()))
    engine = SealedEngine(sealed, [config_for(entrust_emulator)])
    login_two_users(engine, entrust_emulator, sealed=True)
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"), client_ip=ALICE_IP)
    assert ALICE_IP not in repr(sealed.open(token, flow_id=view.flow_id))


def test_address_reaches_no_log_line(entrust_emulator: EntrustEmulator) -> None:
    """The end user's address is personal data: no log event of a whole login carries it."""
    with structlog.testing.capture_logs() as events:
        flow = EntrustFlow.start(
            config=config_for(entrust_emulator),
            verified_user=VerifiedUser("jsmith"),
            client_ip=ALICE_IP,
        )
        flow.send("submit_first_factor", client_ip=ALICE_IP)
        flow.send("select_second_factor", factor="TOKEN", client_ip=ALICE_IP)
        flow.send("submit_response", answer=DEMO_TOKEN_CODE, client_ip=ALICE_IP)
    assert len(events) >= 4
    assert not [event for event in events if ALICE_IP in repr(event)]
