"""The mfa-fsm command, driven as a person would: through a pseudo-terminal (or stdin)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from mfa_fsm import EntrustConfig, MemoryStore, UsageError
from mfa_fsm.cli import is_loopback, main, open_store
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.engine import Engine
from mfa_fsm.stores.redis import RedisStore
from mfa_fsm.stores.sql import SqlStore
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE

ROOT = Path(__file__).resolve().parent.parent
#: What the walk-through says for a resend (or the same factor again) inside its cooldown.
TOO_SOON = r"already sent (?:just now|\d+ s ago); wait \d+ s before asking for another\."
TOO_SOON_CODE = "A code was " + TOO_SOON
TOO_SOON_REQUEST = "A request was " + TOO_SOON


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
    term = Terminal("login", "--provider", "entrust", "--emulator", "--user", "jsmith")
    term.expect("Demo application password: ")
    term.type("jsmith-app-password")
    term.expect("First factor: jsmith's password, checked by mfa-fsm login")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("3")
    menu = term.expect(r"Send the code by \[1-3\]: ")
    assert re.search(r"1\. text message\s+2\. e-mail\s+3\. voice call", menu.string)
    assert not re.search(r"\d\. (SMS|EMAIL|VOICE)\b", menu.string)
    term.type("1")
    code = term.expect(r"the code sent is (\d+)").group(1)
    term.expect(r"Type the code sent by SMS[^:]*: ")
    term.type(code)
    term.expect(r"Authenticated as jsmith \(John Smith\)")
    assert term.close() == 0


def test_another_way_from_the_code_prompt() -> None:
    """Typing "other" at a code prompt lists the factors again; the token code signs in."""
    term = Terminal("login", "--provider", "entrust", "--emulator", "--user", "jsmith")
    term.expect("Demo application password: ")
    term.type("jsmith-app-password")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("3")
    term.expect(r"Send the code by \[1-3\]: ")
    term.type("1")
    term.expect(r'type "other" to try another way\): ')
    term.type("other")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("2")
    term.expect(r"Code from your token or authenticator app[^:]*: ")
    term.type(DEMO_TOKEN_CODE)
    term.expect(r"Authenticated as jsmith \(John Smith\)")
    assert term.close() == 0


def test_a_malformed_code_and_an_early_resend_are_said_and_asked_again() -> None:
    """The walk-through's recovery paths: a code of the wrong shape is refused before IDaaS
    ("Not sent", asked again), Enter alone asks for a new code (refused inside the 30 s
    cooldown, saying when), and the right code still logs in."""
    term = Terminal("login", "--provider", "entrust", "--emulator", "--user", "jsmith")
    term.expect("Demo application password: ")
    term.type("jsmith-app-password")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("3")
    term.expect(r"Send the code by \[1-3\]: ")
    term.type("1")
    code = term.expect(r"the code sent is (\d+)").group(1)
    term.expect(r"Type the code sent by SMS \(or press Enter alone to send a new code[^)]*\): ")
    term.type("12")
    term.expect(r"The code must be 4 to 16 digits \(your organisation's setting\)\. Nothing")
    term.expect(r"Type the code sent by SMS \(or press Enter alone to send a new code[^)]*\): ")
    term.type("")
    term.expect(TOO_SOON_CODE)
    term.expect(r"Type the code sent by SMS \(or press Enter alone to send a new code[^)]*\): ")
    term.type(code)
    term.expect(r"Authenticated as jsmith \(John Smith\)")
    assert term.close() == 0


def test_login_with_push_approved_by_flag() -> None:
    """A push shows a live wait with the deadline until the emulator approves it."""
    term = Terminal(
        "login",
        "--provider",
        "entrust",
        "--emulator",
        "--user",
        "jsmith",
        "--approve-after",
        "1",
        "--first-factor-checked-by",
        "a test's own check",
    )
    term.expect("First factor: jsmith's password, checked by a test's own check.")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("1")
    term.expect(r"waiting for approval on your device: +\d+s elapsed, expires in +\d+s")
    term.expect(r"Authenticated as jsmith \(John Smith\)")
    assert term.close() == 0


def test_login_with_password_hides_it_and_retries() -> None:
    """The password is not echoed; a wrong one is asked again; a bad menu pick is re-asked."""
    term = Terminal("login", "--provider", "entrust", "--emulator", "--user", "pwuser")
    term.expect("Password: ")
    term.type("wrong-password")
    term.expect("Wrong password. Password: ")
    term.type("Passw0rd!")
    term.expect(r"Second factor \[1-3\]: ")
    term.type("9")
    term.expect("Please type a number from 1 to 3")
    term.type("2")
    token = term.expect(r"the token shows (\d+)").group(1)
    term.expect(r"Code from your token or authenticator app[^:]*: ")
    term.type(token)
    term.expect(r"Authenticated as pwuser \(Pat")
    assert "Passw0rd!" not in term.transcript
    assert "wrong-password" not in term.transcript
    assert term.close() == 0


def test_login_failure_exits_1() -> None:
    """A login that ends Failed says why, offers to start again, and exits 1 on "no"."""
    term = Terminal("login", "--provider", "entrust", "--emulator", "--user", "jsmith")
    term.expect("Demo application password: ")
    term.type("jsmith-app-password")
    term.expect(r"Second factor \[1-6\]: ")
    term.type("2")
    for _ in range(5):
        term.expect(r"Code from your token or authenticator app[^:]*: ")
        term.type("00000000")
    term.expect(r"Login failed \(locked\)")
    term.expect(r"Start again for jsmith\? \[y/N\]: ")
    term.type("")
    assert term.close() == 1


def test_unknown_user_is_an_error_exit_2() -> None:
    """An IdP refusal is reported as an error with exit status 2."""
    out = io.StringIO()
    status = main(
        ["login", "--provider", "entrust", "--emulator", "--user", "nobody"],
        stdin=io.StringIO(""),
        stdout=out,
    )
    assert status == 2
    assert "error: the IdP refused" in out.getvalue()


def test_external_user_needs_the_application_password() -> None:
    """An EXTERNAL user is vouched for only after the demo application's own password: a
    wrong one is an error (exit 2), before any flow starts."""
    out = io.StringIO()
    status = main(
        ["login", "--provider", "entrust", "--emulator", "--user", "jsmith"],
        stdin=io.StringIO("guess\n"),
        stdout=out,
    )
    assert status == 2
    assert "demo application password is not right" in out.getvalue()
    assert "guess" not in out.getvalue()


def test_real_tenant_needs_url_and_application() -> None:
    """Without --emulator, the base URL and application id are required."""
    out = io.StringIO()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_FSM_")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", env)
        status = main(
            ["login", "--provider", "entrust", "--user", "jsmith"],
            stdin=io.StringIO(""),
            stdout=out,
        )
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
        [
            "emulate",
            "--entrust-port",
            "0",
            "--cyberark-port",
            "0",
            "--duo-port",
            "0",
            "--seconds",
            "0.2",
        ],
        stdout=out,
    )
    assert status == 0
    assert re.search(r"Entrust IDaaS emulator: +http://127\.0\.0\.1:\d+", out.getvalue())
    assert re.search(r"CyberArk Identity emulator: +http://127\.0\.0\.1:\d+", out.getvalue())


def test_cyberark_login_with_password_and_sms_code() -> None:
    """CyberArk: a hidden password, then an SMS whose code is typed while it is pending."""
    term = Terminal("login", "--provider", "cyberark", "--emulator", "--user", "alice")
    term.expect("Enter Password: ")
    term.type("alice-password")
    term.expect(r"Second factor \[1-4\]: ")
    term.type("2")
    code = term.expect(r"the code sent is (\d+)").group(1)
    term.expect(r"Type the code \(or press Enter to wait[^)]*\): ")
    term.type(code)
    term.expect(r"Authenticated as alice \(Alice")
    assert "alice-password" not in term.transcript
    assert term.close() == 0


def test_cyberark_login_with_push_shows_the_wait() -> None:
    """CyberArk: a push shows the live wait with elapsed time and deadline until approved."""
    term = Terminal(
        "login", "--provider", "cyberark", "--emulator", "--user", "alice", "--approve-after", "1"
    )
    term.expect("Enter Password: ")
    term.type("alice-password")
    term.expect(r"Second factor \[1-4\]: ")
    term.type("1")
    term.expect(r"waiting for approval on your device: +\d+s elapsed, expires in +\d+s")
    term.expect(r"Authenticated as alice \(Alice")
    assert term.close() == 0


def test_cyberark_sms_can_be_waited_for_instead() -> None:
    """Pressing Enter at the code prompt waits for the SMS link to be clicked instead."""
    term = Terminal(
        "login", "--provider", "cyberark", "--emulator", "--user", "dave", "--approve-after", "1"
    )
    term.expect("Enter Password: ")
    term.type("dave-password")
    term.expect(r"Second factor \[1-2\]: ")
    term.type("1")
    term.expect(r"Type the code \(or press Enter to wait[^)]*\): ")
    term.type("")
    term.expect("Authenticated as")
    assert term.close() == 0


def test_cyberark_security_questions_from_stdin() -> None:
    """Several security questions are asked one by one (here from plain stdin)."""
    out = io.StringIO()
    answers = io.StringIO("carol-password\nBeetle\nTeal\n")
    argv = ["login", "--provider", "cyberark", "--emulator", "--user", "carol"]
    assert main(argv, stdin=answers, stdout=out) == 0
    assert "First car?" in out.getvalue()
    assert "Authenticated as" in out.getvalue()


def test_cyberark_real_tenant_needs_a_url() -> None:
    """Without --emulator, CyberArk needs --base-url (or MFA_FSM_CYBERARK_URL)."""
    out = io.StringIO()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_FSM_")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", env)
        status = main(["login", "--provider", "cyberark", "--user", "alice"], stdout=out)
    assert status == 2
    assert "MFA_FSM_CYBERARK_URL" in out.getvalue()


def test_demo_prints_the_url_and_the_demo_users() -> None:
    """`demo` starts both emulators and the web app and prints where, and who can log in."""
    out = io.StringIO()
    assert main(["demo", "--port", "0", "--seconds", "0.2"], stdout=out) == 0
    text = out.getvalue()
    assert re.search(r"open http://127\.0\.0\.1:\d+/ in a browser", text)
    assert re.search(
        r"emulator control page \(your phone\): http://127\.0\.0\.1:\d+/emulator", text
    )
    assert "SQLite in" in text
    for user in ("jsmith", "pwuser", "alice", "bob"):
        assert re.search(rf"^  \w+ +{user} ", text, re.M), user


def test_demo_framework_option() -> None:
    """`demo` serves the pages with Flask by default and says so; `--framework` takes only
    the frameworks it knows (tests/web/test_demo.py runs each in a process of its own)."""
    out = io.StringIO()
    assert main(["demo", "--port", "0", "--seconds", "0.2"], stdout=out) == 0
    assert "pages served by flask" in out.getvalue()
    with pytest.raises(SystemExit) as refused:
        main(["demo", "--framework", "bottle"], stdout=io.StringIO())
    assert refused.value.code == 2


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_demo_serves_the_login_page_until_stopped(stop: signal.Signals) -> None:
    """The demo's URL serves the start page; Ctrl-C or `kill` stops it cleanly."""
    term = Terminal("demo", "--port", "0")
    url = term.expect(r"open (http://127\.0\.0\.1:\d+/) in a browser").group(1)
    term.expect("Ctrl-C stops.")
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert 'id="user"' in page.text
    term.process.send_signal(stop)
    assert term.close() == 0


