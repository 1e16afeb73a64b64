"""AsyncEngine and AsyncSealedEngine in their own event loop: full logins with every provider
over real HTTP to the emulators (httpx), on each async store, racing tasks, cancellation, and
the refusals of calls that mix blocking and async parts.

The engine suite itself (tests/test_engine.py) and the store contract (tests/stores/
test_stores.py) also run against the async engine and stores, behind a blocking face; this
module checks what only a native event loop shows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from mfa_fsm import (
    AsyncEngine,
    AsyncMemoryStore,
    AsyncRedisStore,
    AsyncSealedEngine,
    AsyncStoreLedger,
    CyberArkConfig,
    DuoConfig,
    DuoCredentials,
    Engine,
    EntrustConfig,
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    HttpxTransport,
    MemoryStore,
    RequestsTransport,
    SealedEngine,
    SealedState,
    SealedStateError,
    StepNotSaved,
    StoreLedger,
    UsageError,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.cyberark import config_for as cyberark_config
from tests.support.cyberark import pick
from tests.support.engine import CLIENT_IP, entrust_config
from tests.support.stores import ASYNC_STORE_KINDS, StoreKit, make_snapshot

#: Each test that takes ``kit`` runs on every async store, in the kit's event loop.
KIT_KINDS = ASYNC_STORE_KINDS

KEY = bytes(range(32))
PUSH_COMPLETE = "/authenticate/TOKENPUSH/complete"

Scenario = Callable[[AsyncEngine], Awaitable[None]]


@pytest.fixture
def run_engine(kit: StoreKit) -> Callable[[list[object], Scenario], None]:
    """Run a scenario with an AsyncEngine on the kit's async store (over its own httpx
    transport, closed afterwards) in the kit's event loop."""

    def run(configs: list[object], scenario: Scenario) -> None:
        store: Any = kit.store
        assert kit.loop is not None

        async def main() -> None:
            async with AsyncEngine(store.wrapped, configs) as engine:
                await scenario(engine)

        kit.loop.run(main())

    return run


# -- a full login through AsyncEngine, for each provider, on each async store ----------------


def test_entrust_otp_login_and_hand_off(
    kit: StoreKit, run_engine: Any, entrust_emulator: EntrustEmulator
) -> None:
    """start, one awaited send per request, then hand_off: the token once, then scrubbed."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)

    async def login(engine: AsyncEngine) -> None:
        view = await engine.start("entrust", verified_user=VerifiedUser("jsmith"))
        flow_id = view.flow_id
        assert (await engine.send(flow_id, "submit_first_factor")).state == "AwaitingSecondFactor"
        view = await engine.send(flow_id, "select_second_factor", factor="OTP", delivery="SMS")
        assert view.state == "SecondFactorSelected"
        view = await engine.send(flow_id, "submit_response", answer="00000000")
        assert view.state == "SecondFactorSelected"  # wrong code: one attempt fewer
        code = entrust_emulator.last_otp("jsmith")
        view = await engine.send(flow_id, "submit_response", answer=code, client_ip=CLIENT_IP)
        assert (view.state, view.version) == ("Completed", 4)
        handed = await engine.hand_off(flow_id)
        assert handed.result is not None and handed.result.token
        after = await engine.view(flow_id)
        assert after.result is not None and after.result.handed_off and not after.result.token
        await engine.delete(flow_id)
        with pytest.raises(FlowNotFound):
            await engine.view(flow_id)

    run_engine([config], login)


def test_entrust_push_polled_to_completion(
    run_engine: Any, entrust_emulator: EntrustEmulator
) -> None:
    """A push is polled one awaited step at a time; the approval completes the flow."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)

    async def login(engine: AsyncEngine) -> None:
        flow_id = (await engine.start("entrust", verified_user=VerifiedUser("jsmith"))).flow_id
        await engine.send(flow_id, "submit_first_factor")
        view = await engine.send(flow_id, "select_second_factor", factor="TOKENPUSH")
        assert view.state == "OobPending"
        assert (await engine.send(flow_id, "poll")).state == "OobPending"
        entrust_emulator.approve_push("jsmith")
        assert (await engine.send(flow_id, "poll")).state == "Completed"

    run_engine([config], login)
    assert entrust_emulator.poll_count("jsmith") == 2


