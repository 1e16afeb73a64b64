"""Test-server helpers: a missing server binary fails with an install hint, never skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import servers
from tests.support.servers import ServerUnavailable

ROOT = Path(__file__).resolve().parent.parent


def test_missing_redis_server_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without redis-server on PATH, starting Redis raises with the apt-get command."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerUnavailable, match="apt-get install -y redis-server"):
        servers.redis_server().__enter__()


def test_missing_postgres_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without PostgreSQL's server binaries, starting it raises with the apt-get command."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("tests.support.servers.glob.glob", lambda pattern: [])
    with pytest.raises(ServerUnavailable, match="apt-get install -y postgresql"):
        servers.postgres_server().__enter__()


def test_missing_server_fails_the_tests_that_need_it() -> None:
    """A store test whose server binary is missing errors out (exit 1); it is not skipped."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/stores/test_stores.py::test_round_trip[redis]"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "1 error" in done.stdout
    assert "skipped" not in done.stdout
    assert "apt-get install -y redis-server" in done.stdout
