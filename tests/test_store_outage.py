"""A store that dies between the IdP's acceptance of a step and the step's save (issue 11,
item 7): real Redis and PostgreSQL servers are killed right after the Entrust emulator
accepted the code that completes a login, and started again on the same port.

Within the engine's ``save_retry`` window the step's save is retried, holding the claim, and
the login completes: 0 lost logins over ``RUNS`` runs per store. Past the window the step
raises ``StepNotSaved`` (a ``StoreUnavailable``), the stored flow is exactly as it was, and
the web pages answer 503 with ``Retry-After`` and a new start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis
import structlog

from mfa_fsm import (
    Engine,
    FlowConflict,
    MemoryStore,
    RedisStore,
    SealedEngine,
    SealedState,
    SqlStore,
    StepNotSaved,
    StoreLedger,
    StoreUnavailable,
    UsageError,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.transport import HttpRequest, HttpResponse, RequestsTransport
from mfa_fsm.engine import DEFAULT_SAVE_RETRY
from mfa_fsm.stores.base import Record, RecordStore
from mfa_fsm.stores.compact import pack, unpack
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.engine import entrust_config
from tests.support.servers import (
    Restartable,
    ServerUnavailable,
    restartable_postgres,
    restartable_redis,
)
from tests.support.web import Visitor, make_app, state

#: Logins per store and engine kind, each with the store killed after the IdP's acceptance.
RUNS = 5
#: How long the store stays down inside the window: a restart, then the server's own start.
DOWN_FOR = 0.5


@pytest.fixture(scope="module")
def redis_restartable() -> Iterator[Restartable]:
    """A persistent redis-server of this module's own: the tests kill it."""
    try:
        with restartable_redis() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def postgres_restartable() -> Iterator[Restartable]:
    """A PostgreSQL cluster of this module's own: the tests kill it."""
    try:
        with restartable_postgres() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


class KillAfterAccept:
    """Real HTTP to the emulator; once armed, the reply of the next call that completes an
    authentication (``.../complete``, HTTP 200) is returned only after the store's server
    was killed, and a timer starts it again ``down_for`` seconds later (None: never)."""

    def __init__(self, server: Restartable, down_for: float | None) -> None:
        self._inner = RequestsTransport()
        self.server = server
        self.down_for = down_for
        self.armed = False
        self.killed_at: float | None = None
        self.restarted: threading.Thread | None = None

    def send(self, request: HttpRequest) -> HttpResponse:
        reply = self._inner.send(request)
        if self.armed and request.path.endswith("/complete") and reply.status == 200:
            self.armed = False
            self.server.kill()
            self.killed_at = time.monotonic()
            if self.down_for is not None:
                self.restarted = threading.Timer(self.down_for, self.server.start)
                self.restarted.start()
        return reply

    def settle(self) -> None:
        """Wait for the restart (if any) to finish."""
        if self.restarted is not None:
            self.restarted.join(timeout=60)
            self.restarted = None


