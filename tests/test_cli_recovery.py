"""``mfa-fsm login``'s recovery paths and polish, in-process against real emulators over HTTP:
what may be typed while a push is pending (another request, another way, the soft-token code
instead), sending another request after one expired (``Flow.again``), a malformed Duo passcode
refused before Duo, IdP text with terminal escapes and bidi controls printed harmlessly, and
log lines kept off the terminal unless asked for."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import requests

from mfa_fsm import EntrustConfig, EntrustFlow, UsageError, VerifiedUser, cli
from mfa_fsm.cli import main, printable, shown
from mfa_fsm.core.flow import Flow
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator, DuoEmulatorDevice
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE

CHECKED = ["--first-factor-checked-by", "a test's own check"]
ROOT = Path(__file__).resolve().parent.parent
#: What the walk-through says for a resend (or the same factor again) inside its cooldown.
TOO_SOON = r"already sent (?:just now|\d+ s ago); wait \d+ s before asking for another\."
TOO_SOON_CODE = "A code was " + TOO_SOON
TOO_SOON_REQUEST = "A request was " + TOO_SOON

#: What the person types: text, or a callable given the screen so far that returns the
#: text, or ``None`` to type nothing (it acted instead: answered a push on the "phone").
Line = str | Callable[[str], str | None]
#: (cue, line): the line is typed once the screen shows ``cue`` (a regular expression) after
#: the previous cue.
Script = list[tuple[str, Line]]


class Person:
    """A person at the terminal: reads the screen (the command's stdout) from a thread, and
    types each line of the script into a real pipe (the command's stdin) once its cue shows,
    so the command sees input arrive as it would from a keyboard, in the middle of a wait
    too. Input ends after the last line."""

    def __init__(self, script: Script) -> None:
        read_end, self._write_end = os.pipe()
        self.stdin = os.fdopen(read_end, "r")
        self.screen = io.StringIO()
        self.missed: str | None = None
        self._thread = threading.Thread(target=self._type, args=(script,), daemon=True)
        self._thread.start()

    def _type(self, script: Script) -> None:
        seen = 0
        try:
            for cue, line in script:
                deadline = time.monotonic() + 30
                while not (found := re.search(cue, self.screen.getvalue()[seen:])):
                    if time.monotonic() > deadline:
                        self.missed = cue
                        return
                    time.sleep(0.02)
                seen += found.end()
                text = line(self.screen.getvalue()) if callable(line) else line
                if text is not None:
                    os.write(self._write_end, (text + "\n").encode())
        finally:
            os.close(self._write_end)

    def finish(self) -> str:
        self._thread.join(timeout=30)
        self.stdin.close()
        assert self.missed is None, f"never saw {self.missed!r}: {self.screen.getvalue()[-600:]!r}"
        return self.screen.getvalue()


def login(argv: list[str], script: Script) -> tuple[int, str]:
    person = Person(script)
    status = main(argv, stdin=person.stdin, stdout=person.screen)
    return status, person.finish()


#: The cues of the walk-through's questions.
PICK = r"Second factor \[1-\d\]: "
PENDING = r"While you wait, type [^\n]*, then Enter\."
CODE = r"(?:app|Duo Mobile or your token|passcode)[^:\n]*: "


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MFA_FSM_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def entrust_emulator() -> Iterator[EntrustEmulator]:
    """Pushes live 20 s at IDaaS, so a test that goes wrong ends in seconds, not minutes."""
    with EntrustEmulator(push_lifetime=20) as emulator:
        yield emulator


@pytest.fixture
def duo(monkeypatch: pytest.MonkeyPatch, no_env: None) -> Iterator[DuoEmulator]:
    with DuoEmulator() as emulator:
        monkeypatch.setenv("MFA_FSM_DUO_SKEY", emulator.credentials.secret_key)
        yield emulator


def duo_args(emulator: DuoEmulator, user: str = "jsmith") -> list[str]:
    creds = emulator.credentials
    return [
        "login", "--provider", "duo", "--integration-key", creds.integration_key,
        "--api-hostname", creds.api_hostname, "--base-url", emulator.base_url,
        "--user", user, *CHECKED,
    ]  # fmt: skip


def entrust_args(emulator: EntrustEmulator) -> list[str]:
    return [
        "login", "--provider", "entrust", "--base-url", emulator.base_url,
        "--application-id", emulator.application_id, "--user", "jsmith", *CHECKED,
    ]  # fmt: skip


def option(screen: str, label: str) -> str:
    """The number the last factor menu on ``screen`` gives the option starting ``label``."""
    found = re.findall(rf"  (\d+)\. {re.escape(label)}", screen)
    assert found, f"no option {label!r} on screen: {screen[-600:]!r}"
    return str(found[-1])


# -- while a push is pending -----------------------------------------------------------------

PUSH_ENTRUST = "Approve on the Entrust mobile app"
TOKEN_ENTRUST = "Code from your token or authenticator app"


def test_a_pending_entrust_push_takes_the_soft_token_code_instead(
    entrust_emulator: EntrustEmulator,
) -> None:
    """While the push waits, "new" inside the cooldown is said, and typing the TOKEN code
    switches to TOKEN (a re-select with the current IDaaS token) and signs in."""
    status, out = login(
        entrust_args(entrust_emulator),
        [
            (PICK, lambda screen: option(screen, PUSH_ENTRUST)),
            (PENDING, "new"),
            (TOO_SOON_REQUEST, DEMO_TOKEN_CODE),
        ],
    )
    assert status == 0, out
    assert 'While you wait, type "new" to send another request; or "other"' in out
    assert "the code from your token or authenticator app instead" in out
    assert "Authenticated as jsmith (John Smith)" in out
    paths = [c.path for c in entrust_emulator.calls if "/authenticate/" in c.path]
    assert paths[-2:] == [
        "/api/web/v2/authentication/users/authenticate/TOKEN",
        "/api/web/v1/authentication/users/authenticate/TOKEN/complete",
    ]


def test_a_pending_push_sends_another_request_after_the_cooldown(
    entrust_emulator: EntrustEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "new" past the cooldown (1 s here) re-selects the push: a new push at IDaaS, which
    the "phone" approves, and the login completes."""
    built = cli.config_from_settings

    def short_cooldown(flow_class: type[Flow], values: dict[str, object]) -> object:
        return attrs.evolve(built(flow_class, values), resend_cooldown=1.0)  # type: ignore[misc]

    monkeypatch.setattr(cli, "config_from_settings", short_cooldown)

    def after_the_cooldown(screen: str) -> str:
        time.sleep(2.1)  # resend_at is a whole epoch second: up to 2 s away
        return "new"

    status, out = login(
        entrust_args(entrust_emulator),
        [
            (PICK, lambda screen: option(screen, PUSH_ENTRUST)),
            (PENDING, after_the_cooldown),
            ("Sent again.", lambda screen: entrust_emulator.approve_push("jsmith")),
        ],
    )
    assert status == 0, out
    assert "Authenticated as jsmith (John Smith)" in out
    selects = [c for c in entrust_emulator.calls if c.path.endswith("/authenticate/TOKENPUSH")]
    assert len(selects) == 2


def test_other_while_a_push_is_pending_lists_the_factors(entrust_emulator: EntrustEmulator) -> None:
    status, out = login(
        entrust_args(entrust_emulator),
        [
            (PICK, lambda screen: option(screen, PUSH_ENTRUST)),
            (PENDING, "other"),
            (PICK, lambda screen: option(screen, TOKEN_ENTRUST)),
            (CODE, DEMO_TOKEN_CODE),
        ],
    )
    assert status == 0, out
    assert out.count("Second factor [1-") == 2
    assert "Authenticated as jsmith (John Smith)" in out


def test_send_another_push_after_one_timed_out(duo: DuoEmulator) -> None:
    """Duo: the push times out (expired); the walk-through offers to send another request,
    starts a fresh flow for the same vouched user straight at the device list (no first
    factor asked again, Duo's /preauth once more), and the new push is approved."""

    def answer(how: str) -> Callable[[str], None]:
        def on_the_phone(screen: str) -> None:
            duo.answer("jsmith", how)  # type: ignore[arg-type]

        return on_the_phone

    status, out = login(
        duo_args(duo),
        [
            (PICK, lambda screen: option(screen, "Duo Push to")),
            (PENDING, answer("timeout")),
            (r"\[y/N\]: ", "y"),
            (r"Sending another request: Duo Push to[^\n]*\n", lambda screen: None),
            (PENDING, answer("approve")),
        ],
    )
    assert status == 0, out
    assert "Login failed (expired)" in out
    assert "Send another request to jsmith's device? [y/N]: " in out
    # "y" sent the push again by itself: the factor menu was shown once, before the first
    assert out.count("Second factor [1-") == 1
    assert len([c for c in duo.calls if c.path.endswith("/v2/auth")]) == 2
    assert out.count("First factor: jsmith's password, checked by a test's own check.") == 1
    assert len(duo.calls_to("/preauth")) == 2
    assert "Authenticated as jsmith." in out  # Duo hands back no token: none is claimed
    assert "token of 0" not in out


def test_no_is_the_default_after_a_failure(duo: DuoEmulator) -> None:
    def deny(screen: str) -> None:
        duo.answer("jsmith", "deny")

    status, out = login(
        duo_args(duo),
        [(PICK, lambda screen: option(screen, "Duo Push to")), (PENDING, deny)],
    )
    assert status == 1, out
    assert "Login failed (denied)" in out
    assert "Start again for jsmith? [y/N]: " in out  # input ended: no
    assert len(duo.calls_to("/preauth")) == 1


# -- a malformed Duo passcode ----------------------------------------------------------------


def test_a_malformed_duo_passcode_is_refused_before_duo(duo: DuoEmulator) -> None:
    """Too short, too long, letters: "Not sent", asked again, Duo's request count unchanged;
    the right passcode then signs in."""
    counted: list[int] = []

    def count(line: str) -> Callable[[str], str]:
        def typed(screen: str) -> str:
            counted.append(len(duo.calls))
            return line

        return typed

    status, out = login(
        duo_args(duo),
        [
            (PICK, lambda screen: option(screen, "Passcode from Duo Mobile")),
            (CODE, count("12345")),
            ("The code must be", count("1234567890")),
            ("The code must be", count("12a456")),
            ("The code must be", count(DEMO_PASSCODE)),
        ],
    )
    assert status == 0, out
    assert out.count("The code must be 6 to 9 digits (the length of Duo passcodes).") == 3
    assert len(set(counted)) == 1  # no request to Duo between the malformed codes
    assert len(duo.calls) == counted[0] + 1


# -- what the IdP sends is printed harmlessly --------------------------------------------------

ESCAPES = "\x1b[2J\x1b]0;owned\x07\u202eevil\u2066"


def test_idp_text_with_escape_sequences_is_printed_escaped(duo: DuoEmulator) -> None:
    """A device name carrying an ANSI clear-screen, a window-title OSC and bidi controls
    (sent by the emulator as Duo's ``display_name``) reaches the terminal as visible
    escapes, never as the characters themselves."""
    device = DuoEmulatorDevice(
        "DPESCAPE000000000001",
        "phone",
        ("auto", "push", "mobile_otp"),
        number="XXX-XXX-0100",
        display_name=f"iOS {ESCAPES}",
    )
    duo.add_user("mallory", devices=(device,))
    status, out = login(
        duo_args(duo, "mallory"),
        [
            (PICK, lambda screen: option(screen, "Passcode from Duo Mobile")),
            (CODE, DEMO_PASSCODE),
        ],
    )
    assert status == 0, out
    assert not any(char in out for char in ("\x1b", "\x07", "\u202e", "\u2066"))
    assert "iOS \\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\u2066" in out


def test_printable_and_shown() -> None:
    assert printable("a\x1b[31mb\u200fc\nd", keep_newlines=True) == "a\\x1b[31mb\\u200fc\nd"
    assert shown("two\nlines\tand\x00nul") == "two lines and\\x00nul"
    assert shown(None) == ""


# -- logs stay off the terminal unless asked for -----------------------------------------------


@pytest.mark.parametrize(
    ("options", "logged"),
    [
        ([], None),
        (["--log-level", "warning"], "mfa_fsm.step_failed"),
        (["-v"], "mfa_fsm.transition"),
    ],
)
def test_a_terminal_login_writes_log_lines_only_when_asked(
    options: list[str], logged: str | None
) -> None:
    """The command as run: a malformed code is said in words ("Not sent"); its
    ``mfa_fsm.step_failed`` warning reaches neither stdout nor stderr by default, and
    stderr only with ``--log-level warning`` (``-v``: every transition too)."""
    typed = f"jsmith-app-password\n2\n12\n{DEMO_TOKEN_CODE}\n"
    args = [sys.executable, "-m", "mfa_fsm.cli", *options, "login", "--provider", "entrust"]
    args += ["--emulator", "--user", "jsmith"]
    done = subprocess.run(
        args, input=typed, capture_output=True, text=True, cwd=ROOT, check=False, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The code must be 6 to 8 digits (the usual length of one-time codes)." in done.stdout
    assert "Authenticated as jsmith (John Smith)" in done.stdout
    assert "step_failed" not in done.stdout and "warning" not in done.stdout
    if logged is None:
        assert done.stderr == ""
    else:
        assert logged in done.stderr


def test_the_emulator_approves_the_push_of_a_flow_started_again() -> None:
    """``--emulator --approve-after``: after the first push timed out (the emulator's control
    route, as another terminal would) and the person starts again, the new push is
    approved too, and the hint is said once per push."""

    def time_out(screen: str) -> None:
        base = re.findall(r"Duo Auth API emulator at (http://\S+) ", screen)[-1]
        requests.post(f"{base}/_emulator/push/dsmith/timeout", timeout=5).raise_for_status()

    argv = ["login", "--provider", "duo", "--emulator", "--user", "dsmith", *CHECKED]
    status, out = login(
        [*argv, "--approve-after", "2"],
        [
            (PICK, lambda screen: option(screen, "Duo Push to")),
            (PENDING, time_out),
            (r"\[y/N\]: ", "y"),
        ],
    )
    assert status == 0, out
    assert "Login failed (expired)" in out
    assert out.count("[emulator] approving the push in 2s") == 2
    assert out.count("Second factor [1-") == 1  # "y" selected the push again by itself
    assert "Authenticated as dsmith." in out


# -- refusals before the IdP never end the login ----------------------------------------------

OTP_ENTRUST = "One-time code sent to you"
OTHER = r"try another way\): "
DELIVERY = r"Send the code by \[1-3\]: "


def first_code(screen: str) -> str:
    """The first one-time code the emulated phone received."""
    return str(re.findall(r"the code sent is (\d+)", screen)[0])


def test_the_same_code_factor_again_inside_the_cooldown_is_said_and_the_code_still_works() -> None:
    """The new user's report: "other" at the code prompt, then the one-time code again (by
    the same delivery: another one is a new request, sent at once) within the resend
    cooldown was ResendTooSoon, which ended
    the login (exit 2) and abandoned the SMS sent. Now it is said, in plain words, and the
    code prompt comes back with the flow as it was: the first code still signs in, and no
    second code was sent."""
    status, out = login(
        ["login", "--provider", "entrust", "--emulator", "--user", "jsmith"],
        [
            ("Demo application password: ", "jsmith-app-password"),
            (PICK, lambda screen: option(screen, OTP_ENTRUST)),
            (DELIVERY, "1"),
            (OTHER, "other"),
            (PICK, lambda screen: option(screen, OTP_ENTRUST)),
            (DELIVERY, "1"),
            (r"A code was already sent (?:just now|\d+ s ago); wait \d+ s before asking", None),
            (OTHER, first_code),
        ],
    )
    assert status == 0, out
    assert "error:" not in out
    assert "Authenticated as jsmith (John Smith)" in out
    assert len(set(re.findall(r"the code sent is (\d+)", out))) == 1  # nothing sent again
    assert "moment ago" not in out


def test_the_same_push_again_while_it_is_pending_is_said_and_the_wait_goes_on(
    entrust_emulator: EntrustEmulator,
) -> None:
    """ "other" while a push is pending, then the same push again inside the cooldown: said,
    the wait for the first push goes on, and approving it signs in (one push sent)."""
    status, out = login(
        entrust_args(entrust_emulator),
        [
            (PICK, lambda screen: option(screen, PUSH_ENTRUST)),
            (PENDING, "other"),
            (PICK, lambda screen: option(screen, PUSH_ENTRUST)),
            (
                r"A request was already sent (?:just now|\d+ s ago); wait \d+ s before asking",
                lambda screen: entrust_emulator.approve_push("jsmith"),
            ),
        ],
    )
    assert status == 0, out
    assert "Authenticated as jsmith (John Smith)" in out
    selects = [c for c in entrust_emulator.calls if c.path.endswith("/authenticate/TOKENPUSH")]
    assert len(selects) == 1


def test_a_throttled_answer_is_said_and_asked_again(entrust_emulator: EntrustEmulator) -> None:
    """An answer refused by the throttle (one answer a minute here) is said with the wait,
    the code is asked again and the flow is unchanged; the login ends only when input does."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    flow = EntrustFlow.start(
        config=config,
        verified_user=VerifiedUser("jsmith", checked_by="a test's own check"),
        throttle=Throttle(answers_per_user="1/minute"),
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="TOKEN")
    out = io.StringIO()
    term = cli.Terminal(io.StringIO(f"000000\n{DEMO_TOKEN_CODE}\n"), out)
    with pytest.raises(UsageError, match="input ended"):
        cli.walk(flow, term)
    screen = out.getvalue()
    assert "That was not right." in screen
    assert re.search(r"Too many tries in a short time, so nothing was sent; wait \d+ s", screen)
    assert screen.count("Code from your token or authenticator app") == 3
    assert flow.view().state == "SecondFactorSelected"
    answers = [c for c in entrust_emulator.calls if c.path.endswith("/TOKEN/complete")]
    assert len(answers) == 1  # the throttled one never reached IDaaS


def test_an_event_the_state_no_longer_takes_is_said_and_the_flow_kept(
    entrust_emulator: EntrustEmulator,
) -> None:
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith", checked_by="a test's own check")
    )
    flow.send("submit_first_factor")
    before = flow.snapshot()
    out = io.StringIO()
    view = cli._send(flow, cli.Terminal(io.StringIO(), out), "resend")
    assert view.state == "AwaitingSecondFactor"
    assert flow.snapshot() == before
    assert "That cannot be done at this step any more" in out.getvalue()


def test_the_cyberark_login_names_the_typed_user_not_the_idp_s_id() -> None:
    """CyberArk's user id is a UUID: the walk-through ends with the name typed."""
    status, out = login(
        ["login", "--provider", "cyberark", "--emulator", "--user", "alice"],
        [
            ("Enter Password: ", "alice-password"),
            (PICK, "2"),
            (r"Type the code \(or press Enter to wait[^)]*\): ", first_code),
        ],
    )
    assert status == 0, out
    assert re.search(r"Authenticated as alice \(Alice[^)]*\)", out)
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)


def test_help_names_every_emulator_of_the_demo() -> None:
    text = cli.parser().format_help()
    line = " ".join(text.split())
    assert "both" not in line
    for flow in cli._emulated().values():
        assert flow.label in line
