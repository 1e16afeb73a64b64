"""Starting again after a flow ended ("send another push" after one expired, "try another way"
after any other ending), on the Flow API (blocking and awaited) and every engine, over real
HTTP to the emulators: a fresh flow for the same user, straight to the factor picker where the
application vouched for the user, and the refusals (a live flow, another user, a flow that
ended ``unavailable``, a typed user where only a vouched one may start)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from mfa_fsm import (
    AsyncEngine,
    AsyncMemoryStore,
    Engine,
    EntrustConfig,
    EntrustFlow,
    EventNotAllowed,
    MemoryStore,
    SealedEngine,
    SealedState,
    StoreLedger,
    Throttled,
    UsageError,
    VerifiedUser,
    VerifiedUserRequired,
)
from mfa_fsm.core.flow import can_start_again
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.core.transport_async import HttpxTransport
from mfa_fsm.cyberark import CyberArkFlow
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from tests.support.cyberark import config_for as cyberark_config
from tests.support.cyberark import pick

JSMITH = VerifiedUser("jsmith", checked_by="a test's own check")
#: Seconds an emulated Entrust push lives: short, so a test sees it expire at IDaaS.
PUSH_LIFETIME = 0.3


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator


@pytest.fixture
def short_pushes() -> Iterator[EntrustEmulator]:
    with EntrustEmulator(push_lifetime=PUSH_LIFETIME) as emulator:
        yield emulator


def entrust(emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(
        base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
    )


def expired_push(flow: EntrustFlow) -> FlowView:
    """Select the push, let it expire at IDaaS, poll: ``Failed(expired)``."""
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="TOKENPUSH")
    time.sleep(PUSH_LIFETIME + 0.1)
    view = flow.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    return view


def test_flow_again_after_an_expired_push_sends_another(short_pushes: EntrustEmulator) -> None:
    """Flow API: ``again`` gives a fresh flow at the picker (EXTERNAL confirmed for the
    vouched user, no password asked), another push is sent and its approval signs in."""
    flow = EntrustFlow.start(config=entrust(short_pushes), verified_user=JSMITH)
    assert can_start_again(expired_push(flow))
    ended = flow.snapshot()
    fresh = flow.again(verified_user=JSMITH, client_ip="198.51.100.7")
    assert flow.snapshot() == ended  # the ended flow is not changed
    assert fresh.flow_id != flow.flow_id
    assert fresh.state == "AwaitingSecondFactor"
    assert "TOKENPUSH" in {choice.id for choice in fresh.view().choices}
    assert fresh.send("select_second_factor", factor="TOKENPUSH").state == "OobPending"
    short_pushes.approve_push("jsmith")
    view = fresh.send("poll")
    assert view.state == "Completed" and view.result is not None
    assert view.result.user_id == "jsmith"


def test_flow_again_awaited(short_pushes: EntrustEmulator) -> None:
    """``again_async`` over httpx: the same fresh flow at the picker."""

    async def scenario() -> str:
        async with HttpxTransport() as transport:
            flow = await EntrustFlow.start_async(
                config=entrust(short_pushes), verified_user=JSMITH, transport=transport
            )
            await flow.send_async("submit_first_factor")
            await flow.send_async("select_second_factor", factor="TOKENPUSH")
            await asyncio.sleep(PUSH_LIFETIME + 0.1)
            assert (await flow.send_async("poll")).failure == "expired"
            fresh = await flow.again_async(verified_user=JSMITH)
            return fresh.state

    assert asyncio.run(scenario()) == "AwaitingSecondFactor"


def test_a_typed_user_starts_again_at_the_password(short_pushes: EntrustEmulator) -> None:
    """Without a VerifiedUser the IdP checks a first factor again: pwuser's password."""
    flow = EntrustFlow.start(config=entrust(short_pushes), user="pwuser")
    flow.send("submit_first_factor", answer="Passw0rd!")
    flow.send("cancel")
    fresh = flow.again()
    assert fresh.state == "AwaitingFirstFactor"
    assert fresh.view().challenge is not None and fresh.view().challenge.kind == "password"
    assert fresh.send("submit_first_factor", answer="Passw0rd!").state == "AwaitingSecondFactor"