def test_demo_with_a_store_url(tmp_path: Path) -> None:
    """`demo --store URL` keeps flows in that store."""
    out = io.StringIO()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["demo", "--port", "0", "--store", url, "--seconds", "0.1"], stdout=out) == 0
    assert "flows are kept in SqlStore" in out.getvalue()


def test_live_diagram_of_a_state() -> None:
    """`diagrams --provider P --state S` prints the flow with S marked, as Mermaid or SVG."""
    out = io.StringIO()
    argv = ["diagrams", "--provider", "cyberark", "--state", "OobPending"]
    assert main(argv, stdout=out) == 0
    assert out.getvalue().rstrip().endswith("class OobPending current")
    svg = io.StringIO()
    assert main([*argv, "--svg"], stdout=svg) == 0
    assert svg.getvalue().startswith("<?xml")


def test_live_diagram_of_a_stored_flow(tmp_path: Path, entrust_emulator: EntrustEmulator) -> None:
    """`diagrams --flow ID --store URL` marks the state that flow is in now."""
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    engine = Engine(open_store(url), [config])
    view = engine.start("entrust", verified_user=VerifiedUser("jsmith"))
    engine.send(view.flow_id, "submit_first_factor")
    out = io.StringIO()
    assert main(["diagrams", "--flow", view.flow_id, "--store", url], stdout=out) == 0
    assert out.getvalue().rstrip().endswith("class AwaitingSecondFactor current")
    assert main(["diagrams", "--flow", view.flow_id], stdout=out) == 2
    assert "--flow needs --store" in out.getvalue()
    assert main(["diagrams", "--flow", "unknown", "--store", url], stdout=out) == 2


