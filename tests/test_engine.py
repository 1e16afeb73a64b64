"""The engine facade over every store, with real Entrust flows over real HTTP to the emulator."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from mfa_fsm import (
    AsyncEngine,
    CyberArkConfig,
    Engine,
    EntrustConfig,
    EventNotAllowed,
    FlowBusy,
    FlowConflict,
    FlowNotFound,
    HttpxTransport,
    IdpError,
    InvalidInput,
    MemoryStore,
    SealedEngine,
    SealedState,
    SealedStateError,
    Snapshot,
    SnapshotError,
    StoreLedger,
    Throttled,
    TransportError,
    UsageError,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.snapshot import SCHEMA_VERSION
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.core.transport import HttpRequest, HttpResponse, Transport
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE, EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.aio import Blocking
from tests.support.engine import (
    Attempt,
    CallLog,
    PauseAfter,
    engine_step,
    entrust_config,
    entrust_in_second_factor_selected,
    race_in_process,
    race_in_threads,
    sealed_step,
)
from tests.support.stores import ALL_STORE_KINDS, STORE_KINDS, TEST_MARGIN, StoreKit

KEY = bytes(range(32))
PUSH_COMPLETE = "/authenticate/TOKENPUSH/complete"
TOKEN_COMPLETE = "/authenticate/TOKEN/complete"
WORKERS = 4
ROUNDS = 4


@pytest.fixture
def config(entrust_emulator: EntrustEmulator) -> EntrustConfig:
    return entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)


#: Every test that takes ``kit`` runs on each blocking store, and on each async store with an
#: AsyncEngine (see the ``engine`` fixture).
KIT_KINDS = ALL_STORE_KINDS


@pytest.fixture
def engine(kit: StoreKit, config: EntrustConfig, recorder: SecretRecorder) -> Iterator[Engine]:
    """An engine on the kit's store (each kind in turn), over real HTTP to the emulator: an
    Engine over requests, or for an async store an AsyncEngine over httpx, on the kit's event
    loop behind a blocking face (tests.support.aio.Blocking), so each test here checks both."""
    if not kit.is_async:
        yield Engine(kit.store, [config], transport=recorder)
        return
    store: Any = kit.store
    assert kit.loop is not None
    recorder.inner_async = HttpxTransport()
    yield Blocking(AsyncEngine(store.wrapped, [config], transport=recorder), kit.loop)  # type: ignore[misc]
    kit.loop.run(recorder.inner_async.aclose())


def to_push(engine: Engine) -> str:
    """Start jsmith's login and get it to a running push; returns the flow id."""
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    assert engine.send(flow_id, "select_second_factor", factor="TOKENPUSH").state == "OobPending"
    return flow_id


def to_code(engine: Engine, factor: str = "OTP") -> str:
    """Start jsmith's login and get it to a code form for ``factor``; returns the flow id."""
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    view = engine.send(flow_id, "select_second_factor", factor=factor)
    assert view.state == "SecondFactorSelected"
    return flow_id


def check_one_winner_per_version(outcomes: list[Attempt], first: int, workers: int) -> None:
    """Each round's version was won by exactly one racer; every other racer lost it."""
    versions = range(first, first + ROUNDS)
    assert Counter(version for version, won in outcomes if won) == Counter(versions)
    assert Counter(version for version, _ in outcomes) == Counter(dict.fromkeys(versions, workers))


# -- one request per call, on every store ----------------------------------------------------


