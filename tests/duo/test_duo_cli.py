"""``mfa-fsm login --provider duo``: against the emulator (``--emulator``, DuoDemo), and with a
real tenant's settings (here pointed at a running emulator with ``--base-url``), the secret key
read from the environment or a hidden prompt, never from the command line or into the output.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator

import pytest

from mfa_fsm.cli import main, parser
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator

CHECKED = ["--first-factor-checked-by", "a test's own check"]


@pytest.fixture
def no_duo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MFA_FSM_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as running:
        yield running


def tenant_args(emulator: DuoEmulator) -> list[str]:
    """The settings of a real tenant, the API host being the emulator's."""
    creds = emulator.credentials
    return [
        "login",
        "--provider",
        "duo",
        "--integration-key",
        creds.integration_key,
        "--api-hostname",
        creds.api_hostname,
        "--base-url",
        emulator.base_url,
        "--user",
        "jsmith",
        *CHECKED,
    ]


def run(argv: list[str], typed: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(argv, stdin=io.StringIO(typed), stdout=out)
    return status, out.getvalue()


def test_emulator_login_with_a_passcode() -> None:
    """DuoDemo: the demo application's password vouches for dsmith, then a typed passcode."""
    status, out = run(
        ["login", "--provider", "duo", "--emulator", "--user", "dsmith"],
        f"dsmith-app-password\n4\n{DEMO_PASSCODE}\n",
    )
    assert status == 0, out
    assert "First factor: dsmith's password, checked by mfa-fsm login" in out
    # What Duo does, in Duo's terms (Entrust's EXTERNAL is not Duo's word)
    assert "Duo does not check dsmith's first factor: the application vouches for it" in out
    assert "EXTERNAL" not in out
    assert f"[emulator] Duo Mobile and the token show {DEMO_PASSCODE}" in out
    assert "Authenticated as dsmith" in out
    assert "dsmith-app-password" not in out


def test_emulator_login_with_a_push_approved_by_flag() -> None:
    status, out = run(
        [
            "login",
            "--provider",
            "duo",
            "--emulator",
            "--user",
            "dsmith",
            "--approve-after",
            "0.3",
            *CHECKED,
        ],
        "1\n",
    )
    assert status == 0, out
    assert "[emulator] approving the push in 0.3s" in out
    assert "Authenticated as dsmith" in out


class Typist(io.StringIO):
    """Stdin whose lines are typed when asked for: a callable line reads the screen so far
    (the code the emulator's hint just showed)."""

    def __init__(self, screen: io.StringIO, lines: list[str | Callable[[str], str]]) -> None:
        super().__init__()
        self.screen = screen
        self.lines = lines

    def readline(self, size: int | None = -1, /) -> str:
        if not self.lines:
            return ""
        line = self.lines.pop(0)
        return (line(self.screen.getvalue()) if callable(line) else line) + "\n"


def test_emulator_login_with_sms_passcodes_wrong_then_right() -> None:
    """Text message passcodes: a wrong one is asked again, the one the hint shows signs in."""

    def shown(screen: str) -> str:
        return re.findall(r"the text message holds passcode (\d{7})", screen)[-1]

    out = io.StringIO()
    typist = Typist(out, ["3", "0000000", shown])
    argv = ["login", "--provider", "duo", "--emulator", "--user", "dsmith", *CHECKED]
    status = main(argv, stdin=typist, stdout=out)
    assert status == 0, out.getvalue()
    assert "That was not right." in out.getvalue()
    assert "Authenticated as dsmith" in out.getvalue()


def test_an_unenrolled_user_is_shown_the_enrolment_link() -> None:
    status, out = run(["login", "--provider", "duo", "--emulator", "--user", "dnew", *CHECKED], "")
    assert status == 1
    assert "Login failed (rejected)" in out
    assert re.search(r"Enrol a device with Duo: https://\S+/portal\?code=\w+", out)


def test_a_typed_user_without_a_voucher_is_refused_with_command_line_advice(
    emulator: DuoEmulator, monkeypatch: pytest.MonkeyPatch, no_duo_env: None
) -> None:
    """Duo checks only a second factor: a user nobody vouches for does not start, and the
    error says what to give this command (not the Python API's ``verified_user=``); Duo is
    not called."""
    status, out = run(["login", "--provider", "duo", "--emulator", "--user", "stranger"], "")
    assert status == 2
    assert "error: Duo does not check stranger's first factor here" in out
    assert "--first-factor-checked-by WHO" in out and "with --emulator, a demo user" in out
    assert "verified_user" not in out and "VerifiedUser" not in out
    monkeypatch.setenv("MFA_FSM_DUO_SKEY", emulator.credentials.secret_key)
    argv = [arg for arg in tenant_args(emulator) if arg not in CHECKED]
    status, out = run(argv, "")
    assert status == 2
    assert "login needs --first-factor-checked-by WHO" in out
    assert "verified_user" not in out and "--emulator" not in out
    assert emulator.calls == []


def test_tenant_settings_with_the_secret_key_from_the_environment(
    emulator: DuoEmulator, monkeypatch: pytest.MonkeyPatch, no_duo_env: None
) -> None:
    """Real-tenant settings (DuoConfig.from_settings), signed requests the emulator accepts;
    the secret key is in no output."""
    monkeypatch.setenv("MFA_FSM_DUO_SKEY", emulator.credentials.secret_key)
    status, out = run(tenant_args(emulator), f"4\n{DEMO_PASSCODE}\n")
    assert status == 0, out
    assert "Authenticated as jsmith" in out
    assert emulator.credentials.secret_key not in out
    assert all(call.status == 200 for call in emulator.calls)


def test_the_secret_key_is_asked_for_when_not_in_the_environment(
    emulator: DuoEmulator, no_duo_env: None
) -> None:
    secret = emulator.credentials.secret_key
    status, out = run(tenant_args(emulator), f"{secret}\n4\n{DEMO_PASSCODE}\n")
    assert status == 0, out
    assert "Duo Auth API secret key (skey) (or set $MFA_FSM_DUO_SKEY): " in out
    assert secret not in out


def test_a_wrong_secret_key_is_duo_s_invalid_signature(
    emulator: DuoEmulator, monkeypatch: pytest.MonkeyPatch, no_duo_env: None
) -> None:
    monkeypatch.setenv("MFA_FSM_DUO_SKEY", "x" * 40)
    status, out = run(tenant_args(emulator), "")
    assert status == 2
    assert "x" * 40 not in out
    assert [call.status for call in emulator.calls] == [401]


def test_missing_settings_name_the_options_and_variables(no_duo_env: None) -> None:
    """Nothing is asked (not even the secret) before the options are known to be complete."""
    status, out = run(["login", "--provider", "duo", "--user", "jsmith"], "")
    assert status == 2
    assert "--integration-key and --api-hostname" in out
    assert "MFA_FSM_DUO_IKEY and MFA_FSM_DUO_HOST" in out
    assert "secret key" not in out


def test_invalid_settings_are_a_usage_error_without_the_values(
    monkeypatch: pytest.MonkeyPatch, no_duo_env: None
) -> None:
    monkeypatch.setenv("MFA_FSM_DUO_SKEY", "skey-ünïcode-value")
    status, out = run(
        ["login", "--provider", "duo", "--integration-key", "DI1", "--api-hostname", "h"], ""
    )
    assert status == 2
    assert "the Duo settings are not valid" in out and "secret_key" in out
    assert "ünïcode" not in out


def test_the_secret_key_has_no_option_and_the_help_says_where_it_comes_from() -> None:
    login = parser()._subparsers._group_actions[0].choices["login"]  # type: ignore[union-attr]
    text = login.format_help()
    assert "--integration-key" in text and "--api-hostname" in text
    assert "--secret-key" not in text
    assert "MFA_FSM_DUO_SKEY" in text


def test_emulate_serves_the_duo_emulator() -> None:
    status, out = run(["emulate", "--duo-port", "0", "--seconds", "0.2"], "")
    assert status == 0
    assert re.search(
        r"Duo Auth API emulator: +http://127\.0\.0\.1:\d+ +integration key DI\w+, secret key "
        r"\S+, signed for API hostname api-emulator\.duosecurity\.test",
        out,
    )