def test_cyberark_password_then_push(run_engine: Any) -> None:
    """CyberArk: password, then the Mobile Authenticator push, approved: Completed."""
    with CyberArkEmulator() as emulator:
        config: CyberArkConfig = cyberark_config(emulator)

        async def login(engine: AsyncEngine) -> None:
            view = await engine.start("cyberark", user="alice")
            flow_id = view.flow_id
            view = await engine.send(flow_id, "submit_first_factor", answer="alice-password")
            assert view.state == "AwaitingSecondFactor"
            factor = pick(view, "Mobile Authenticator")
            view = await engine.send(flow_id, "select_second_factor", factor=factor)
            assert view.state == "OobPending"
            emulator.approve("alice")
            view = await engine.send(flow_id, "poll")
            assert view.state == "Completed"
            assert view.result is not None and emulator.token_valid(view.result.token)

        run_engine([config], login)


def test_duo_passcode(run_engine: Any) -> None:
    """Duo: the application's own first factor, then a typed passcode: Completed."""
    with DuoEmulator() as emulator:
        creds = emulator.credentials
        config = DuoConfig(
            credentials=DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
            base_url=emulator.base_url,
            poll_interval=0.0,
        )

        async def login(engine: AsyncEngine) -> None:
            user = VerifiedUser("jsmith", checked_by="the test's password check")
            flow_id = (await engine.start("duo", verified_user=user, client_ip=CLIENT_IP)).flow_id
            view = await engine.send(flow_id, "submit_first_factor", client_ip=CLIENT_IP)
            assert view.state == "AwaitingSecondFactor"
            view = await engine.send(flow_id, "select_second_factor", factor="passcode")
            view = await engine.send(
                flow_id, "submit_response", answer=DEMO_PASSCODE, client_ip=CLIENT_IP
            )
            assert view.state == "Completed"

        run_engine([config], login)


# -- concurrency and cancellation, as an async server sees them --------------------------------


class _LoadTogether:
    """An async store whose ``load`` waits until every racing task has loaded, so that all
    of them hold the same version before any goes on (as tests.support.engine.PauseAfter)."""

    def __init__(self, inner: Any, barrier: asyncio.Barrier) -> None:
        self._inner = inner
        self._barrier = barrier

    async def load(self, flow_id: str) -> Any:
        snapshot = await self._inner.load(flow_id)
        await self._barrier.wait()
        return snapshot

    async def create(self, snapshot: Any) -> None:
        await self._inner.create(snapshot)

    async def save(self, snapshot: Any, *, expected_version: int) -> None:
        await self._inner.save(snapshot, expected_version=expected_version)

    async def delete(self, flow_id: str) -> None:
        await self._inner.delete(flow_id)

    async def claim(self, flow_id: str, version: int, *, ttl: float) -> str:
        claim: str = await self._inner.claim(flow_id, version, ttl=ttl)
        return claim

    async def release(self, flow_id: str, claim: str) -> None:
        await self._inner.release(flow_id, claim)


def test_racing_tasks_one_winner_one_idp_call(
    kit: StoreKit, run_engine: Any, entrust_emulator: EntrustEmulator
) -> None:
    """Tasks polling one flow at once, all holding the same version: exactly one wins each
    round and the IdP sees only its poll; the others get FlowBusy or FlowConflict before
    any IdP call; no step is lost."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    rounds, tasks = 4, 6

    async def race(engine: AsyncEngine) -> None:
        flow_id = (await engine.start("entrust", verified_user=VerifiedUser("jsmith"))).flow_id
        await engine.send(flow_id, "submit_first_factor")
        await engine.send(flow_id, "select_second_factor", factor="TOKENPUSH")
        polls = len(entrust_emulator.calls_to(PUSH_COMPLETE))
        racing = AsyncEngine(
            _LoadTogether(engine.store, asyncio.Barrier(tasks)),
            [config],
            transport=engine.transport,
        )
        for _ in range(rounds):
            before = (await engine.view(flow_id)).version
            results = await asyncio.gather(
                *(racing.send(flow_id, "poll") for _ in range(tasks)), return_exceptions=True
            )
            won = [result for result in results if not isinstance(result, BaseException)]
            lost = [result for result in results if isinstance(result, BaseException)]
            assert [view.version for view in won] == [before + 1]
            assert all(isinstance(error, FlowConflict) for error in lost), lost
        assert len(entrust_emulator.calls_to(PUSH_COMPLETE)) - polls == rounds
        final: Any = await engine.store.load(flow_id)
        assert (final.version, final.context.polls) == (2 + rounds, rounds)

    run_engine([config], race)


def test_cancelled_step_releases_its_claim_and_changes_nothing(
    kit: StoreKit, run_engine: Any, entrust_emulator: EntrustEmulator
) -> None:
    """A request cancelled while its IdP call is in flight (the client went away) leaves the
    flow as it was and unclaimed: the next request goes through."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)

    async def cancelled(engine: AsyncEngine) -> None:
        flow_id = (await engine.start("entrust", verified_user=VerifiedUser("jsmith"))).flow_id
        await engine.send(flow_id, "submit_first_factor")
        await engine.send(flow_id, "select_second_factor", factor="TOKENPUSH")
        before = await engine.view(flow_id)
        entrust_emulator.faults.inject("slow", path=PUSH_COMPLETE, delay=2.0)
        step = asyncio.create_task(engine.send(flow_id, "poll"))
        await asyncio.sleep(0.5)  # the poll has claimed the flow; the IdP is slow to answer
        step.cancel()
        with pytest.raises(asyncio.CancelledError):
            await step
        assert await engine.view(flow_id) == before
        store: Any = engine.store
        await store.release(flow_id, await store.claim(flow_id, before.version, ttl=30))
        entrust_emulator.faults.clear()
        assert (await engine.send(flow_id, "poll")).version == before.version + 1

    run_engine([config], cancelled)