def test_stored_flow_again(short_pushes: EntrustEmulator) -> None:
    """Engine: a new stored flow; the ended one stays as it was."""
    engine = Engine(MemoryStore(), [entrust(short_pushes)])
    flow_id = engine.start("entrust", verified_user=JSMITH).flow_id
    engine.send(flow_id, "submit_first_factor")
    engine.send(flow_id, "select_second_factor", factor="TOKENPUSH")
    time.sleep(PUSH_LIFETIME + 0.1)
    ended = engine.send(flow_id, "poll")
    assert ended.failure == "expired"
    fresh = engine.again(flow_id, verified_user=JSMITH, client_ip="198.51.100.7")
    assert fresh.state == "AwaitingSecondFactor" and fresh.flow_id != flow_id
    assert engine.view(flow_id) == ended
    engine.send(fresh.flow_id, "select_second_factor", factor="TOKENPUSH")
    short_pushes.approve_push("jsmith")
    assert engine.send(fresh.flow_id, "poll").state == "Completed"


def test_sealed_flow_again(short_pushes: EntrustEmulator) -> None:
    """SealedEngine (with a ledger): a new token for the new flow."""
    sealed = SealedState({"k": SealedState.generate_key()}, ledger=StoreLedger(MemoryStore()))
    engine = SealedEngine(sealed, [entrust(short_pushes)])
    view, token = engine.start("entrust", verified_user=JSMITH)
    flow_id = view.flow_id
    view, token = engine.send(token, flow_id, "submit_first_factor")
    view, token = engine.send(token, flow_id, "select_second_factor", factor="TOKENPUSH")
    time.sleep(PUSH_LIFETIME + 0.1)
    view, token = engine.send(token, flow_id, "poll")
    assert view.failure == "expired"
    fresh, fresh_token = engine.again(token, flow_id, verified_user=JSMITH)
    assert fresh.state == "AwaitingSecondFactor" and fresh_token != token
    fresh, fresh_token = engine.send(
        fresh_token, fresh.flow_id, "select_second_factor", factor="TOKENPUSH"
    )
    short_pushes.approve_push("jsmith")
    assert engine.send(fresh_token, fresh.flow_id, "poll")[0].state == "Completed"


def test_async_engine_again(short_pushes: EntrustEmulator) -> None:
    async def scenario() -> str:
        async with AsyncEngine(AsyncMemoryStore(), [entrust(short_pushes)]) as engine:
            flow_id = (await engine.start("entrust", verified_user=JSMITH)).flow_id
            await engine.send(flow_id, "submit_first_factor")
            await engine.send(flow_id, "select_second_factor", factor="TOKENPUSH")
            await asyncio.sleep(PUSH_LIFETIME + 0.1)
            assert (await engine.send(flow_id, "poll")).failure == "expired"
            return (await engine.again(flow_id, verified_user=JSMITH)).state

    assert asyncio.run(scenario()) == "AwaitingSecondFactor"


def test_again_is_refused_before_any_idp_call(entrust_emulator: EntrustEmulator) -> None:
    """A live flow and another user are refused before IDaaS is called; a typed user whose
    only first factor is EXTERNAL is refused as ``start(user=...)`` refuses it."""
    flow = EntrustFlow.start(config=entrust(entrust_emulator), verified_user=JSMITH)
    flow.send("submit_first_factor")
    calls = len(entrust_emulator.calls)
    with pytest.raises(EventNotAllowed):
        flow.again(verified_user=JSMITH)
    flow.send("cancel")
    calls = len(entrust_emulator.calls)
    with pytest.raises(UsageError, match="another user"):
        flow.again(verified_user=VerifiedUser("pwuser"))
    assert len(entrust_emulator.calls) == calls
    with pytest.raises(VerifiedUserRequired):  # as start(user=): IDaaS offers EXTERNAL only
        flow.again()
    engine = Engine(MemoryStore(), [entrust(entrust_emulator)])
    flow_id = engine.start("entrust", verified_user=JSMITH).flow_id
    with pytest.raises(EventNotAllowed):
        engine.again(flow_id, verified_user=JSMITH)


