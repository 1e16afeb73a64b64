"""CyberArk's own Python SDK logs in through the CyberArk emulator, over verified TLS.

A client nobody on this project wrote: ``ark-sdk-python`` 2.1.x (``ArkISPAuth`` with its
``identity_url`` pointed at the emulator), in its own virtual environment ``.venv-ark``
(scripts/setup.sh makes it; its dependency tree stays out of the project's). Each scenario
runs the SDK in a subprocess (``ark_login.py``) that trusts only the emulator's CA. The
emulator runs in this process, so the suite's vendor-schema check sees every reply.

Scenarios: password; password then push; number matching; PodFqdn redirect; NewPackage;
a code typed while the SDK polls; a phone call. Where a person acts, this test plays them:
the phone (``emulator.approve``), or, in the SDK's interactive mode, the person at the
terminal (``ark_login.py`` answers the SDK's prompts: it types the code received, or taps
the number the SDK shows).

Expected gaps, where the SDK needs what the vendor documents do not promise, are asserted
as gaps: such a test fails the day its gap closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfa_fsm.testing import CyberArkEmulator
from tests.testing.test_tls_and_cookies import claims

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".venv-ark" / "bin" / "python"
DRIVER = Path(__file__).with_name("ark_login.py")
ADVANCE = "/Security/AdvanceAuthentication"


@pytest.fixture
def emulator() -> Iterator[CyberArkEmulator]:
    """The CyberArk emulator over TLS, with the vendor's bare-host PodFqdn, plus a user
    whose only challenge is the password."""
    with CyberArkEmulator(tls=True) as running:
        running.add_user("pat", password="pat-password")
        yield running


def approve_when_pending(emulator: CyberArkEmulator, user: str) -> threading.Thread:
    """Play the user's phone: approve the out-of-band challenge once the SDK starts it."""

    def approve() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                emulator.approve(user)
                return
            except LookupError:
                time.sleep(0.05)

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def sdk_login(
    emulator: CyberArkEmulator, tmp_path: Path, user: str, mfa: str, **extra: Any
) -> dict[str, Any]:
    """Run ArkISPAuth.authenticate in the SDK's environment; its JSON output."""
    if not SDK_PYTHON.exists():
        pytest.fail(f"{SDK_PYTHON} is missing; run `bash scripts/setup.sh`", pytrace=False)
    settings = {
        "identity_url": emulator.base_url,
        "username": f"{user}@{emulator.login_suffix}",
        "password": f"{user}-password" if user != "bob" else None,
        "mfa": mfa,
        "ca_file": emulator.ca_file,
        "control_url": emulator.base_url,
        "key": user,
        "after": "service_url",
        **extra,
    }
    env = {k: v for k, v in os.environ.items() if k not in ("CURL_CA_BUNDLE", "PYTHONPATH")}
    # The SDK sets its trusted certificate on its requests session, which requests lets
    # REQUESTS_CA_BUNDLE override; so the CA goes there too. HOME keeps its files here.
    env |= {"REQUESTS_CA_BUNDLE": emulator.ca_file, "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(SDK_PYTHON), str(DRIVER), json.dumps(settings)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        # pydantic names the field it missed on the line before "Field required".
        missing = [lines[i - 1].strip() for i, line in enumerate(lines) if "Field required" in line]
        raise AssertionError(f"the SDK's login failed: {lines[-1][:200]}; missing: {missing}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def actions(emulator: CyberArkEmulator) -> list[str]:
    return [str((call.body or {}).get("Action")) for call in emulator.calls_to(ADVANCE)]


def check_login(emulator: CyberArkEmulator, result: dict[str, Any], user: str) -> None:
    """The SDK holds a live token of the right user, and can go on from its claims."""
    token = result["token"]
    assert emulator.token_valid(token)
    assert claims(token)["unique_name"] == f"{user}@{emulator.login_suffix}"
    assert result["has_refresh_token"]  # PlatformTokenResponse: true is honoured
    assert result["tenant_id"] == emulator.tenant_id
    assert result["service_url"] == f"https://{emulator.subdomain}.uap.cyberark.cloud"


def test_password(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    result = sdk_login(emulator, tmp_path, "pat", "otp")
    check_login(emulator, result, "pat")
    assert actions(emulator) == ["Answer"]


def test_password_then_push(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    approve_when_pending(emulator, "alice")
    result = sdk_login(emulator, tmp_path, "alice", "otp")
    check_login(emulator, result, "alice")
    assert actions(emulator)[:2] == ["Answer", "StartOOB"]
    assert set(actions(emulator)[2:]) == {"Poll"}


def test_number_matching(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    """Interactive mode: the user reads the number in the SDK's prompt and taps it on the
    phone (a wrong number would deny the push)."""
    result = sdk_login(emulator, tmp_path, "bob", "otp", person="match_number")
    check_login(emulator, result, "bob")
    assert actions(emulator)[0] == "StartOOB"


def test_pod_fqdn_redirect(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    """The vendor's bare-host PodFqdn (no pod_fqdn_as_url): the SDK builds https://{PodFqdn}."""
    approve_when_pending(emulator, "frank")
    result = sdk_login(emulator, tmp_path, "frank", "otp")
    check_login(emulator, result, "frank")
    paths = [call.path for call in emulator.calls]
    assert paths[:2] == ["/Security/StartAuthentication", "/pod2/Security/StartAuthentication"]
    assert all(path.startswith("/pod2/") for path in paths[1:])


def test_new_package(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    """The password answer brings a NewPackage (EMAIL / SMS); the SDK takes it up."""
    approve_when_pending(emulator, "erin")
    result = sdk_login(emulator, tmp_path, "erin", "email")
    check_login(emulator, result, "erin")
    assert actions(emulator)[:2] == ["Answer", "StartOOB"]


def test_code_typed_while_polling(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    """Interactive mode: the SDK polls while the user types the SMS code at its prompt."""
    result = sdk_login(emulator, tmp_path, "dave", "sms", person="type_code")
    check_login(emulator, result, "dave")
    sent = actions(emulator)
    assert sent[:2] == ["Answer", "StartOOB"] and sent[-1] == "Answer"


def test_phone_call(emulator: CyberArkEmulator, tmp_path: Path) -> None:
    """PF: the phone rings, the user confirms on it; the SDK only polls."""
    approve_when_pending(emulator, "grace")
    result = sdk_login(emulator, tmp_path, "grace", "pf")
    check_login(emulator, result, "grace")
    assert set(actions(emulator)[2:]) == {"Poll"}


def test_expected_gap_oauth_tokens_form_of_login_success(tmp_path: Path) -> None:
    """Expected gap, asserted: ark-sdk-python 2.1.x requires ``Result.Auth`` in LoginSuccess
    (its ``AdvanceAuthResult.auth``), so it cannot take the CyberArk/Delinea platform form,
    whose token is only in ``Result.OAuthTokens``, a form the vendor's OpenAPI document does
    not describe. (Our own client takes both.) This test fails the day the SDK takes it."""
    with CyberArkEmulator(tls=True, oauth_tokens=True) as emulator:
        emulator.add_user("pat", password="pat-password")
        with pytest.raises(AssertionError, match=r"missing: \['Result\.Auth'\]"):
            sdk_login(emulator, tmp_path, "pat", "otp")
