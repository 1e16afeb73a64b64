"""The vendor-schema check of emulator replies catches drift (tests/support/vendor_schemas.py)."""

from __future__ import annotations

import json

import pytest
import requests

from mfa_fsm.testing import CyberArkEmulator, EmulatorServer, EntrustEmulator
from mfa_fsm.testing._server import EmulatorReply, EmulatorRequest
from tests.support.vendor_schemas import SCHEMAS, ReplyChecker, problem_with

QUERY = "/api/web/v2/authentication/users"
COMPLETE = "/api/web/v1/authentication/users/authenticate/OTP/complete"
START = "/Security/StartAuthentication"


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_the_schema_file_names_its_sources() -> None:
    assert "5.46" in SCHEMAS["entrust"]["source"]
    assert "CyberArk" in SCHEMAS["cyberark"]["source"]


@pytest.mark.parametrize(
    ("provider", "path", "status", "reply"),
    [
        ("entrust", QUERY, 200, {"expires": "soon"}),
        ("entrust", QUERY, 200, {"token": None}),  # the schema marks nothing nullable
        ("entrust", QUERY, 200, {"authenticationTypes": ["CARRIER_PIGEON"]}),
        ("entrust", COMPLETE, 200, {"status": "MAYBE"}),
        ("entrust", COMPLETE, 418, {}),  # a status the document does not list
        ("entrust", "/api/web/v1/authentication/logout", 200, {"done": True}),  # no body given
        ("cyberark", START, 200, {"success": "yes"}),
        ("cyberark", START, 200, {"success": True, "Result": None}),  # null only on failure
        ("cyberark", START, 200, {"success": True, "Result": {"Challenges": {}}}),
        ("cyberark", START.lower(), 200, {"success": True, "IsSoftError": "no"}),
    ],
)
def test_drift_is_reported(provider: str, path: str, status: int, reply: object) -> None:
    documented, problem = problem_with(provider, "POST", path, status, body(reply))
    assert documented and problem is not None


@pytest.mark.parametrize(
    ("provider", "path", "reply"),
    [
        ("entrust", QUERY, {"authenticationTypes": ["OTP"], "expires": 0, "time": 1}),
        ("cyberark", START, {"success": False, "Result": None, "Message": "Refused."}),
        ("cyberark", START, {"success": True, "Result": {"PodFqdn": "a.example"}}),
    ],
)
def test_documented_shapes_pass(provider: str, path: str, reply: object) -> None:
    assert problem_with(provider, "POST", path, 200, body(reply)) == (True, None)


def test_undocumented_paths_and_methods_are_not_checked() -> None:
    assert problem_with("cyberark", "POST", "/Security/Nothing", 404, b"<html>") == (False, None)
    assert problem_with("cyberark", "GET", START, 405, b"{}") == (False, None)


class _Drifted(CyberArkEmulator):
    def handle(self, request: EmulatorRequest) -> EmulatorReply:
        return EmulatorReply.json({"success": "yes", "Result": []})


def test_the_server_hook_sees_every_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wired into the emulator server: a drifted reply is recorded, a fault's is not."""
    checker = ReplyChecker()
    monkeypatch.setattr(EmulatorServer, "reply_check", checker)
    with _Drifted() as emulator:
        requests.post(emulator.base_url + START, json={}, timeout=5)
        emulator.faults.inject("wrong_shape")
        requests.post(emulator.base_url + START, json={}, timeout=5)
    found = checker.take()
    assert len(found) == 1 and found[0].provider == "cyberark"
    assert "success" in found[0].problem
    with EntrustEmulator() as entrust:
        requests.post(entrust.base_url + QUERY, json={"applicationId": "nope"}, timeout=5)
    assert checker.take() == [] and checker.checked == 2
