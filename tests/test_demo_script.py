"""The README's demo command on a machine with Python and nothing else: a fresh virtual
environment with the web extra alone, no system package manager, no server, no browser, and
a complete Entrust login through the demo over HTTP.

``scripts/demo.sh`` runs for real: ``python -m venv`` in a temporary directory, pip installing
the local checkout with ``.[web]`` only (pip's cache keeps it to seconds once warm), then
``mfa-fsm demo`` on a free loopback port. ``apt-get``, ``apt``, ``dpkg``, ``sudo`` and the
servers and browser the test suite uses are replaced on PATH by stubs that record any call
and fail: the demo path must call none of them. The logins are driven as a person would, with
``requests``: the demo application's sign-in, the factor list, the emulator control page to
approve the push or read the code sent, and the demo's home at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.demo_client import DemoUserAgent
from tests.support.servers import free_port

# Runs in the normal suite; the marker only lets a quick local run leave it out.
pytestmark = pytest.mark.fresh_venv

ROOT = Path(__file__).resolve().parent.parent
#: Package managers, and the servers and browser only the tests need.
STUBBED = ("apt-get", "apt", "dpkg", "sudo", "redis-server", "pg_ctl", "initdb", "chromium")


@pytest.fixture(scope="module")
def fresh_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """demo.sh in a fresh venv; yields (the demo's URL, its log, the venv)."""
    tmp_path = tmp_path_factory.mktemp("fresh_demo")
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
    for inherited in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(inherited, None)
    log_path = tmp_path / "demo.log"
    log = log_path.open("wb")
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
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600  # a cold pip cache downloads a few wheels
        up = False
        while time.monotonic() < deadline and demo.poll() is None and not up:
            try:
                up = requests.get(url + "signin", timeout=5).status_code == 200
            except requests.ConnectionError:
                time.sleep(0.5)
        output = log_path.read_text(errors="replace")
        assert up, f"the demo did not serve its page:\n{output[-3000:]}"
        yield url, log_path, venv
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=30)
        log.close()
        assert not calls.exists(), calls.read_text()


def test_fresh_venv_has_the_web_extra_only(fresh_demo: tuple[str, Path, Path]) -> None:
    """demo.sh installed the package with [web] alone: Flask, limits and SQLAlchemy (the
    embedded SQLite store), none of the servers' clients, test tools or browser drivers; the
    demo keeps flows in SQLite and serves them with Flask."""
    _, log, venv = fresh_demo
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for needed in ("flask==", "sqlalchemy==", "limits==", "mfa_fsm=="):
        assert needed in installed.replace("mfa-fsm", "mfa_fsm")
    for not_needed in (
        "pytest",
        "playwright",
        "pydot",
        "gunicorn",
        "redis",
        "psycopg",
        "cryptography",
        "httpx",
        "trustme",
    ):
        assert f"\n{not_needed}==" not in f"\n{installed}"
    output = log.read_text(errors="replace")
    assert "mfa_fsm demo: open" in output
    assert "flows are kept in SQLite in" in output
    assert "pages served by flask" in output


def test_fresh_venv_demo_completes_an_entrust_push_login(
    fresh_demo: tuple[str, Path, Path],
) -> None:
    """pushmc signs in on the demo application, picks the push, taps the number the login
    page shows among those the control page (the phone) offers, and lands on the demo's
    home, signed in."""
    url, _, _ = fresh_demo
    agent = DemoUserAgent(url)
    assert agent.sign_in("pushmc", "pushmc-app-password") == "AwaitingSecondFactor"
    assert agent.step("factor", factor="TOKENPUSH") == "OobPending"
    shown = re.search(r'id="mfa-number">(\d+)<', agent.page)
    assert shown
    assert shown.group(1) in agent.numbers_offered("pushmc")
    done = agent.on_phone("entrust", "pushmc", "approve", number=shown.group(1))
    assert "approved the request for pushmc" in done
    assert agent.poll_until_settled() == "DemoHome"
    assert "signed you in as\n  <code>pushmc</code>" in agent.page


def test_fresh_venv_demo_completes_an_entrust_code_login(
    fresh_demo: tuple[str, Path, Path],
) -> None:
    """jsmith asks for a code by SMS, reads it on the control page, types it: signed in."""
    url, _, _ = fresh_demo
    agent = DemoUserAgent(url)
    agent.sign_in("jsmith", "jsmith-app-password")
    assert agent.step("factor", factor="OTP", delivery="SMS") == "SecondFactorSelected"
    assert agent.step("response", response=agent.code_sent("jsmith")) == "DemoHome"


def test_fresh_venv_demo_says_which_extra_an_option_needs(
    fresh_demo: tuple[str, Path, Path],
) -> None:
    """With the web extra alone, `--sealed` and another framework stop before anything starts
    and name the extra to install (exit 2), instead of an ImportError."""
    _, _, venv = fresh_demo
    for option, extra in ((["--sealed"], "sealed"), (["--framework", "django"], "django")):
        run = subprocess.run(
            [str(venv / "bin" / "mfa-fsm"), "demo", "--port", "0", "--seconds", "0.1", *option],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        said = run.stdout + run.stderr
        assert run.returncode == 2, said
        assert f"pip install 'mfa_fsm[{extra}]'" in said
        assert "Traceback" not in said