def test_open_store_knows_the_store_urls(tmp_path: Path) -> None:
    """Store URLs name the memory, SQL and Redis stores; anything else is a usage error."""
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'x.db'}"), SqlStore)
    assert isinstance(open_store("redis://127.0.0.1:1/0"), RedisStore)
    with pytest.raises(UsageError, match="store URL"):
        open_store("mongodb://localhost")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - a string under test, never bound
        ("192.0.2.1", False),
        ("demo.example", False),
    ],
)
def test_demo_warns_off_loopback(host: str, loopback: bool) -> None:
    """The demo warns when served beyond loopback (its control page approves pushes)."""
    assert is_loopback(host) is loopback


def test_purge_refuses_a_missing_database_or_table(tmp_path: Path) -> None:
    """`purge` of a SQLite file or a table that does not exist fails (exit 2, saying what is
    missing) and creates neither: a typo in a cron line must not pass silently."""
    missing = tmp_path / "nowhere" / "flows.db"
    out = io.StringIO()
    assert main(["purge", f"sqlite:///{missing}"], stdout=out) == 2
    assert "no SQLite database at" in out.getvalue()
    assert not missing.exists() and not missing.parent.exists()
    path = tmp_path / "flows.db"
    SqlStore(f"sqlite:///{path}").create_schema()
    out = io.StringIO()
    assert main(["purge", f"sqlite:///{path}", "--table", "mfa_fsm_ledger"], stdout=out) == 2
    assert "has no table 'mfa_fsm_ledger'" in out.getvalue()
    assert not sa.inspect(sa.create_engine(f"sqlite:///{path}")).has_table("mfa_fsm_ledger")
    assert main(["purge", f"sqlite:///{path}"], stdout=io.StringIO()) == 0


