"""The load script runs: Redis, each app under its real server, many complete logins, no
error, no lost step, and the app's CPU per page step, side by side."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402 - bench/load.py


def runnable_apps() -> list[str]:
    """Every app of bench/load.py, but FastAPI's while this build has no Starlette adapter:
    once mfa_fsm.web.starlette exists, a missing uvicorn or FastAPI fails the test."""
    names = list(load.APPS)
    if importlib.util.find_spec("mfa_fsm.web.starlette") is None:
        names.remove("fastapi")
    return names


def test_load_script_smoke() -> None:
    """A short load run completes logins on every app with no error and no lost or
    duplicated step, and measures the app's CPU per page step."""
    apps = runnable_apps()
    assert "flask" in apps
    run = subprocess.run(
        [
            sys.executable,
            "bench/load.py",
            "--apps",
            ",".join(apps),
            "--seconds",
            "2",
            "--clients",
            "4",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(summary) == set(apps)
    for figures in summary.values():
        assert figures["errors"] == 0
        assert figures["lost_or_duplicated"] == 0
        assert figures["logins_per_s"] > 0
        assert 0 < figures["cpu_ms_per_step"] < 1000
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_load_script_refuses_an_unknown_app() -> None:
    """--apps names only the apps it knows; anything else stops before any server starts."""
    run = subprocess.run(
        [sys.executable, "bench/load.py", "--apps", "bottle"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    assert "--apps takes names of flask, fastapi" in run.stderr