#: Every store a test made, closed after it (the killed server's connections included).
_OPENED: list[RecordStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _OPENED:
        store = _OPENED.pop()
        if isinstance(store, SqlStore):
            store.close()
        elif isinstance(store, RedisStore):
            store.client.close()


def _store_on(server: Restartable, kind: str, purpose: str) -> RecordStore:
    """A store of ``kind`` on ``server``, in a namespace of ``purpose`` ("flows", "ledger")."""
    store: RecordStore
    if kind == "redis":
        store = RedisStore(redis.Redis.from_url(server.url), prefix=f"mfa_fsm:{purpose}:")
    else:
        store = SqlStore(server.url, table=f"mfa_fsm_outage_{purpose}")
    _OPENED.append(store)
    return store


def _server(request: pytest.FixtureRequest, kind: str) -> Restartable:
    fixture = "redis_restartable" if kind == "redis" else "postgres_restartable"
    server: Restartable = request.getfixturevalue(fixture)
    return server


class Login:
    """One engine kind over one store, driven step by step the way a web handler would."""

    def __init__(self, engine: Engine | SealedEngine) -> None:
        self.engine = engine
        self.token = ""
        self.flow_id = ""

    def start(self) -> str:
        if isinstance(self.engine, SealedEngine):
            view, self.token = self.engine.start("entrust", verified_user=VerifiedUser("jsmith"))
        else:
            view = self.engine.start("entrust", verified_user=VerifiedUser("jsmith"))
        self.flow_id = view.flow_id
        return view.state

    def send(self, event: str, **data: Any) -> str:
        if isinstance(self.engine, SealedEngine):
            view, self.token = self.engine.send(self.token, self.flow_id, event, **data)
        else:
            view = self.engine.send(self.flow_id, event, **data)
        return view.state

    def stored(self) -> tuple[str, int]:
        """The state and version the store (or the client's token) holds now."""
        if isinstance(self.engine, SealedEngine):
            view = self.engine.view(self.token, self.flow_id)
        else:
            view = self.engine.view(self.flow_id)
        return view.state, view.version

    def hand_off(self) -> bool:
        """Whether the application gets the IdP's token for this login."""
        if isinstance(self.engine, SealedEngine):
            view, self.token = self.engine.hand_off(self.token, self.flow_id)
        else:
            view = self.engine.hand_off(self.flow_id)
        return view.result is not None and bool(view.result.token)


def _engine(
    kind: str,
    sealed: bool,
    server: Restartable,
    emulator: EntrustEmulator,
    transport: KillAfterAccept,
    **options: Any,
) -> Engine | SealedEngine:
    config = entrust_config(emulator.base_url, emulator.application_id)
    if sealed:
        ledger = StoreLedger(_store_on(server, kind, "ledger"))
        state_ = SealedState({"k": SealedState.generate_key()}, ledger=ledger)
        return SealedEngine(state_, [config], transport=transport, **options)
    return Engine(_store_on(server, kind, "flows"), [config], transport=transport, **options)


def _to_token_form(login: Login) -> None:
    assert login.start() == "AwaitingFirstFactor"
    assert login.send("submit_first_factor") == "AwaitingSecondFactor"
    assert login.send("select_second_factor", factor="TOKEN") == "SecondFactorSelected"


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_store_killed_after_the_idp_accepted_loses_no_login(
    request: pytest.FixtureRequest,
    entrust_emulator: EntrustEmulator,
    kind: str,
    sealed: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Killed right after the IdP accepted the code and back within save_retry, the store
    gets the step's save on a retry: every one of RUNS logins completes and hands off."""
    server = _server(request, kind)
    transport = KillAfterAccept(server, down_for=DOWN_FOR)
    engine = _engine(kind, sealed, server, entrust_emulator, transport)
    completed, lost, retries, waits = 0, 0, 0, []
    for _ in range(RUNS):
        login = Login(engine)
        _to_token_form(login)
        transport.armed = True
        with structlog.testing.capture_logs() as events:
            try:
                final = login.send("submit_response", answer=DEMO_TOKEN_CODE)
            finally:
                transport.settle()
        assert transport.killed_at is not None and not transport.armed
        waits.append(time.monotonic() - transport.killed_at)
        retries += sum(event["event"] == "mfa_fsm.save_retry" for event in events)
        if final == "Completed" and login.stored()[0] == "Completed" and login.hand_off():
            completed += 1
        else:
            lost += 1
    with capsys.disabled():  # the measure the issue asks for, in the run's output
        print(
            f"\n{kind} {'sealed' if sealed else 'stored'}: {completed}/{RUNS} logins "
            f"completed, {lost} lost; {retries} save retries; store down {DOWN_FOR} s after "
            f"the IdP's acceptance, longest step {max(waits):.2f} s after the kill"
        )
    assert (completed, lost) == (RUNS, 0)
    assert retries >= RUNS  # every save met the dead store at least once
    assert max(waits) < DEFAULT_SAVE_RETRY


def test_without_save_retry_the_same_kill_loses_the_login(
    redis_restartable: Restartable, entrust_emulator: EntrustEmulator
) -> None:
    """The control: save_retry=0, the same kill and restart: the step raises the plain
    StoreUnavailable at once and the store still holds the flow before the step."""
    transport = KillAfterAccept(redis_restartable, down_for=DOWN_FOR)
    engine = _engine("redis", False, redis_restartable, entrust_emulator, transport, save_retry=0)
    login = Login(engine)
    _to_token_form(login)
    transport.armed = True
    try:
        with pytest.raises(StoreUnavailable) as raised:
            login.send("submit_response", answer=DEMO_TOKEN_CODE)
    finally:
        transport.settle()
    assert not isinstance(raised.value, StepNotSaved)
    assert login.stored()[0] == "SecondFactorSelected"


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_store_down_past_the_window_is_step_not_saved_and_the_flow_as_before(
    request: pytest.FixtureRequest,
    entrust_emulator: EntrustEmulator,
    kind: str,
) -> None:
    """Down for longer than save_retry, the step raises StepNotSaved (a StoreUnavailable)
    after about save_retry seconds; once the store is back the flow is stored exactly as it
    was before the step, and sending the event again ends it Failed(expired): the IdP has
    spent that transaction, so the way forward is a new start, never a dead end."""
    server = _server(request, kind)
    transport = KillAfterAccept(server, down_for=None)
    engine = _engine(kind, False, server, entrust_emulator, transport, save_retry=1.0, claim_ttl=3)
    login = Login(engine)
    _to_token_form(login)
    before = login.stored()
    transport.armed = True
    began = time.monotonic()
    try:
        with pytest.raises(StepNotSaved) as raised:
            login.send("submit_response", answer=DEMO_TOKEN_CODE)
        took = time.monotonic() - began
    finally:
        server.start()
    assert isinstance(raised.value, StoreUnavailable)
    # No attempt starts after the window; the last one may take a moment to fail.
    assert raised.value.operation == "save" and 0.5 <= raised.value.retried_for <= 1.5
    assert took < 3
    assert login.stored() == before
    time.sleep(3)  # the claim the failed step could not release (the store was down) ends
    assert login.send("submit_response", answer=DEMO_TOKEN_CODE) == "Failed"
    assert isinstance(engine, Engine)
    assert engine.view(login.flow_id).failure == "expired"


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_web_step_with_the_store_down_past_the_window_answers_503_and_a_new_start(
    request: pytest.FixtureRequest, entrust_emulator: EntrustEmulator, kind: str
) -> None:
    """Over the blueprint: the code accepted by the IdP, the store down past save_retry: 503
    with Retry-After, a page that says the step was not recorded and offers a new start; once
    the store is back, that new start works."""
    server = _server(request, kind)
    transport = KillAfterAccept(server, down_for=None)
    engine = _engine(kind, False, server, entrust_emulator, transport, save_retry=0.5)
    visitor = Visitor(make_app(engine, throttle=None).test_client())
    visitor.begin("entrust", "jsmith")
    assert visitor.step("factor", factor="TOKEN").status_code == 303
    assert state(visitor.page()) == "SecondFactorSelected"
    transport.armed = True
    try:
        answer = visitor.step("response", response=DEMO_TOKEN_CODE)
    finally:
        server.start()
    text = answer.get_data(as_text=True)
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert "could not be recorded" in text and "start the sign-in again" in text
    again = Visitor(make_app(engine, throttle=None).test_client())
    assert again.begin("entrust", "jsmith").status_code == 303
    assert state(again.page()) == "AwaitingSecondFactor"


def test_save_retry_is_checked() -> None:
    """A negative save_retry is refused with a message that says what it is."""
    with pytest.raises(UsageError, match="save_retry must be zero or more"):
        Engine(MemoryStore(), [], save_retry=-1)


class AppliedThenLost(MemoryStore):
    """A memory store whose next ``lose`` compare-and-sets are applied and then fail as a
    connection that breaks before the server's answer arrives would."""

    backend_errors = (ConnectionError,)

    def __init__(self) -> None:
        super().__init__()
        self.lose = 0

    def _swap(self, key: str, expected_version: int, record: Record) -> bool:
        swapped = super()._swap(key, expected_version, record)
        if self.lose:
            self.lose -= 1
            raise ConnectionError("connection reset by peer")
        return swapped


@pytest.mark.parametrize("sealed", [False, True], ids=["stored", "sealed"])
def test_a_save_applied_before_its_answer_was_lost_counts_as_saved(
    entrust_emulator: EntrustEmulator, recorder: SecretRecorder, sealed: bool
) -> None:
    """The retry of a save that went through finds the store at the new version, checks it
    holds this very step, and completes the login with one IdP call for the step."""
    records = AppliedThenLost()
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    engine: Engine | SealedEngine
    if sealed:
        keys = {"k": SealedState.generate_key()}
        engine = SealedEngine(
            SealedState(keys, ledger=StoreLedger(records)), [config], transport=recorder
        )
    else:
        engine = Engine(records, [config], transport=recorder)
    login = Login(engine)
    _to_token_form(login)
    calls = len(entrust_emulator.calls)
    records.lose = 1
    assert login.send("submit_response", answer=DEMO_TOKEN_CODE) == "Completed"
    assert len(entrust_emulator.calls) == calls + 1
    assert login.stored() == ("Completed", 3)
    assert login.hand_off()


def test_a_retry_that_finds_another_step_saved_is_a_conflict(
    entrust_emulator: EntrustEmulator, recorder: SecretRecorder
) -> None:
    """If the store holds another snapshot at the new version (another request won after the
    claim ended), the retry does not take it for its own: FlowConflict."""

    class OtherWins(AppliedThenLost):
        """Writes another snapshot at the step's version, then loses the answer."""

        def _swap(self, key: str, expected_version: int, record: Record) -> bool:
            if not self.lose:
                return super()._swap(key, expected_version, record)
            other = attrs.evolve(unpack(record.payload), created_at=1.0)
            return super()._swap(key, expected_version, attrs.evolve(record, payload=pack(other)))

    records = OtherWins()
    config = entrust_config(entrust_emulator.base_url, entrust_emulator.application_id)
    login = Login(Engine(records, [config], transport=recorder))
    _to_token_form(login)
    records.lose = 1
    with pytest.raises(FlowConflict):
        login.send("submit_response", answer=DEMO_TOKEN_CODE)