def test_diagrams_without_pydot_say_so_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Graphviz's dot on PATH but no pydot, `diagrams` prints one line naming the
    [diagrams] extra, writes no file and exits non-zero; `--svg` does the same."""
    assert shutil.which("dot"), "the test machine has Graphviz (scripts/setup.sh)"
    monkeypatch.setitem(sys.modules, "pydot", None)  # import pydot now raises ImportError
    out = io.StringIO()
    target = tmp_path / "out"
    assert main(["diagrams", "--out", str(target)], stdout=out) == 2
    assert out.getvalue().count("\n") == 1 and "mfa_fsm[diagrams]" in out.getvalue()
    assert not target.exists()
    svg = io.StringIO()
    assert (
        main(["diagrams", "--provider", "entrust", "--state", "OobPending", "--svg"], stdout=svg)
        == 2
    )
    assert svg.getvalue().count("\n") == 1 and "mfa_fsm[diagrams]" in svg.getvalue()


def test_diagram_of_an_unknown_state_lists_the_states() -> None:
    """`diagrams --state Bogus` is refused with the provider's states, printing no diagram."""
    out = io.StringIO()
    assert main(["diagrams", "--provider", "cyberark", "--state", "Bogus"], stdout=out) == 2
    assert "no state 'Bogus'" in out.getvalue() and "OobPending" in out.getvalue()
    assert "class Bogus" not in out.getvalue()


def test_login_checks_client_ip_before_any_prompt() -> None:
    """`login --client-ip nope` fails before it asks for anything (stdin is empty)."""
    out = io.StringIO()
    argv = ["login", "--provider", "entrust", "--emulator", "--client-ip", "nope"]
    assert main(argv, stdin=io.StringIO(""), stdout=out) == 2
    assert "client_ip" in out.getvalue() and "User id" not in out.getvalue()


