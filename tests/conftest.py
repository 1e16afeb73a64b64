"""Fixtures shared by the whole suite: emulators, transports, and the secret-leak guard.

Every test runs under :func:`leak_guard`: it captures every structlog event and every
standard-library log record the test produced and, when the test used a ``recorder``
transport, fails the test if any secret that crossed the wire (tokens, codes, passwords,
session ids, cookies) appears in them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder, find_leaks


@pytest.fixture
def recorder() -> SecretRecorder:
    """A real HTTP transport that remembers every secret it carries."""
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
    if recorder is not None:
        texts = [repr(event) for event in events] + handler.lines
        leaks = find_leaks(texts, recorder.secrets)
        assert not leaks, f"{len(leaks)} secret(s) reached a log line"
