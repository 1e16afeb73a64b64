"""Every benchmark script in bench/ runs through (tiny sizes): the Performance section's
commands keep working as the API changes (they once stopped at VerifiedUserRequired)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

#: script -> the smallest arguments that still run every variant once
QUICK = {
    "engine_step.py": ["--rounds", "1", "--cycles", "20"],
    "http_overhead.py": ["--rounds", "1", "--logins", "1"],
    "logging_cost.py": ["--rounds", "1", "--cycles", "20"],
    "import_time.py": ["--rounds", "1"],
    "store_step.py": ["--rounds", "1", "--cycles", "5", "--flows", "50"],
    "snapshot_codec.py": ["--rounds", "1", "--cycles", "5"],
}


def test_every_script_is_covered() -> None:
    """A new benchmark script is added here (load.py runs in tests/test_load.py)."""
    scripts = {path.name for path in BENCH.glob("*.py")} - {"load.py", "load_app.py"}
    assert scripts == set(QUICK)


@pytest.mark.parametrize("script", sorted(QUICK))
def test_bench_script_runs(script: str) -> None:
    """The script exits 0 and ends with its JSON summary line."""
    done = subprocess.run(
        [sys.executable, script, *QUICK[script]],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert isinstance(json.loads(done.stdout.strip().splitlines()[-1]), dict)
