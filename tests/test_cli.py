"""The mfa-fsm command, driven as a person would: through a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfa_fsm.cli import main

ROOT = Path(__file__).resolve().parent.parent


class Terminal:
    """A child process on a pseudo-terminal: read what it shows, type answers."""

    def __init__(self, *args: str) -> None:
        self.main, child = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mfa_fsm.cli", *args],
            stdin=child,
            stdout=child,
            stderr=child,
            cwd=ROOT,
            close_fds=True,
        )
        os.close(child)
        self.screen = ""
        self.transcript = ""

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.screen)
            if found:
                self.screen = self.screen[found.end() :]
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {pattern!r}; screen: {self.screen[-500:]!r}"
            ready, _, _ = select.select([self.main], [], [], left)
            if ready:
                try:
                    text = os.read(self.main, 4096).decode(errors="replace")
                    self.screen += text
                    self.transcript += text
                except OSError:  # the child exited and closed the terminal
                    time.sleep(0.05)

    def type(self, text: str) -> None:
        os.write(self.main, (text + "\n").encode())

    def close(self) -> int:
        status = self.process.wait(timeout=15)
        os.close(self.main)
        return status


def test_login_with_otp_by_sms() -> None:
    """The walk-through lists factors, asks the delivery and the code, and logs in."""
    term = Terminal("login", "--emulator", "--user", "jsmith")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("3")
    term.expect(r"Send the code by \[1-3\]: ")
    term.type("1")
    code = term.expect(r"the code sent is (\d+)").group(1)
    term.expect(r"Type the code sent by SMS: ")
    term.type(code)
    term.expect("Authenticated as John Smith")
    assert term.close() == 0


def test_login_with_push_approved_by_flag() -> None:
    """A push shows a live wait with the deadline until the emulator approves it."""
    term = Terminal("login", "--emulator", "--user", "jsmith", "--approve-after", "1")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("1")
    term.expect(r"waiting for approval on your device: +\d+s elapsed, expires in +\d+s")
    term.expect("Authenticated as John Smith")
    assert term.close() == 0


def test_login_with_password_hides_it_and_retries() -> None:
    """The password is not echoed; a wrong one is asked again; a bad menu pick is re-asked."""
    term = Terminal("login", "--emulator", "--user", "pwuser")
    term.expect("Password: ")
    term.type("wrong-password")
    term.expect("Wrong password. Password: ")
    term.type("Passw0rd!")
    term.expect(r"Second factor \[1-3\]: ")
    term.type("9")
    term.expect("Please type a number from 1 to 3")
    term.type("2")
    token = term.expect(r"the token shows (\d+)").group(1)
    term.expect("Code from your token or authenticator app: ")
    term.type(token)
    term.expect("Authenticated as Pat")
    assert "Passw0rd!" not in term.transcript
    assert "wrong-password" not in term.transcript
    assert term.close() == 0


def test_login_failure_exits_1() -> None:
    """A login that ends Failed says why and exits 1."""
    term = Terminal("login", "--emulator", "--user", "jsmith")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("2")
    for _ in range(5):
        term.expect("Code from your token or authenticator app: ")
        term.type("00000000")
    term.expect(r"Login failed \(locked\)")
    assert term.close() == 1


def test_unknown_user_is_an_error_exit_2() -> None:
    """An IdP refusal is reported as an error with exit status 2."""
    out = io.StringIO()
    status = main(["login", "--emulator", "--user", "nobody"], stdin=io.StringIO(""), stdout=out)
    assert status == 2
    assert "error: the IdP refused" in out.getvalue()


def test_real_tenant_needs_url_and_application() -> None:
    """Without --emulator, the base URL and application id are required."""
    out = io.StringIO()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_FSM_")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", env)
        status = main(["login", "--user", "jsmith"], stdin=io.StringIO(""), stdout=out)
    assert status == 2
    assert "--base-url" in out.getvalue()


def test_diagrams_check_and_write(tmp_path: Path) -> None:
    """`diagrams` writes every flow; `--check` passes on them and fails on a stale one."""
    out = io.StringIO()
    assert main(["diagrams", "--out", str(tmp_path)], stdout=out) == 0
    assert main(["diagrams", "--check", "--out", str(tmp_path)], stdout=out) == 0
    next(tmp_path.glob("*.mmd")).write_text("old")
    assert main(["diagrams", "--check", "--out", str(tmp_path)], stdout=out) == 1
    assert "stale diagrams" in out.getvalue()


def test_emulate_serves_both_emulators() -> None:
    """`emulate` starts both emulators on the given ports and prints their URLs."""
    out = io.StringIO()
    status = main(
        ["emulate", "--entrust-port", "0", "--cyberark-port", "0", "--seconds", "0.2"], stdout=out
    )
    assert status == 0
    assert re.search(r"Entrust IDaaS emulator: +http://127\.0\.0\.1:\d+", out.getvalue())
    assert re.search(r"CyberArk Identity emulator: +http://127\.0\.0\.1:\d+", out.getvalue())
