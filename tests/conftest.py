"""Fixtures shared by the whole suite: emulators, transports, and the secret-leak guards.

Two guards, one per test and one for the whole run:

* :func:`leak_guard` captures every structlog event and standard-library log record of a
  test and, when the test used a ``recorder`` transport, fails it if any secret that crossed
  that transport appears in them.
* :func:`suite_leak_guard` collects every secret that crossed the wire of any emulator
  during the whole run (tokens, codes, passwords, session ids, cookies), every log line of
  every test, and the message of every mfa_fsm error raised, and fails the run at the end if
  any secret appears in any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

from mfa_fsm.core.errors import MfaError
from mfa_fsm.testing import EmulatorServer
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder, find_leaks
from tests.support import fault_matrix
from tests.support.servers import (
    RunningServer,
    ServerUnavailable,
    postgres_server,
    redis_cluster,
    redis_server,
)
from tests.support.stateless import DRIVERS, Driver
from tests.support.stores import STORE_KINDS, FakeClock, StoreKit
from tests.support.vendor_schemas import ReplyChecker

#: every log line and error message of the run, for the suite-wide guard
SEEN: list[str] = []

# scripts/mutation.sh runs the tests once per mutant on a busy machine: same examples every
# time (a mutant is judged by the tests, not by luck), and no "too slow" health check.
settings.register_profile(
    "mutation", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="session", autouse=True)
def suite_leak_guard() -> Iterator[set[str]]:
    """Fail the run if any secret any emulator saw reached a log line or an error message."""
    secrets: set[str] = set()
    EmulatorServer.secret_sink = secrets
    original_init = MfaError.__init__

    def recording_init(self: MfaError, *args: Any) -> None:
        original_init(self, *args)
        SEEN.append(f"{self!s} {self!r}")

    MfaError.__init__ = recording_init  # type: ignore[method-assign]
    try:
        yield secrets
    finally:
        MfaError.__init__ = original_init  # type: ignore[method-assign]
        EmulatorServer.secret_sink = None
    # Across the whole run, short or plain-word values (tests type "wrong", "1234") also
    # occur in ordinary text; tokens, codes and passwords are longer and not plain words.
    distinctive = {s for s in secrets if len(s) >= 6 and not (s.isalpha() and s.islower())}
    leaks = find_leaks(SEEN, distinctive)
    places = sorted({text[:120] for text in SEEN for leak in leaks if leak in text})
    for leak in leaks:
        places = [place.replace(leak, "***") for place in places]
    assert not leaks, f"{len(leaks)} secret(s) reached a log line or error message: {places[:5]}"


#: checks every reply of every in-process emulator against the vendor response schemas
REPLY_CHECKER = ReplyChecker()


@pytest.fixture(scope="session", autouse=True)
def vendor_schema_check() -> Iterator[ReplyChecker]:
    """Validate every emulator reply of the run against the vendor's response schema."""
    EmulatorServer.reply_check = REPLY_CHECKER
    try:
        yield REPLY_CHECKER
    finally:
        EmulatorServer.reply_check = None


@pytest.fixture(autouse=True)
def replies_match_vendor_schemas(vendor_schema_check: ReplyChecker) -> Iterator[None]:
    """Fail the test on the first emulator reply that does not match the vendor schema."""
    vendor_schema_check.take()  # a reply of an earlier test's lingering client is not ours
    yield
    mismatches = vendor_schema_check.take()
    if mismatches:
        pytest.fail(f"{len(mismatches)} reply(ies); first: {str(mismatches[0])[:400]}")