def test_again_counts_as_a_start_for_the_throttle(short_pushes: EntrustEmulator) -> None:
    """The fresh flow is a start like any other: past the user's start rate it is refused."""
    throttle = Throttle(starts_per_user="1/minute")
    flow = EntrustFlow.start(config=entrust(short_pushes), verified_user=JSMITH, throttle=throttle)
    flow.send("submit_first_factor")
    flow.send("cancel")
    with pytest.raises(Throttled):
        flow.again(verified_user=JSMITH)


def test_duo_again_after_a_push_timed_out() -> None:
    """Duo: the push times out (Duo ``timeout``: expired), another flow for the vouched user
    is at the device picker at once, and a passcode signs in; a typed user is refused."""
    with DuoEmulator() as emulator:
        creds = emulator.credentials
        config = DuoConfig(
            credentials=DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
            base_url=emulator.base_url,
            poll_interval=0.0,
        )
        flow = DuoFlow.start(config=config, verified_user=JSMITH)
        flow.send("submit_first_factor")
        flow.send("select_second_factor", factor="push")
        emulator.answer("jsmith", "timeout")
        view = flow.send("poll")
        assert (view.state, view.failure) == ("Failed", "expired")
        with pytest.raises(VerifiedUserRequired):
            flow.again()
        fresh = flow.again(verified_user=JSMITH)
        assert fresh.state == "AwaitingSecondFactor"
        fresh.send("select_second_factor", factor="passcode")
        assert fresh.send("submit_response", answer=DEMO_PASSCODE).state == "Completed"


def test_cyberark_again_asks_the_password_again(cyberark_emulator: CyberArkEmulator) -> None:
    """CyberArk checks every challenge itself: a fresh flow starts at its password."""
    config = cyberark_config(cyberark_emulator)
    flow = CyberArkFlow.start(config=config, user="alice")
    flow.send("submit_first_factor", answer="alice-password")
    view = flow.send("select_second_factor", factor=pick(flow.view(), "SMS"))
    view = flow.send("cancel")
    assert view.failure == "cancelled"
    fresh = flow.again()
    assert fresh.state == "AwaitingFirstFactor"
    assert fresh.send("submit_first_factor", answer="alice-password").state in (
        "AwaitingSecondFactor",
        "SecondFactorSelected",
    )


def test_unavailable_is_not_started_again(cyberark_emulator: CyberArkEmulator) -> None:
    """A flow that ended because no factor can be used here would end the same way."""
    from mfa_fsm.testing.cyberark import UserMechanism  # noqa: PLC0415

    cyberark_emulator.add_user(
        "keyonly", password="keyonly-password", challenges=[["UP"], [UserMechanism("U2F")]]
    )
    flow = CyberArkFlow.start(config=cyberark_config(cyberark_emulator), user="keyonly")
    view = flow.send("submit_first_factor", answer="keyonly-password")
    assert (view.state, view.failure) == ("Failed", "unavailable")
    assert not can_start_again(view)
    with pytest.raises(UsageError, match="set up another method"):
        flow.again()


def test_async_sealed_engine_again(short_pushes: EntrustEmulator) -> None:
    """AsyncSealedEngine (no ledger): a new token for the new flow, at the picker."""
    from mfa_fsm import AsyncSealedEngine  # noqa: PLC0415

    async def scenario() -> str:
        sealed = SealedState({"k": SealedState.generate_key()})
        async with AsyncSealedEngine(sealed, [entrust(short_pushes)]) as engine:
            view, token = await engine.start("entrust", verified_user=JSMITH)
            flow_id = view.flow_id
            view, token = await engine.send(token, flow_id, "submit_first_factor")
            view, token = await engine.send(
                token, flow_id, "select_second_factor", factor="TOKENPUSH"
            )
            await asyncio.sleep(PUSH_LIFETIME + 0.1)
            view, token = await engine.send(token, flow_id, "poll")
            assert view.failure == "expired"
            fresh, fresh_token = await engine.again(token, flow_id, verified_user=JSMITH)
            assert fresh.flow_id != flow_id and fresh_token != token
            return fresh.state

    assert asyncio.run(scenario()) == "AwaitingSecondFactor"
