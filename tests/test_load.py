"""The load script runs: gunicorn, Redis, many complete logins, no error, no lost step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_load_script_smoke() -> None:
    """A short load run completes logins with no error and no lost or duplicated step."""
    run = subprocess.run(
        [sys.executable, "bench/load.py", "--seconds", "3", "--clients", "4", "--threads", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "errors:               0" in run.stdout
    assert "lost or duplicated:   0" in run.stdout
