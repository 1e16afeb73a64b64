"""scripts/demo.sh on a machine with Python and nothing else: a fresh virtual environment
with only the demo's extras, no system package manager, and the demo page served.

The script runs for real (pip from the package index, then ``mfa-fsm demo``), with a fresh
venv in a temporary directory and ``apt-get``, ``apt``, ``dpkg`` and ``sudo`` replaced on
PATH by stubs that record any call and fail: the demo path must call none of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
STUBBED = ("apt-get", "apt", "dpkg", "sudo")


def test_demo_script_needs_only_python(tmp_path: Path) -> None:
    """demo.sh makes a venv with [web,sql,sealed,throttle] only, calls no system package
    manager, and serves the demo page; SIGTERM stops it."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for name in STUBBED:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 1\n')
        stub.chmod(0o755)
    venv = tmp_path / "venv"
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "MFA_FSM_VENV": str(venv),
        "PYTHON": sys.executable,
    }
    env.pop("VIRTUAL_ENV", None)
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [
            shutil.which("bash") or "/bin/bash",
            str(ROOT / "scripts" / "demo.sh"),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        page = None
        deadline = time.monotonic() + 600  # a cold pip cache downloads a few wheels
        while time.monotonic() < deadline and demo.poll() is None:
            try:
                page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(1)
        output = (tmp_path / "demo.log").read_text(errors="replace")
        assert page is not None, f"the demo did not serve its page:\n{output[-3000:]}"
        assert page.status_code in (200, 302), output[-3000:]
        assert "mfa_fsm demo: open" in output
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=30)
        log.close()
    assert not calls.exists(), calls.read_text()
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for needed in ("flask", "sqlalchemy", "cryptography", "limits"):
        assert needed in installed
    for dev_only in ("pytest", "playwright", "pydot", "gunicorn", "redis"):
        assert f"{dev_only}==" not in installed