def test_store_down_at_start_is_step_not_saved_after_the_retry_window(
    entrust_emulator: EntrustEmulator,
) -> None:
    """A Redis that refuses connections: start retries its create for save_retry seconds
    (awaiting, not blocking), then StepNotSaved; nothing is stored."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)

    async def main() -> float:
        client = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
        async with AsyncEngine(AsyncRedisStore(client), [config], save_retry=0.5) as engine:
            loop = asyncio.get_running_loop()
            began = loop.time()
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.02)
                    ticks += 1

            beat = asyncio.create_task(ticker())
            with pytest.raises(StepNotSaved):
                await engine.start("entrust", verified_user=VerifiedUser("jsmith"))
            beat.cancel()
            await client.aclose()
            assert ticks >= 10, "the event loop must keep serving others during the retries"
            return loop.time() - began

    took = asyncio.run(main())
    assert 0.5 <= took < 5


# -- sealed client-side state, async ----------------------------------------------------------


@pytest.mark.parametrize("with_ledger", [True, False])
def test_sealed_login_round_trip(
    kit: StoreKit, entrust_emulator: EntrustEmulator, with_ledger: bool
) -> None:
    """AsyncSealedEngine: each step takes the client's token and returns the next; with an
    AsyncStoreLedger an old token is refused (replay), without one it still opens."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    store: Any = kit.make(prefix="mfa_fsm:ledger:") if kit.kind == "redis-async" else kit.store
    ledger = AsyncStoreLedger(store.wrapped) if with_ledger else None
    sealed = SealedState({"k1": KEY}, ledger=ledger)
    assert kit.loop is not None

    async def main() -> None:
        async with AsyncSealedEngine(sealed, [config]) as engine:
            view, token = await engine.start("entrust", verified_user=VerifiedUser("jsmith"))
            flow_id = view.flow_id
            view, first = await engine.send(token, flow_id, "submit_first_factor")
            view, token = await engine.send(first, flow_id, "select_second_factor", factor="OTP")
            code = entrust_emulator.last_otp("jsmith")
            view, token = await engine.send(token, flow_id, "submit_response", answer=code)
            assert view.state == "Completed"
            handed, token = await engine.hand_off(token, flow_id)
            assert handed.result is not None and handed.result.token
            assert (await engine.view(token, flow_id)).result.handed_off  # type: ignore[union-attr]
            if with_ledger:
                with pytest.raises(SealedStateError):
                    await engine.view(first, flow_id)
            else:
                assert (await engine.view(first, flow_id)).state == "AwaitingSecondFactor"

    kit.loop.run(main())


# -- calls that mix blocking and async parts are refused, saying what to use -----------------