def test_ctrl_c_where_the_idp_cannot_withdraw_a_push_says_so() -> None:
    """Duo's Auth API has no call that withdraws a push: Ctrl-C ends the flow here and says
    the request times out at Duo, never that it was withdrawn there."""
    term = Terminal(
        "login", "--provider", "duo", "--emulator", "--user", "dsmith",
        "--first-factor-checked-by", "a test's own check",
    )  # fmt: skip
    term.expect(r"Second factor \[1-\d\]: ")
    term.type("1")
    term.expect(r"waiting for approval on your device")
    term.process.send_signal(signal.SIGINT)
    term.expect("cancelled here; the identity provider offers no call to withdraw the request")
    assert term.close() == 130
    assert "withdrawn at the identity provider" not in term.transcript


def test_ctrl_c_while_a_push_is_pending_cancels_it_at_the_idp() -> None:
    """SIGINT during the wait for a push (a person pressing Ctrl-C): the command withdraws
    the push at IDaaS (complete with ``cancel: true``), says so, and exits 130; the push can
    no longer be approved."""
    with EntrustEmulator() as emulator:
        term = Terminal(
            "login",
            "--provider",
            "entrust",
            "--base-url",
            emulator.base_url,
            "--application-id",
            emulator.application_id,
            "--user",
            "jsmith",
            "--first-factor-checked-by",
            "a test's own check",
        )
        term.expect(r"Second factor \[1-6\]: ")
        term.type("1")
        term.expect(r"waiting for approval on your device")
        term.process.send_signal(signal.SIGINT)
        term.expect("cancelled: the sign-in request was withdrawn at the identity provider")
        assert term.close() == 130
        cancels = [c for c in emulator.calls if c.body and c.body.get("cancel") is True]
        assert len(cancels) == 1 and cancels[0].status == 200
        assert cancels[0].path.endswith("/authenticate/TOKENPUSH/complete")
        with pytest.raises(LookupError):
            emulator.approve_push("jsmith")


@pytest.mark.parametrize("command", ["", "demo", "login", "emulate", "diagrams", "purge"])
def test_help_is_plain_text(command: str) -> None:
    """``--help`` of the command and of every subcommand shows no reST markup."""
    args = [sys.executable, "-m", "mfa_fsm.cli", *([command] if command else []), "--help"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0
    assert "usage: mfa-fsm" in done.stdout
    for markup in ("``", ":class:", ":func:", ":mod:", "`"):
        assert markup not in done.stdout, f"{markup!r} in mfa-fsm {command} --help"


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-such-option"],
        ["no-such-command"],
        ["login", "--provider", "nope"],
        ["login", "--provider", "entrust", "--emulator", "--approve-after", "-1"],
        ["login", "--provider", "entrust", "--emulator", "--approve-after", "soon"],
        ["demo", "--port", "70000"],
        ["emulate", "--seconds", "0"],
    ],
)
def test_a_bad_argument_exits_non_zero(argv: list[str]) -> None:
    """A bad argument stops before anything runs, with a message and exit status 2."""
    args = [sys.executable, "-m", "mfa_fsm.cli", *argv]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False, timeout=30)
    assert done.returncode == 2
    assert "error:" in done.stderr


def test_a_token_code_typed_on_the_terminal_while_a_push_is_pending() -> None:
    """On a real terminal (the line arrives while the spinner runs): the push's wait offers
    "new", "other" and the token code; "new" inside the cooldown says when, and the TOKEN
    code typed during the wait signs in."""
    term = Terminal(
        "login", "--provider", "entrust", "--emulator", "--user", "jsmith",
        "--first-factor-checked-by", "a test's own check",
    )  # fmt: skip
    term.expect(r"Second factor \[1-6\]: ")
    term.type("1")
    term.expect(r'While you wait, type "new" to send another request; or "other" to try another')
    term.expect(r"waiting for approval on your device")
    term.type("new")
    term.expect(TOO_SOON_REQUEST)
    term.expect(r"waiting for approval on your device")
    term.type(DEMO_TOKEN_CODE)
    term.expect(r"Authenticated as jsmith \(John Smith\)")
    assert term.close() == 0