def test_login_one_line_per_request(
    kit: StoreKit, engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """start, then one send per request, completes a login; the store holds each new state."""
    view = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    assert (view.state, view.version) == ("AwaitingFirstFactor", 0)
    assert "OTP" in {choice.id for choice in view.choices}
    flow_id = view.flow_id
    assert engine.send(flow_id, "submit_first_factor").state == "AwaitingSecondFactor"
    view = engine.send(flow_id, "select_second_factor", factor="OTP", delivery="SMS")
    assert view.challenge is not None and view.challenge.delivery == "SMS"
    view = engine.send(flow_id, "submit_response", answer="00000000")
    assert (view.state, view.challenge and view.challenge.attempts_left) == (
        "SecondFactorSelected",
        4,
    )
    view = engine.send(flow_id, "submit_response", answer=entrust_emulator.last_otp("jsmith"))
    assert (view.state, view.version) == ("Completed", 4)
    assert view.result is not None and view.result.display_name == "John Smith"
    assert engine.view(flow_id) == view
    assert kit.store.load(flow_id).version == 4
    engine.delete(flow_id)
    with pytest.raises(FlowNotFound):
        engine.view(flow_id)


def test_push_is_polled_one_request_at_a_time(
    engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """Each poll is one request and one IdP call; the approval completes the flow."""
    flow_id = to_push(engine)
    assert engine.send(flow_id, "poll").state == "OobPending"
    entrust_emulator.approve_push("jsmith")
    assert engine.send(flow_id, "poll").state == "Completed"
    assert entrust_emulator.poll_count("jsmith") == 2


def test_unknown_id_is_not_found_and_calls_no_idp(
    engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """An id the store does not hold raises FlowNotFound before any IdP call."""
    calls = len(entrust_emulator.calls)
    with pytest.raises(FlowNotFound):
        engine.send("no-such-flow", "poll")
    with pytest.raises(FlowNotFound):
        engine.view("no-such-flow")
    assert len(entrust_emulator.calls) == calls


def test_expired_flow_is_not_found_and_calls_no_idp(
    kit: StoreKit,
    entrust_emulator: EntrustEmulator,
    recorder: SecretRecorder,
) -> None:
    """Past its deadline plus the store's margin a flow is gone: FlowNotFound, no IdP call."""
    config = entrust_config(
        entrust_emulator.base_url, entrust_emulator.application_id, flow_lifetime=0.3
    )
    engine = Engine(kit.store, [config], transport=recorder)
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    kit.let_time_pass(0.3 + TEST_MARGIN + 0.5)
    calls = len(entrust_emulator.calls)
    with pytest.raises(FlowNotFound):
        engine.send(flow_id, "submit_first_factor")
    assert len(entrust_emulator.calls) == calls


def test_claimed_flow_is_busy_and_calls_no_idp(
    kit: StoreKit,
    engine: Engine,
    entrust_emulator: EntrustEmulator,
    leak_guard: list[dict[str, object]],
) -> None:
    """While another request holds the claim, a step raises FlowBusy before its IdP call."""
    flow_id = to_push(engine)
    before = kit.store.load(flow_id)
    claim = kit.store.claim(flow_id, before.version, ttl=30)  # another request, mid-step
    calls = len(entrust_emulator.calls)
    with pytest.raises(FlowBusy):
        engine.send(flow_id, "poll")
    assert len(entrust_emulator.calls) == calls
    (failed,) = [event for event in leak_guard if event["event"] == "mfa_fsm.step_failed"]
    assert (failed["error"], failed["idp_calls"]) == ("FlowBusy", 0)  # the log says so too
    assert kit.store.load(flow_id) == before
    kit.store.release(flow_id, claim)
    assert engine.send(flow_id, "poll").version == before.version + 1


def test_stale_request_conflicts_and_calls_no_idp(
    kit: StoreKit,
    engine: Engine,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """A request that loaded a version another has since saved gets FlowConflict, no IdP call."""
    flow_id = to_push(engine)
    stale = kit.store.load(flow_id)
    engine.send(flow_id, "poll")  # another request wins meanwhile
    late = Engine(_LoadsOnly(kit.store, stale), [config], transport=recorder)
    calls = len(entrust_emulator.calls)
    with pytest.raises(FlowConflict) as raised:
        late.send(flow_id, "poll")
    assert (raised.value.expected, raised.value.actual) == (stale.version, stale.version + 1)
    assert len(entrust_emulator.calls) == calls


@pytest.mark.parametrize(("fault", "error"), [("status", IdpError), ("drop", TransportError)])
def test_failed_step_releases_the_claim_and_changes_nothing(
    kit: StoreKit,
    engine: Engine,
    entrust_emulator: EntrustEmulator,
    fault: str,
    error: type[Exception],
) -> None:
    """An IdP or network error leaves the stored flow as it was and unclaimed: retry works."""
    flow_id = to_code(engine, "TOKEN")
    before = kit.store.load(flow_id)
    entrust_emulator.faults.inject(fault, path=TOKEN_COMPLETE)
    with pytest.raises(error):
        engine.send(flow_id, "submit_response", answer=entrust_emulator.token_code("jsmith"))
    assert kit.store.load(flow_id) == before
    kit.store.release(flow_id, kit.store.claim(flow_id, before.version, ttl=30))  # unclaimed
    view = engine.send(flow_id, "submit_response", answer=entrust_emulator.token_code("jsmith"))
    assert view.state == "Completed"


def test_a_failed_release_does_not_hide_the_step_error(
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
    leak_guard: list[dict[str, object]],
) -> None:
    """If releasing the claim fails too, the step's own error is raised; the claim expires."""
    store = MemoryStore()
    engine = Engine(_ReleaseFails(store), [config], transport=recorder)
    flow_id = to_code(engine, "TOKEN")
    entrust_emulator.faults.inject("status", path=TOKEN_COMPLETE)
    with pytest.raises(IdpError):
        engine.send(flow_id, "submit_response", answer="11111111")
    (failed,) = [event for event in leak_guard if event["event"] == "mfa_fsm.release_failed"]
    assert failed["flow_ref"] == flow_ref(flow_id) and failed["log_level"] == "warning"
    assert failed["error"] == "ConnectionError"


def test_steps_that_change_nothing_write_nothing(
    kit: StoreKit, recorder: SecretRecorder, entrust_emulator: EntrustEmulator
) -> None:
    """An early poll, a refused event and bad input only read the store; none calls the IdP."""
    config = entrust_config(
        entrust_emulator.base_url, entrust_emulator.application_id, poll_interval=60.0
    )
    flow_id = to_push(Engine(kit.store, [config], transport=recorder))
    logged = CallLog(kit.store)
    engine = Engine(logged, [config], transport=recorder)
    calls = len(entrust_emulator.calls)
    view = engine.send(flow_id, "poll")  # before next_poll_at
    assert (view.state, view.version) == ("OobPending", 2)
    with pytest.raises(EventNotAllowed):
        engine.send(flow_id, "submit_response", answer="12345678")
    with pytest.raises(InvalidInput):
        engine.send(flow_id, "poll", response="12345678")
    assert logged.calls == ["load"] * 3
    assert len(entrust_emulator.calls) == calls


def test_a_swallowed_claim_refusal_is_still_refused(
    kit: StoreKit, engine: Engine, entrust_emulator: EntrustEmulator
) -> None:
    """A cancel tells the IdP best-effort; if its claim is refused the flow is not cancelled."""
    flow_id = to_code(engine)
    before = kit.store.load(flow_id)
    kit.store.claim(flow_id, before.version, ttl=30)
    calls = len(entrust_emulator.calls)
    with pytest.raises(FlowBusy):
        engine.send(flow_id, "cancel")
    assert kit.store.load(flow_id) == before
    assert len(entrust_emulator.calls) == calls


def test_step_outlasting_its_claim_loses_at_save_and_says_so(
    kit: StoreKit,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
    leak_guard: list[dict[str, object]],
) -> None:
    """If a claim expires mid-step and another request wins, the slow one gets FlowConflict."""
    fast = Engine(kit.store, [config], transport=recorder, claim_ttl=5)
    flow_id = to_push(fast)

    def meanwhile() -> None:
        kit.clock.advance(6)  # the slow request's claim runs out...
        fast.send(flow_id, "poll")  # ...and another request claims, polls and saves

    slow = Engine(kit.store, [config], transport=_Before(recorder, meanwhile), claim_ttl=5)
    with pytest.raises(FlowConflict):
        slow.send(flow_id, "poll")
    assert kit.store.load(flow_id).version == 3  # the other request's poll
    (lost,) = [event for event in leak_guard if event["event"] == "mfa_fsm.step_lost"]
    assert (lost["flow_ref"], lost["provider"], lost["flow_event"]) == (
        flow_ref(flow_id),
        "entrust",
        "poll",
    )
    assert lost["version"] == 2 and lost["log_level"] == "warning"
    assert lost["hint"] == "a step outlasted its claim; raise claim_ttl"


# -- concurrency: one winner per version, one IdP call per winning step -------------------------


def test_racing_threads_one_winner_one_idp_call_per_step(
    kit: StoreKit,
    engine: Engine,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """Threads polling one flow at once: one wins per version, the IdP sees one poll per win."""
    flow_id = to_push(engine)
    first = kit.store.load(flow_id).version
    polls = len(entrust_emulator.calls_to(PUSH_COMPLETE))

    def make_step(barrier: Any) -> Callable[[], int]:
        racer = Engine(PauseAfter(kit.store, "load", barrier), [config], transport=recorder)
        return engine_step(racer, flow_id, "poll")

    outcomes = race_in_threads(make_step, WORKERS, ROUNDS)
    check_one_winner_per_version(outcomes, first, WORKERS)
    assert len(entrust_emulator.calls_to(PUSH_COMPLETE)) - polls == ROUNDS
    final = kit.store.load(flow_id)
    assert final.version == first + ROUNDS
    assert final.context.polls == ROUNDS  # no step lost: every winning poll is in the snapshot


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_racing_wrong_codes_cost_one_attempt_per_step(
    make_kit: Callable[[str], StoreKit],
    kind: str,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """Threads typing a wrong code at once: the user loses one attempt per round, not one each."""
    kit = make_kit(kind)
    engine = Engine(kit.store, [config], transport=recorder)
    flow_id = to_code(engine, "TOKEN")
    first = kit.store.load(flow_id).version
    attempts = entrust_emulator.remaining_attempts("jsmith", "TOKEN")
    rounds = 3  # the emulator locks the token after 5 wrong codes

    def make_step(barrier: Any) -> Callable[[], int]:
        racer = Engine(PauseAfter(kit.store, "load", barrier), [config], transport=recorder)
        return engine_step(racer, flow_id, "submit_response", answer="11111111")

    outcomes = race_in_threads(make_step, WORKERS, rounds)
    assert sorted(version for version, won in outcomes if won) == list(range(first, first + 3))
    assert entrust_emulator.remaining_attempts("jsmith", "TOKEN") == attempts - rounds
    challenge = kit.store.load(flow_id).challenge
    assert challenge is not None and challenge.attempts_left == attempts - rounds


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_racing_processes_one_winner_one_idp_call_per_step(
    make_kit: Callable[[str], StoreKit],
    kind: str,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """Spawned processes, each with its own connections, polling one flow over HTTP at once."""
    kit = make_kit(kind)
    flow_id = to_push(Engine(kit.store, [config], transport=recorder))
    first = kit.store.load(flow_id).version
    polls = len(entrust_emulator.calls_to(PUSH_COMPLETE))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results: Any = context.Queue()
    workers = [
        context.Process(
            target=race_in_process,
            kwargs={
                "kind": kind,
                "target": kit.target,
                "base_url": config.base_url,
                "application_id": config.application_id,
                "flow_id": flow_id,
                "event": "poll",
                "rounds": ROUNDS,
                "barrier": barrier,
                "results": results,
            },
        )
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [status for status, _ in reports] == ["ok"] * WORKERS, reports
    outcomes = [outcome for _, worker_outcomes in reports for outcome in worker_outcomes]
    check_one_winner_per_version(outcomes, first, WORKERS)
    assert len(entrust_emulator.calls_to(PUSH_COMPLETE)) - polls == ROUNDS
    final = kit.store.load(flow_id)
    assert (final.version, final.context.polls) == (first + ROUNDS, ROUNDS)


# -- sealed client-side state ------------------------------------------------------------------


def _ledger(kit: StoreKit) -> StoreLedger:
    """A replay ledger in the kit's backend, in a namespace of its own."""
    namespace = {"memory": {}, "redis": {"prefix": "mfa_fsm:ledger:"}}
    return StoreLedger(kit.make(**namespace.get(kit.kind, {"table": "mfa_fsm_ledger"})))


@pytest.mark.parametrize("with_ledger", [True, False])
def test_sealed_login_round_trip(
    make_kit: Callable[[str], StoreKit],
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
    with_ledger: bool,
) -> None:
    """The sealed engine completes a login carrying only a token between requests."""
    ledger = _ledger(make_kit("memory")) if with_ledger else None
    engine = SealedEngine(SealedState({"k": KEY}, ledger=ledger), [config], transport=recorder)
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    flow_id = view.flow_id
    view, token = engine.send(token, flow_id, "submit_first_factor")
    view, token = engine.send(token, flow_id, "select_second_factor", factor="TOKEN")
    assert engine.view(token, flow_id) == view
    code = entrust_emulator.token_code("jsmith")
    view, token = engine.send(token, flow_id, "submit_response", answer=code)
    assert (view.state, view.version) == ("Completed", 3)
    with pytest.raises(SealedStateError):
        engine.send(token, "another-flow", "cancel")


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_sealed_replay_is_refused_with_a_ledger(
    make_kit: Callable[[str], StoreKit],
    kind: str,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """With a ledger an older token is refused as replayed, before any IdP call."""
    sealed = SealedState({"k": KEY}, ledger=_ledger(make_kit(kind)))
    engine = SealedEngine(sealed, [config], transport=recorder)
    flow_id, old = _push_token(engine)
    engine.send(old, flow_id, "poll")  # the newest token: accepted once
    calls = len(entrust_emulator.calls)
    with pytest.raises(SealedStateError, match="replayed"):
        engine.send(old, flow_id, "poll")
    assert len(entrust_emulator.calls) == calls


def test_sealed_replay_is_accepted_without_a_ledger(
    config: EntrustConfig, recorder: SecretRecorder, entrust_emulator: EntrustEmulator
) -> None:
    """Documented: without a ledger an old token works again, and reaches the IdP again."""
    engine = SealedEngine(SealedState({"k": KEY}), [config], transport=recorder)
    flow_id, old = _push_token(engine)
    first, _ = engine.send(old, flow_id, "poll")
    again, _ = engine.send(old, flow_id, "poll")  # the same step, taken twice
    assert first.version == again.version
    assert entrust_emulator.poll_count("jsmith") == 2


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_sealed_racing_requests_with_a_ledger_one_winner(
    make_kit: Callable[[str], StoreKit],
    kind: str,
    config: EntrustConfig,
    recorder: SecretRecorder,
    entrust_emulator: EntrustEmulator,
) -> None:
    """Threads sending one token at once: the ledger's claim lets one reach the IdP."""
    ledger = _ledger(make_kit(kind))
    engine = SealedEngine(SealedState({"k": KEY}, ledger=ledger), [config], transport=recorder)
    flow_id, token = _push_token(engine)
    polls = entrust_emulator.poll_count("jsmith")

    def make_step(barrier: Any) -> Callable[[], int]:
        sealed = SealedState({"k": KEY}, ledger=PauseAfter(ledger, "current", barrier))
        racer = SealedEngine(sealed, [config], transport=recorder)
        return sealed_step(racer, token, flow_id, "poll")

    outcomes = race_in_threads(make_step, WORKERS, 1)
    assert sorted(won for _, won in outcomes) == [False] * (WORKERS - 1) + [True]
    assert entrust_emulator.poll_count("jsmith") - polls == 1
    assert ledger.current(flow_id) == 3


def test_sealed_entrust_flow_fits_in_a_cookie(capsys: pytest.CaptureFixture[str]) -> None:
    """An Entrust flow in SecondFactorSelected, with ~600-character IdP tokens, seals < 2 KiB."""
    snapshot = entrust_in_second_factor_selected().snapshot()
    token = SealedState({"k": KEY}).seal(snapshot)
    with capsys.disabled():
        print(f"\nsealed Entrust flow in SecondFactorSelected: {len(token)} characters")
    assert len(token) < 2048


def _push_token(engine: SealedEngine) -> tuple[str, str]:
    view, token = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    _, token = engine.send(token, view.flow_id, "submit_first_factor")
    view, token = engine.send(token, view.flow_id, "select_second_factor", factor="TOKENPUSH")
    assert view.state == "OobPending"
    return view.flow_id, token


# -- configuration -----------------------------------------------------------------------------


def test_engine_refuses_configurations_it_cannot_use(config: EntrustConfig) -> None:
    """Two configs of one provider, a config no flow takes, or a bad claim_ttl: UsageError."""
    with pytest.raises(UsageError, match="one configuration per provider"):
        Engine(MemoryStore(), [config, config])
    with pytest.raises(UsageError, match="no provider takes a _OtherConfig"):
        Engine(MemoryStore(), [config, _OtherConfig()])
    with pytest.raises(UsageError, match="claim_ttl"):
        Engine(MemoryStore(), [config], claim_ttl=0)


def test_engine_refuses_providers_it_has_no_config_for(
    recorder: SecretRecorder, config: EntrustConfig
) -> None:
    """start and send name the configured providers when asked for another one."""
    store = MemoryStore()
    engine = Engine(store, [], transport=recorder)
    assert engine.providers == ()
    with pytest.raises(UsageError, match="no configuration for provider 'entrust'"):
        engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    view = Engine(store, [config], transport=recorder).start(
        "entrust", verified_user=VerifiedUser("jsmith")
    )
    with pytest.raises(UsageError, match="no configuration for provider 'entrust'"):
        engine.send(view.flow_id, "submit_first_factor")


def test_engine_runs_every_provider_it_is_given_a_config_for(
    config: EntrustConfig, recorder: SecretRecorder
) -> None:
    """Flow classes are found by config_type: CyberArk's flow runs through the same engine."""
    with CyberArkEmulator(pod_fqdn_as_url=True) as idp:
        other = CyberArkConfig(base_url=idp.base_url, tenant_id="ABC1234", pod_scheme="http")
        engine = Engine(MemoryStore(), [config, other], transport=recorder)
        assert {"cyberark", "entrust"} <= set(engine.providers)
        recorder.add("alice-password")
        view = engine.start("cyberark", user="alice")
        view = engine.send(view.flow_id, "submit_first_factor", answer="alice-password")
        assert (view.provider, view.state, view.version) == ("cyberark", "AwaitingSecondFactor", 1)
        assert engine.view(view.flow_id) == view


def test_newer_snapshot_in_the_store_is_refused_before_any_idp_call(
    engine: Engine, kit: StoreKit, entrust_emulator: EntrustEmulator
) -> None:
    """A flow saved by a newer mfa_fsm raises SnapshotError and calls nothing."""
    flow_id = to_push(engine)
    stored = kit.store.load(flow_id)
    newer = attrs.evolve(stored, schema=SCHEMA_VERSION + 1, version=stored.version + 1)
    kit.store.save(newer, expected_version=stored.version)
    calls = len(entrust_emulator.calls)
    with pytest.raises(SnapshotError, match="newer mfa_fsm"):
        engine.send(flow_id, "poll")
    assert len(entrust_emulator.calls) == calls


# -- small test doubles ------------------------------------------------------------------------


class _LoadsOnly:
    """A store whose load returns a fixed (stale) snapshot; everything else is the real one."""

    def __init__(self, store: Any, snapshot: Snapshot) -> None:
        self._store = store
        self._snapshot = snapshot

    def load(self, flow_id: str) -> Snapshot:
        return self._snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _ReleaseFails:
    """A store whose release fails (its backend went away mid-step)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def release(self, flow_id: str, claim: str) -> None:
        raise ConnectionError("the store went away")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _Before:
    """A transport that runs ``hook`` once, before its first request is sent."""

    def __init__(self, inner: Transport, hook: Callable[[], None]) -> None:
        self._inner = inner
        self._hook: Callable[[], None] | None = hook

    def send(self, request: HttpRequest) -> HttpResponse:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return self._inner.send(request)


@attrs.frozen
class _OtherConfig:
    """The configuration of a provider no flow class is defined for."""


# -- throttles ----------------------------------------------------------------------------


def test_throttled_step_calls_no_idp_and_changes_nothing(
    entrust_emulator: EntrustEmulator,
) -> None:
    """An engine's throttle refuses the step over its rate with Throttled (retry_after), before
    any IdP call; the stored flow keeps its version, and other users are not affected."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    throttle = Throttle(answers_per_user="2/minute", starts_per_client="3/minute")
    engine = Engine(MemoryStore(), [config], throttle=throttle)
    flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
    engine.send(flow_id, "submit_first_factor")
    engine.send(flow_id, "select_second_factor", factor="TOKEN")
    for _ in range(2):
        engine.send(flow_id, "submit_response", answer="00000000")
    before, calls = engine.view(flow_id), len(entrust_emulator.calls)
    with pytest.raises(Throttled) as refused:
        engine.send(flow_id, "submit_response", answer=DEMO_TOKEN_CODE)
    assert (refused.value.action, refused.value.scope) == ("answer", "user")
    assert refused.value.retry_after > 0
    assert len(entrust_emulator.calls) == calls
    assert engine.view(flow_id) == before
    for _ in range(3):
        engine.start("entrust", verified_user=VerifiedUser("jsmith"), client_ip="192.0.2.7")
    with pytest.raises(Throttled) as starts:
        engine.start("entrust", verified_user=VerifiedUser("pushmc"), client_ip="192.0.2.7")
    assert starts.value.scope == "client"