def test_engines_refuse_stores_transports_and_ledgers_of_the_other_kind() -> None:
    """Each refusal is a UsageError naming what to use instead; nothing is made."""
    config = EntrustConfig(base_url="https://idp.invalid", application_id="app")
    with pytest.raises(UsageError, match="AsyncEngine takes an async store"):
        AsyncEngine(MemoryStore(), [config])
    with pytest.raises(UsageError, match="AsyncEngine takes an async store"):
        Engine(AsyncMemoryStore(), [config])
    with pytest.raises(UsageError, match="send_async"):
        AsyncEngine(AsyncMemoryStore(), [config], transport=RequestsTransport())
    with pytest.raises(UsageError, match=r"send\(HttpRequest\)"):
        Engine(MemoryStore(), [config], transport=HttpxTransport())
    with pytest.raises(UsageError, match="AsyncSealedEngine takes a SealedState whose ledger"):
        AsyncSealedEngine(SealedState({"k1": KEY}, ledger=StoreLedger(MemoryStore())), [config])
    with pytest.raises(UsageError, match="AsyncSealedEngine takes a SealedState whose ledger"):
        SealedEngine(
            SealedState({"k1": KEY}, ledger=AsyncStoreLedger(AsyncMemoryStore())), [config]
        )
    with pytest.raises(UsageError, match="is asynchronous"):
        SealedState({"k1": KEY}, ledger=AsyncStoreLedger(AsyncMemoryStore())).seal(make_snapshot())


def test_bad_calls_are_usage_errors_when_awaited(entrust_emulator: EntrustEmulator) -> None:
    """A misspelt keyword or a missing argument raises UsageError, as the blocking engine's."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)

    async def main() -> None:
        async with AsyncEngine(AsyncMemoryStore(), [config]) as engine:
            with pytest.raises(UsageError, match=r"AsyncEngine\.send"):
                await engine.send("flow-1")  # type: ignore[call-arg]
            with pytest.raises(UsageError, match="unexpected keyword"):
                await engine.view("flow-1", flowid="x")  # type: ignore[call-arg]
            with pytest.raises(FlowNotFound):
                await engine.send("no such flow!", "poll")
            with pytest.raises(UsageError, match="transport"):
                await engine.start("entrust", user="jsmith", transport=None)

    asyncio.run(main())


def test_a_held_claim_is_busy_before_any_idp_call(
    kit: StoreKit, run_engine: Any, entrust_emulator: EntrustEmulator
) -> None:
    """While another request holds the claim, an awaited step raises FlowBusy, no IdP call."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)

    async def busy(engine: AsyncEngine) -> None:
        flow_id = (await engine.start("entrust", verified_user=VerifiedUser("jsmith"))).flow_id
        store: Any = engine.store
        claim = await store.claim(flow_id, 0, ttl=30)
        calls = len(entrust_emulator.calls)
        with pytest.raises(FlowBusy):
            await engine.send(flow_id, "submit_first_factor")
        assert len(entrust_emulator.calls) == calls
        await store.release(flow_id, claim)
        assert (await engine.send(flow_id, "submit_first_factor")).version == 1

    run_engine([config], busy)


def test_a_recording_transport_sees_every_secret(entrust_emulator: EntrustEmulator) -> None:
    """The engine's transport can be the application's own AsyncTransport (here a recorder
    over httpx), which it does not close."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    inner = HttpxTransport()
    recorder = SecretRecorder(inner_async=inner)

    async def main() -> None:
        async with AsyncEngine(AsyncMemoryStore(), [config], transport=recorder) as engine:
            flow_id = (await engine.start("entrust", verified_user=VerifiedUser("jsmith"))).flow_id
            await engine.send(flow_id, "submit_first_factor")
        assert not inner.client.is_closed  # given, not owned
        await inner.aclose()

    asyncio.run(main())
    assert recorder.secrets


class _HalfAsync:
    """A store whose load is async and whose other methods block: a programming error."""

    def __init__(self) -> None:
        self._blocking = MemoryStore()

    async def load(self, flow_id: str) -> Any:
        return self._blocking.load(flow_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blocking, name)


def test_a_store_method_of_the_wrong_kind_is_a_usage_error(
    entrust_emulator: EntrustEmulator,
) -> None:
    """An async engine that meets a blocking store method mid-step (here the claim) raises
    UsageError naming the method, before the step's IdP call, with the flow unchanged."""
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    store = _HalfAsync()
    blocking: Any = store._blocking
    flow_id = (
        Engine(blocking, [config]).start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    )
    calls = len(entrust_emulator.calls)

    async def main() -> None:
        async with AsyncEngine(store, [config]) as engine:
            with pytest.raises(UsageError, match=r"MemoryStore\.claim\(\) is not asynchronous"):
                await engine.send(flow_id, "submit_first_factor")

    asyncio.run(main())
    assert len(entrust_emulator.calls) == calls
    assert blocking.load(flow_id).version == 0