@pytest.fixture(autouse=True)
def views_have_a_way_forward(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Fail the test when any provider's flow it runs shows a live view with no way forward.

    Every ``Flow.view()`` of a shipped provider (each step's result, each page the engines
    and the blueprint render) is checked with :func:`mfa_fsm.verify.view_problems`: a live
    state must offer an event the page can send with what the view shows. A test that
    builds a dead end on purpose (to show the check finds it) marks itself
    ``allow_dead_end_views``.
    """
    from mfa_fsm.core.flow import Flow  # noqa: PLC0415
    from mfa_fsm.verify import view_problems  # noqa: PLC0415

    found: list[str] = []
    if request.node.get_closest_marker("allow_dead_end_views"):
        yield found
        return
    original = Flow.view

    def checked_view(self: Flow) -> Any:
        view = original(self)
        if type(self).__module__.startswith("mfa_fsm."):  # the shipped providers' flows, not
            # the engine tests' toy machines
            found.extend(str(problem) for problem in view_problems(type(self), view))
        return view

    Flow.view = checked_view  # type: ignore[method-assign]
    try:
        yield found
    finally:
        Flow.view = original  # type: ignore[method-assign]
    if found:
        pytest.fail(f"{len(found)} view(s) with no way forward; first: {found[0]}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the size of each provider's fault matrix that ran, and the schema check."""
    for line in fault_matrix.summary_lines():
        terminalreporter.write_line(line)
    if REPLY_CHECKER.checked:
        terminalreporter.write_line(
            f"vendor schemas: {REPLY_CHECKER.checked} emulator replies validated"
        )


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    """Each test that takes it runs twice: with the sync driver (``Flow.start`` and
    ``Flow.send`` over requests) and the async one (``start_async`` and ``send_async`` over
    httpx), against the same real emulators."""
    running = Driver(request.param)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> SecretRecorder:
    """A real HTTP transport that remembers every secret it carries; under a test that takes
    ``driver``, an asynchronous one (httpx) too."""
    if "driver" in request.fixturenames:
        driver: Driver = request.getfixturevalue("driver")
        return driver.recorder()
    return SecretRecorder()


@pytest.fixture
def entrust_emulator() -> Iterator[EntrustEmulator]:
    """A fresh Entrust IDaaS emulator on a random loopback port, with the demo users."""
    with EntrustEmulator() as emulator:
        yield emulator


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}")


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[list[dict[str, object]]]:
    """Capture all log output of the test; fail it if a recorded secret appears there."""
    recorder: SecretRecorder | None = None
    if "recorder" in request.fixturenames:
        recorder = request.getfixturevalue("recorder")
    structlog.reset_defaults()  # undo any configuration an earlier test or doctest made
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with structlog.testing.capture_logs() as events:
            yield events
    finally:
        root.removeHandler(handler)
    texts = [repr(event) for event in events] + handler.lines
    SEEN.extend(texts)
    if recorder is not None:
        leaks = find_leaks(texts, recorder.secrets)
        assert not leaks, f"{len(leaks)} secret(s) reached a log line"


# -- real database servers and stores on them ------------------------------------------------
#
# The servers start only when a test asks for them. A missing server binary fails the tests
# that need it, with the install command, rather than skipping them.


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RunningServer]:
    """A real redis-server on a free loopback port, for the whole session."""
    try:
        with redis_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_cluster_service() -> Iterator[list[RunningServer]]:
    """A real three-node Redis Cluster on free loopback ports, for the whole session."""
    try:
        with redis_cluster(3) as nodes:
            yield nodes
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[RunningServer]:
    """A real PostgreSQL cluster on a free loopback port with an empty database."""
    try:
        with postgres_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def _store_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = kind.removesuffix("-async")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'flows.db'}"
    if kind == "postgresql":
        server: RunningServer = request.getfixturevalue("postgres_service")
        return server.url
    if kind == "redis":
        server = request.getfixturevalue("redis_service")
        return server.url
    return ""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``kit`` runs once per store kind: the module's ``KIT_KINDS`` (the
    engine and store suites add the async stores), else every blocking store."""
    if "kit" in metafunc.fixturenames:
        kinds = getattr(metafunc.module, "KIT_KINDS", STORE_KINDS)
        metafunc.parametrize("kit", kinds, indirect=True)


@pytest.fixture
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    """One StoreKit per store kind: a test that takes it runs once against each backend."""
    store_kit = StoreKit(
        request.param, _store_target(request.param, request, tmp_path), FakeClock()
    )
    yield store_kit
    store_kit.close()


@pytest.fixture
def make_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], StoreKit]]:
    """Build a StoreKit of a kind a test chooses (for tests parametrised on a subset)."""
    kits: list[StoreKit] = []

    def make(kind: str) -> StoreKit:
        kits.append(StoreKit(kind, _store_target(kind, request, tmp_path), FakeClock()))
        return kits[-1]

    yield make
    for store_kit in kits:
        store_kit.close()
