"""Tests of the Entrust IDaaS Authentication API emulator, over real HTTP."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing._server import UNKNOWN_ENUM_VALUE
from mfa_fsm.testing.entrust import DEFAULT_APPLICATION_ID, DEMO_TEMP_ACCESS_CODE

APP = DEFAULT_APPLICATION_ID
IP = "1.2.3.4"
QUERY = "/api/web/v2/authentication/users"
SELECT = "/api/web/v2/authentication/users/authenticate/"
COMPLETE = "/api/web/v1/authentication/users/authenticate/{}/complete"
LOGOUT = "/api/web/v1/authentication/logout"


class Api:
    """A thin client speaking the vendor's wire format, one method per call."""

    def __init__(self, emu: EntrustEmulator) -> None:
        self.base = emu.base_url
        self.http = requests.Session()

    def post(self, path: str, body: Any = None, token: str | None = None) -> requests.Response:
        headers = {"Authorization": token} if token is not None else {}
        return self.http.post(self.base + path, json=body, headers=headers, timeout=5)

    def query(self, user_id: str, **extra: Any) -> requests.Response:
        return self.post(QUERY, {"userId": user_id, "applicationId": APP, "clientIp": IP, **extra})

    def select(self, name: str, **extra: Any) -> requests.Response:
        return self.post(SELECT + name, {"applicationId": APP, "clientIp": IP, **extra})

    def complete(self, name: str, token: str | None, **extra: Any) -> requests.Response:
        body = {"applicationId": APP, "clientIp": IP, **extra}
        return self.post(COMPLETE.format(name), body, token=token)

    def ok(self, reply: requests.Response) -> dict[str, Any]:
        assert reply.status_code == 200, reply.text
        data: dict[str, Any] = reply.json()
        return data

    def external_second_factor(self, user_id: str, factor: str, **extra: Any) -> str:
        """Run query → EXTERNAL/complete → select ``factor``; return the select token."""
        t1 = self.ok(self.query(user_id))["token"]
        t2 = self.ok(self.complete("EXTERNAL", f"Bearer {t1}"))["token"]
        token: str = self.ok(self.select(factor, authToken=t2, **extra))["token"]
        return token


def error(reply: requests.Response, status: int, code: str) -> dict[str, Any]:
    """Assert ``reply`` is an ErrorInfo with this status and errorCode; return it."""
    assert reply.status_code == status, reply.text
    info: dict[str, Any] = reply.json()
    assert set(info) == {"errorCode", "errorMessage", "parameters"}
    assert info["errorCode"] == code
    assert info["parameters"] == []
    return info


class FakeClock:
    """A settable clock so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emu() -> Iterator[EntrustEmulator]:
    with EntrustEmulator(lockout_count=3) as server:
        yield server


@pytest.fixture
def api(emu: EntrustEmulator) -> Iterator[Api]:
    client = Api(emu)
    yield client
    client.http.close()


# -- the vendor's EXTERNAL + second factor walkthrough --------------------------


def test_seed_external_plus_otp_flow(emu: EntrustEmulator, api: Api) -> None:
    """The four calls of the vendor walkthrough answer with the vendor's fields, step by step."""
    q = api.ok(api.query("jsmith"))
    assert q["authenticationTypes"] == ["EXTERNAL"]
    assert q["availableSecondFactor"] == [
        "TOKENPUSH",
        "TOKEN",
        "OTP",
        "KBA",
        "GRID",
        "TEMP_ACCESS_CODE",
    ]
    assert q["otpDeliveryInfo"]["otpDefaultDelivery"] == "SMS"
    assert q["otpDeliveryInfo"]["availableOTPDelivery"] == ["SMS", "EMAIL", "VOICE"]
    assert {c["type"] for c in q["otpDeliveryInfo"]["otpContactValues"]} == {
        "SMS",
        "EMAIL",
        "VOICE",
    }
    assert "machineAuthenticator" not in q
    assert q["userMachineSettings"]["machineAuthenticatorEnabled"] is True
    assert isinstance(q["time"], int)
    assert q["authenticationCompleted"] is False
    assert isinstance(q["token"], str)

    ext = api.ok(api.complete("EXTERNAL", f"Bearer {q['token']}"))
    assert ext["authenticationCompleted"] is False
    assert "status" not in ext
    assert "firstName" not in ext and "lastName" not in ext
    assert ext["token"] not in (None, q["token"])
    assert "otpdeliveryType" not in ext
    assert "kbaChallenge" not in ext
    assert ext["expires"] == q["expires"]

    sel = api.ok(api.select("OTP", authToken=ext["token"]))
    assert sel["otpdeliveryType"] == "SMS"
    assert sel["authenticationCompleted"] is False
    assert sel["token"] not in (q["token"], ext["token"])
    assert sel["expires"] == ext["expires"]  # not extended by later steps

    otp = emu.last_otp("jsmith")
    assert otp is not None
    assert len(otp) == 8
    assert otp.isdigit()
    done = api.ok(api.complete("OTP", sel["token"], response=otp))  # no "Bearer " prefix
    assert done["authenticationCompleted"] is True
    assert (done["firstName"], done["lastName"]) == ("John", "Smith")
    assert "userMachineSettings" not in done
    assert done["token"] not in (None, sel["token"])
    assert done["expires"] == sel["expires"]
    assert done["time"] >= sel["time"]


def test_session_lifetime_sets_expires(emu: EntrustEmulator, api: Api) -> None:
    """expires is the transaction start plus the session lifetime (900 s by default), in ms."""
    q = api.ok(api.query("jsmith"))
    assert abs(q["expires"] - q["time"] - 900_000) < 1_000


def test_tokens_are_opaque_base64(api: Api) -> None:
    """Tokens are random base64 strings shaped like the vendor's ("G...")."""
    tokens = {api.ok(api.query("jsmith"))["token"] for _ in range(3)}
    assert len(tokens) == 3
    for token in tokens:
        assert token.startswith("G")
        assert len(base64.b64decode(token, validate=True)) > 200


def test_low_risk_user_needs_no_second_factor(api: Api) -> None:
    """EXTERNAL/complete already finishes the login when the risk rule needs no second factor."""
    q = api.ok(api.query("lowrisk"))
    done = api.ok(api.complete("EXTERNAL", q["token"]))
    assert done["authenticationCompleted"] is True
    assert done["firstName"] == "Lou"
    assert done["token"]


def test_external_token_from_select_is_accepted(api: Api) -> None:
    """A select on EXTERNAL with userId also yields a token for EXTERNAL/complete."""
    sel = api.ok(api.select("EXTERNAL", userId="jsmith"))
    ext = api.ok(api.complete("EXTERNAL", sel["token"]))
    assert ext["authenticationCompleted"] is False


def test_client_ip_is_logged_on_every_call(emu: EntrustEmulator, api: Api) -> None:
    """The call log keeps each request body, so clientIp can be checked on every call."""
    token = api.external_second_factor("jsmith", "TOKEN")
    api.ok(api.complete("TOKEN", token, response=emu.token_code("jsmith")))
    assert len(emu.calls) == 4
    assert all(call.body["clientIp"] == IP for call in emu.calls)


def test_require_client_ip() -> None:
    """With require_client_ip, a call without clientIp is refused with 400 invalid_request."""
    with EntrustEmulator(require_client_ip=True) as emu, requests.Session() as http:
        body = {"userId": "jsmith", "applicationId": APP}
        error(http.post(emu.base_url + QUERY, json=body), 400, "invalid_request")
        assert http.post(emu.base_url + QUERY, json={**body, "clientIp": IP}).status_code == 200


# -- PASSWORD_AND_SECONDFACTOR and single factor ---------------------------------


def test_password_and_second_factor_flow(emu: EntrustEmulator, api: Api) -> None:
    """The five calls: select, password, select second factor with authToken, answer → done."""
    q = api.ok(api.query("pwuser"))
    assert q["authenticationTypes"] == ["PASSWORD_AND_SECONDFACTOR"]
    assert q["availableSecondFactor"] == ["TOKENPUSH", "TOKEN", "OTP"]
    assert "token" not in q
    t1 = api.ok(api.select("PASSWORD_AND_SECONDFACTOR", userId="pwuser"))["token"]
    step = api.ok(api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="Passw0rd!"))
    assert step["authenticationCompleted"] is False
    t3 = api.ok(
        api.select(
            "PASSWORD_AND_SECONDFACTOR", secondFactorAuthenticator="TOKEN", authToken=step["token"]
        )
    )["token"]
    done = api.ok(
        api.complete(
            "PASSWORD_AND_SECONDFACTOR",
            t3,
            response=emu.token_code("pwuser"),
            secondFactorAuthenticator="TOKEN",
        )
    )
    assert done["authenticationCompleted"] is True
    assert done["firstName"] == "Pat"
    assert len({t1, step["token"], t3, done["token"]}) == 4


def test_password_and_second_factor_with_otp(emu: EntrustEmulator, api: Api) -> None:
    """The second factor OTP is selected and answered on the PASSWORD_AND_SECONDFACTOR path."""
    t1 = api.ok(api.select("PASSWORD_AND_SECONDFACTOR", userId="pwuser"))["token"]
    t2 = api.ok(api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="Passw0rd!"))["token"]
    sel = api.ok(
        api.select("PASSWORD_AND_SECONDFACTOR", secondFactorAuthenticator="OTP", authToken=t2)
    )
    assert sel["otpdeliveryType"] == "SMS"
    otp = emu.last_otp("pwuser")
    done = api.complete(
        "PASSWORD_AND_SECONDFACTOR", sel["token"], response=otp, secondFactorAuthenticator="OTP"
    )
    assert api.ok(done)["authenticationCompleted"] is True


def test_password_and_second_factor_validation(api: Api) -> None:
    """The second factor is named in the body and stays on the PASSWORD_AND_SECONDFACTOR path."""
    t1 = api.ok(api.select("PASSWORD_AND_SECONDFACTOR", userId="pwuser"))["token"]
    error(
        api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="nope"), 400, "invalid_user_response"
    )
    t2 = api.ok(api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="Passw0rd!"))["token"]
    error(api.select("PASSWORD_AND_SECONDFACTOR", authToken=t2), 400, "invalid_request")
    error(api.select("OTP", authToken=t2), 403, "authenticator_not_available")
    sel = api.select("PASSWORD_AND_SECONDFACTOR", secondFactorAuthenticator="KBA", authToken=t2)
    error(sel, 403, "authenticator_not_available")
    t3 = api.ok(
        api.select("PASSWORD_AND_SECONDFACTOR", secondFactorAuthenticator="TOKEN", authToken=t2)
    )["token"]
    error(api.complete("PASSWORD_AND_SECONDFACTOR", t3, response="1"), 400, "invalid_request")


def test_risk_rule_skips_second_factor_after_password(emu: EntrustEmulator, api: Api) -> None:
    """With a no-second-factor risk rule, PASSWORD_AND_SECONDFACTOR ends after the password."""
    emu.add_user(
        "easy", password="pw", first_factor="PASSWORD_AND_SECONDFACTOR", risk_no_second_factor=True
    )
    t1 = api.ok(api.select("PASSWORD_AND_SECONDFACTOR", userId="easy"))["token"]
    done = api.ok(api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="pw"))
    assert done["authenticationCompleted"] is True


def test_single_factor_user(emu: EntrustEmulator, api: Api) -> None:
    """A single-factor user is offered its authenticators as first factors and done after one."""
    q = api.ok(api.query("otpuser"))
    assert q["authenticationTypes"] == ["OTP", "TOKEN"]
    assert "availableSecondFactor" not in q
    sel = api.ok(api.select("OTP", userId="otpuser", otpDeliveryType="VOICE"))
    assert sel["otpdeliveryType"] == "VOICE"
    done = api.ok(api.complete("OTP", sel["token"], response=emu.last_otp("otpuser")))
    assert done["authenticationCompleted"] is True


# -- second factors ------------------------------------------------------------


def test_otp_delivery_type(emu: EntrustEmulator, api: Api) -> None:
    """otpDeliveryType chooses the delivery echoed as otpdeliveryType; unavailable ones get 400."""
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    error(api.select("OTP", authToken=t2, otpDeliveryType="WECHAT"), 400, "invalid_request")
    sel = api.ok(api.select("OTP", authToken=t2, otpDeliveryType="EMAIL"))
    assert sel["otpdeliveryType"] == "EMAIL"


def test_otp_is_readable_over_http(emu: EntrustEmulator, api: Api) -> None:
    """GET /_emulator/otp/{user} and /_emulator/answer/{user} return the OTP just generated."""
    api.external_second_factor("jsmith", "OTP")
    otp = emu.last_otp("jsmith")
    assert api.http.get(api.base + "/_emulator/otp/jsmith").json() == {
        "userId": "jsmith",
        "otp": otp,
    }
    answer = api.http.get(api.base + "/_emulator/answer/jsmith").json()
    assert answer["response"] == otp == emu.expected_response("jsmith")
    assert api.http.get(api.base + "/_emulator/otp/nobody").status_code == 409


def test_new_otp_at_each_select(emu: EntrustEmulator, api: Api) -> None:
    """Each OTP select generates a fresh code; the old one no longer answers the new challenge."""
    first = api.external_second_factor("jsmith", "OTP")
    old = emu.last_otp("jsmith")
    second = api.external_second_factor("jsmith", "OTP")
    assert emu.last_otp("jsmith") != old or old is None
    api.ok(api.complete("OTP", second, response=emu.last_otp("jsmith")))
    api.ok(api.complete("OTP", first, response=old))  # each transaction keeps its own code


def test_kba_flow(emu: EntrustEmulator, api: Api) -> None:
    """KBA select returns kbaChallenge questions; echoing it with the answers completes."""
    sel = api.ok(api.post(*_kba_select(api)))
    challenge = sel["kbaChallenge"]
    assert len(challenge["userQuestions"]) == 2
    answers = emu.kba_answers("jsmith")
    wrong = {
        **challenge,
        "userQuestions": [{**q, "answer": "nope"} for q in challenge["userQuestions"]],
    }
    error(api.complete("KBA", sel["token"], kbaChallenge=wrong), 400, "invalid_user_response")
    right = {
        **challenge,
        "userQuestions": [
            {**q, "answer": answers[q["question"]].upper()} for q in challenge["userQuestions"]
        ],
    }
    done = api.ok(api.complete("KBA", sel["token"], kbaChallenge=right))
    assert done["authenticationCompleted"] is True


def _kba_select(api: Api) -> tuple[str, dict[str, Any]]:
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    return SELECT + "KBA", {"applicationId": APP, "clientIp": IP, "authToken": t2}


def test_kba_needs_the_challenge_echoed(api: Api) -> None:
    """A KBA complete without the echoed kbaChallenge, or with another id, is invalid_request."""
    sel = api.ok(api.post(*_kba_select(api)))
    error(api.complete("KBA", sel["token"]), 400, "invalid_request")
    other = {**sel["kbaChallenge"], "id": "other"}
    error(api.complete("KBA", sel["token"], kbaChallenge=other), 400, "invalid_request")


def test_grid_flow(emu: EntrustEmulator, api: Api) -> None:
    """GRID select returns cells to read; their values concatenated (any case/spacing) complete."""
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    sel = api.ok(api.select("GRID", authToken=t2))
    grid = sel["gridChallenge"]
    assert len(grid["challenge"]) == 3
    assert grid["gridInfo"][0]["serialNumber"]
    assert grid["numCharsPerCell"] == 1
    answer = " ".join(emu.grid_value("jsmith", c["row"], c["column"]) for c in grid["challenge"])
    assert emu.expected_response("jsmith") == answer.replace(" ", "")
    error(api.complete("GRID", sel["token"], response="000"), 400, "invalid_user_response")
    done = api.ok(api.complete("GRID", sel["token"], response=answer.lower()))
    assert done["authenticationCompleted"] is True


def test_temp_access_code_flow(api: Api) -> None:
    """TEMP_ACCESS_CODE select returns tempAccessCodeChallenge; the fixed code completes."""
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    sel = api.ok(api.select("TEMP_ACCESS_CODE", authToken=t2))
    assert sel["tempAccessCodeChallenge"] == {"enableAdminContact": False}
    done = api.ok(api.complete("TEMP_ACCESS_CODE", sel["token"], response=DEMO_TEMP_ACCESS_CODE))
    assert done["authenticationCompleted"] is True


def test_token_flow_and_code_change(emu: EntrustEmulator, api: Api) -> None:
    """TOKEN select lists tokenDetails; the user's current token code completes, and can change."""
    token = api.external_second_factor("jsmith", "TOKEN")
    emu.users["jsmith"].token_code = "11112222"
    assert emu.expected_response("jsmith") == "11112222"
    error(api.complete("TOKEN", token, response="24681357"), 400, "invalid_user_response")
    assert api.ok(api.complete("TOKEN", token, response="11112222"))["authenticationCompleted"]


# -- wrong answers and lockout ------------------------------------------------------


def test_wrong_answer_keeps_token_then_locks(emu: EntrustEmulator, api: Api) -> None:
    """Wrong answers get invalid_user_response, keeping the token, until lockout_count locks."""
    token = api.external_second_factor("jsmith", "TOKEN")
    error(api.complete("TOKEN", token, response="0"), 400, "invalid_user_response")
    assert _lockout(api, "jsmith", "TOKEN") == {
        "type": "TOKEN",
        "locked": False,
        "remainingAuthenticationAttempts": 2,
    }
    error(api.complete("TOKEN", token, response="0"), 400, "invalid_user_response")
    assert emu.remaining_attempts("jsmith", "TOKEN") == 1
    error(api.complete("TOKEN", token, response="0"), 403, "authenticator_locked")
    # Locked: even the right answer, and a new select, are refused.
    error(
        api.complete("TOKEN", token, response=emu.token_code("jsmith")), 403, "authenticator_locked"
    )
    status = _lockout(api, "jsmith", "TOKEN")
    assert status["locked"] is True
    assert status["remainingAuthenticationAttempts"] == 0
    assert status["lockoutDate"].endswith("Z")
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    error(api.select("TOKEN", authToken=t2), 403, "authenticator_locked")
    # Other authenticators are still usable (lockout mode AUTHENTICATOR).
    api.ok(api.select("OTP", authToken=t2))
    emu.unlock("jsmith")
    assert _lockout(api, "jsmith", "TOKEN")["remainingAuthenticationAttempts"] == 3


def _lockout(api: Api, user_id: str, kind: str) -> dict[str, Any]:
    statuses = api.ok(api.query(user_id))["authenticatorLockoutStatus"]
    (status,) = [s for s in statuses if s["type"] == kind]
    return dict(status)


def test_right_answer_resets_failures(emu: EntrustEmulator, api: Api) -> None:
    """A correct answer resets the wrong-answer counter of that authenticator."""
    token = api.external_second_factor("jsmith", "OTP")
    error(api.complete("OTP", token, response="1"), 400, "invalid_user_response")
    assert emu.remaining_attempts("jsmith", "OTP") == 2
    api.ok(api.complete("OTP", token, response=emu.last_otp("jsmith")))
    assert emu.remaining_attempts("jsmith", "OTP") == 3


def test_password_lockout(api: Api) -> None:
    """Wrong passwords lock the PASSWORD authenticator of a PASSWORD_AND_SECONDFACTOR user."""
    t1 = api.ok(api.select("PASSWORD_AND_SECONDFACTOR", userId="pwuser"))["token"]
    for _ in range(2):
        error(
            api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="x"),
            400,
            "invalid_user_response",
        )
    error(api.complete("PASSWORD_AND_SECONDFACTOR", t1, response="x"), 403, "authenticator_locked")
    assert _lockout(api, "pwuser", "PASSWORD")["locked"] is True
    error(api.select("PASSWORD_AND_SECONDFACTOR", userId="pwuser"), 403, "authenticator_locked")


def test_missing_response_is_a_bad_request(api: Api) -> None:
    """A complete without response for a typed factor is 400 invalid_request, not a wrong answer."""
    token = api.external_second_factor("jsmith", "OTP")
    error(api.complete("OTP", token), 400, "invalid_request")


# -- push -----------------------------------------------------------------------------


def test_push_approve(emu: EntrustEmulator, api: Api) -> None:
    """Polls answer NO_RESPONSE (token null, expires 0) until approval, then CONFIRM + token."""
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    for _ in range(2):
        pending = api.ok(api.complete("TOKENPUSH", token))
        assert pending["status"] == "NO_RESPONSE"
        assert pending["authenticationCompleted"] is False
        assert ("token" not in pending, pending["expires"]) == (True, 0)
    emu.approve_push("jsmith")
    done = api.ok(api.complete("TOKENPUSH", token))
    assert done["status"] == "CONFIRM"
    assert done["authenticationCompleted"] is True
    assert done["token"] not in (None, token)
    assert done["firstName"] == "John"
    assert emu.poll_count("jsmith") == 3
    error(api.complete("TOKENPUSH", token), 401, "invalid_token")  # the poll token is used up


def test_push_select_fields(api: Api) -> None:
    """TOKENPUSH select lists tokenDetails and, without mutual challenge, none is shown."""
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    sel = api.ok(api.select("TOKENPUSH", authToken=t2))
    assert sel["tokenDetails"] == ["TOKEN-0001"]
    assert "tokenPushMutualChallenge" not in sel


@pytest.mark.parametrize("factor", ["TOKENPUSH", "SMARTCREDENTIALPUSH", "FACE"])
def test_push_mutual_challenge(emu: EntrustEmulator, api: Api, factor: str) -> None:
    """Users with mutual challenge get two digits in tokenPushMutualChallenge on every push kind."""
    t1 = api.ok(api.query("pushmc"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    sel = api.ok(api.select(factor, authToken=t2))
    digits = sel["tokenPushMutualChallenge"]
    assert len(digits) == 2
    assert digits.isdigit()
    assert sel["pushMutualChallenge"] == digits == emu.push_mutual_challenge("pushmc")
    if factor == "FACE":
        assert sel["faceChallenge"]["device"] == "MOBILE"
    emu.approve_push("pushmc")
    assert api.ok(api.complete(factor, sel["token"]))["status"] == "CONFIRM"


def test_push_mutual_challenge_tapped_on_the_phone(emu: EntrustEmulator, api: Api) -> None:
    """approve_push(number=...) is the user tapping a number: the one shown approves, any
    other refuses the push (CANCEL on the next poll); pending_mutual_challenge shows the
    number only while the push waits."""
    for tapped_right in (False, True):
        t1 = api.ok(api.query("pushmc"))["token"]
        t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
        sel = api.ok(api.select("TOKENPUSH", authToken=t2))
        shown = sel["tokenPushMutualChallenge"]
        assert emu.pending_mutual_challenge("pushmc") == shown
        other = f"{(int(shown) + 1) % 100:02d}"
        emu.approve_push("pushmc", number=shown if tapped_right else other)
        assert emu.pending_mutual_challenge("pushmc") is None
        status = api.ok(api.complete("TOKENPUSH", sel["token"]))["status"]
        assert status == ("CONFIRM" if tapped_right else "CANCEL")
    assert emu.pending_mutual_challenge("nobody") is None


def test_push_deny_as_no_transaction(emu: EntrustEmulator, api: Api) -> None:
    """deny_push(reply="no_transaction") answers the vendor guide's ErrorInfo, on this and
    later polls."""
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    emu.deny_push("jsmith", reply="no_transaction")
    info = error(api.complete("TOKENPUSH", token), 400, "no_transaction")
    assert info["errorMessage"] == ""
    error(api.complete("TOKENPUSH", token), 400, "no_transaction")


def test_push_deny_default_is_cancel_status(emu: EntrustEmulator, api: Api) -> None:
    """A denied push (default) answers 200 status CANCEL with no token, then no_transaction."""
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    emu.deny_push("jsmith")
    reply = api.ok(api.complete("TOKENPUSH", token))
    assert (reply["status"], reply["authenticationCompleted"], reply.get("token")) == (
        "CANCEL",
        False,
        None,
    )
    error(api.complete("TOKENPUSH", token), 400, "no_transaction")


def test_push_flag(emu: EntrustEmulator, api: Api) -> None:
    """A push flagged as suspicious answers 200 status CONCERN with no token."""
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    emu.flag_push("jsmith")
    reply = api.ok(api.complete("TOKENPUSH", token))
    assert (reply["status"], reply["authenticationCompleted"], reply.get("token")) == (
        "CONCERN",
        False,
        None,
    )


def test_push_expires(emu: EntrustEmulator, api: Api) -> None:
    """After push_lifetime, polls get no_transaction and the push can no longer be approved."""
    clock = FakeClock()
    emu.clock = clock
    emu.push_lifetime = 30
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    assert api.ok(api.complete("TOKENPUSH", token))["status"] == "NO_RESPONSE"
    clock.now += 31
    with pytest.raises(LookupError):
        emu.approve_push("jsmith")
    error(api.complete("TOKENPUSH", token), 400, "no_transaction")


def test_push_cancel(emu: EntrustEmulator, api: Api) -> None:
    """Complete with cancel: true ends the push (status CANCEL); later polls get no_transaction."""
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    reply = api.ok(api.complete("TOKENPUSH", token, cancel=True))
    assert (reply["status"], reply.get("token")) == ("CANCEL", None)
    with pytest.raises(LookupError):
        emu.approve_push("jsmith")
    error(api.complete("TOKENPUSH", token), 400, "no_transaction")


def test_cancel_typed_challenge_revokes_token(emu: EntrustEmulator, api: Api) -> None:
    """Cancelling an OTP challenge answers CANCEL and the token stops working."""
    token = api.external_second_factor("jsmith", "OTP")
    assert api.ok(api.complete("OTP", token, cancel=True))["status"] == "CANCEL"
    error(api.complete("OTP", token, response=emu.last_otp("jsmith")), 401, "invalid_token")


def test_push_control_routes(emu: EntrustEmulator, api: Api) -> None:
    """POST /_emulator/push/{user}/approve|deny|flag drive the push; 409 when none is pending."""
    base = api.base + "/_emulator/push/jsmith/"
    assert api.http.post(base + "approve").status_code == 409
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    assert api.http.post(base + "approve").status_code == 200
    assert api.ok(api.complete("TOKENPUSH", token))["status"] == "CONFIRM"

    token = api.external_second_factor("jsmith", "TOKENPUSH")
    assert api.http.post(base + "deny", json={"reply": "CANCEL"}).status_code == 200
    assert api.ok(api.complete("TOKENPUSH", token))["status"] == "CANCEL"

    token = api.external_second_factor("jsmith", "TOKENPUSH")
    assert api.http.post(base + "deny", json={"reply": "maybe"}).status_code == 400
    assert api.http.post(base + "flag").status_code == 200
    assert api.ok(api.complete("TOKENPUSH", token))["status"] == "CONCERN"
    assert api.http.post(base + "explode").status_code == 404


def test_concurrent_polling_and_approval(emu: EntrustEmulator) -> None:
    """Polling from several threads while another approves is consistent: each flow ends CONFIRM."""
    users = [f"u{i}" for i in range(4)]
    for user in users:
        emu.add_user(user, authenticators=("TOKENPUSH",))
    results: dict[str, str] = {}

    def run(user: str) -> None:
        client = Api(emu)
        token = client.external_second_factor(user, "TOKENPUSH")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = client.ok(client.complete("TOKENPUSH", token))
            if reply["status"] != "NO_RESPONSE":
                results[user] = reply["status"]
                break
        client.http.close()

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    pending = set(users)
    while pending:
        for user in list(pending):
            try:
                emu.approve_push(user)
                pending.discard(user)
            except LookupError:
                pass  # that user's select has not happened yet
        time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=5)
    assert results == dict.fromkeys(users, "CONFIRM")
    assert all(emu.poll_count(u) >= 1 for u in users)


# -- tokens -----------------------------------------------------------------------------


def test_old_tokens_are_refused(emu: EntrustEmulator, api: Api) -> None:
    """Each token is good for the next step only: reusing an earlier one gets 401 invalid_token
    (here on a tenant that takes no select during a running challenge, ``reselect=False``)."""
    emu.reselect = False
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    error(api.complete("EXTERNAL", t1), 401, "invalid_token")
    t3 = api.ok(api.select("OTP", authToken=t2))["token"]
    error(api.select("OTP", authToken=t2), 401, "invalid_token")
    # A token for "complete" is not an authToken for "select", and vice versa.
    error(api.select("TOKEN", authToken=t3), 401, "invalid_token")
    error(api.complete("EXTERNAL", t3), 400, "invalid_authenticator")


def test_a_running_challenge_token_selects_again(api: Api) -> None:
    """With ``reselect`` (the default), the token of a running second-factor challenge also
    selects: the same authenticator again (a resend: a new OTP) or another one; the old
    challenge's token then stops working."""
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1))["token"]
    t3 = api.ok(api.select("OTP", authToken=t2))["token"]
    t4 = api.ok(api.select("OTP", authToken=t3))["token"]
    error(api.select("TOKEN", authToken=t3), 401, "invalid_token")
    api.ok(api.select("TOKEN", authToken=t4))


def test_authorization_header_forms(api: Api) -> None:
    """Authorization is accepted with or without "Bearer " and refused when missing or bogus."""
    t1 = api.ok(api.query("jsmith"))["token"]
    error(api.complete("EXTERNAL", None), 401, "invalid_token")
    error(api.complete("EXTERNAL", "Bearer "), 401, "invalid_token")
    error(api.complete("EXTERNAL", "Bearer nonsense"), 401, "invalid_token")
    api.ok(api.complete("EXTERNAL", f"bearer {t1}"))


def test_session_expiry(emu: EntrustEmulator, api: Api) -> None:
    """Tokens expire session_lifetime after the transaction starts; later steps do not extend it."""
    clock = FakeClock()
    emu.clock = clock
    emu.session_lifetime = 60
    q = api.ok(api.query("jsmith"))
    assert q["expires"] == int((clock.now + 60) * 1000)
    clock.now += 50
    t2 = api.ok(api.complete("EXTERNAL", q["token"]))
    assert t2["expires"] == q["expires"]
    clock.now += 11
    error(api.select("OTP", authToken=t2["token"]), 401, "token_expired")
    error(api.select("OTP", authToken=t2["token"]), 401, "token_expired")


def test_logout_invalidates_final_token(emu: EntrustEmulator, api: Api) -> None:
    """Logout with the final token answers 200 with no body; the token is dead afterwards."""
    token = api.external_second_factor("jsmith", "OTP")
    final = api.ok(api.complete("OTP", token, response=emu.last_otp("jsmith")))["token"]
    again = api.ok(api.query("jsmith", authToken=final))
    assert again["authenticationCompleted"] is True
    reply = api.post(LOGOUT, token=f"Bearer {final}")
    assert (reply.status_code, reply.content) == (200, b"")
    error(api.post(LOGOUT, token=f"Bearer {final}"), 401, "invalid_token")
    error(api.post(LOGOUT), 401, "invalid_token")
    assert api.ok(api.query("jsmith", authToken=final))["authenticationCompleted"] is False


# -- validation ------------------------------------------------------------------------


def test_application_id_validation(api: Api) -> None:
    """A missing applicationId is 400 "Application id cannot be null"; an unknown one is 404."""
    info = error(api.post(QUERY, {"userId": "jsmith"}), 400, "invalid_request")
    assert info["errorMessage"] == "Application id cannot be null"
    error(api.post(SELECT + "OTP", {"userId": "otpuser"}), 400, "invalid_request")
    error(api.post(COMPLETE.format("OTP"), {}, token="x"), 400, "invalid_request")
    error(api.query("jsmith", applicationId="nope"), 404, "application_not_found")


def test_user_id_must_match_token(emu: EntrustEmulator, api: Api) -> None:
    """A userId sent along with a token must name the token's user (400 invalid_request)."""
    t1 = api.ok(api.query("jsmith"))["token"]
    t2 = api.ok(api.complete("EXTERNAL", t1, userId="jsmith"))["token"]
    error(api.select("OTP", authToken=t2, userId="pwuser"), 400, "invalid_request")
    t3 = api.ok(api.select("OTP", authToken=t2, userId="jsmith"))["token"]
    otp = emu.last_otp("jsmith")
    error(api.complete("OTP", t3, response=otp, userId="lowrisk"), 400, "invalid_request")
    api.ok(api.complete("OTP", t3, response=otp, userId="jsmith"))


def test_user_validation(api: Api) -> None:
    """Unknown users are 404 user_not_found, a missing userId 400, an RBA-denied user 403."""
    error(api.query("nobody"), 404, "user_not_found")
    error(api.select("OTP", userId="nobody"), 404, "user_not_found")
    error(api.post(QUERY, {"applicationId": APP}), 400, "invalid_request")
    error(api.select("EXTERNAL"), 400, "invalid_request")
    error(api.query("blocked"), 403, "access_denied")


def test_authenticator_validation(api: Api) -> None:
    """Unknown authenticator names are 400; known ones the user may not use here are 403."""
    error(api.select("SMOKE_SIGNALS", userId="jsmith"), 400, "invalid_authenticator")
    error(api.complete("SMOKE_SIGNALS", "x"), 400, "invalid_authenticator")
    # jsmith's first factor is EXTERNAL: going straight to OTP would skip it.
    error(api.select("OTP", userId="jsmith"), 403, "authenticator_not_available")
    error(
        api.select("PASSWORD_AND_SECONDFACTOR", userId="jsmith"), 403, "authenticator_not_available"
    )
    error(api.select("FIDO", userId="otpuser"), 403, "authenticator_not_available")
    t2 = api.ok(api.complete("EXTERNAL", api.ok(api.query("lowrisk"))["token"]))["token"]
    error(api.select("OTP", authToken=t2), 401, "invalid_token")  # already fully authenticated


def test_malformed_requests(api: Api) -> None:
    """Non-JSON or non-object bodies are 400 invalid_request ErrorInfo."""
    error(api.http.post(api.base + QUERY, data=b"{oops"), 400, "invalid_request")
    error(api.http.post(api.base + QUERY), 400, "invalid_request")
    error(api.post(QUERY, ["jsmith"]), 400, "invalid_request")


def test_unknown_paths_are_404(api: Api) -> None:
    """Unknown paths, and known paths with the wrong method, are 404 not_found ErrorInfo."""
    error(api.post("/api/web/v3/whatever", {}), 404, "not_found")
    error(api.http.get(api.base + QUERY), 404, "not_found")
    error(api.post(SELECT + "OTP/extra", {}), 404, "not_found")


def test_complete_path_must_match_challenge(emu: EntrustEmulator, api: Api) -> None:
    """Completing on another path than the selected authenticator is 400 invalid_authenticator."""
    token = api.external_second_factor("jsmith", "OTP")
    error(api.complete("TOKEN", token, response="1"), 400, "invalid_authenticator")
    error(
        api.complete("OTP", token, response="1", secondFactorAuthenticator="TOKEN"),
        400,
        "invalid_authenticator",
    )
    api.ok(
        api.complete("OTP", token, response=emu.last_otp("jsmith"), secondFactorAuthenticator="OTP")
    )


# -- configuration ----------------------------------------------------------------------


def test_demo_users_listed(api: Api) -> None:
    """GET /_emulator/users lists the documented demo users and their first factors."""
    users = {u["userId"]: u for u in api.http.get(api.base + "/_emulator/users").json()}
    assert set(users) >= {"jsmith", "pwuser", "lowrisk", "pushmc", "otpuser", "blocked"}
    assert users["pwuser"]["authenticationTypes"] == ["PASSWORD_AND_SECONDFACTOR"]
    assert users["lowrisk"]["riskNoSecondFactor"] is True


def test_empty_emulator_and_custom_application() -> None:
    """demo_users=False starts with no users; application_id sets the accepted id."""
    with (
        EntrustEmulator(demo_users=False, application_id="app-1") as emu,
        requests.Session() as http,
    ):
        assert emu.users == {}
        emu.add_user("solo", authenticators=("OTP",), otp_deliveries=("EMAIL",))
        reply = http.post(emu.base_url + QUERY, json={"userId": "solo", "applicationId": "app-1"})
        assert reply.json()["otpDeliveryInfo"]["otpDefaultDelivery"] == "EMAIL"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"authenticators": ("NOT_AN_AUTHENTICATOR",)},
        {"first_factor": "PASSWORD"},
        {"first_factor": "PASSWORD_AND_SECONDFACTOR"},
        {"otp_deliveries": ("PIGEON",)},
        {"authenticators": ("KBA",), "kba": {"q": "a"}},
    ],
)
def test_add_user_validation(emu: EntrustEmulator, kwargs: dict[str, Any]) -> None:
    """add_user refuses configurations the emulator cannot serve."""
    with pytest.raises(ValueError, match=r"."):
        emu.add_user("bad", **kwargs)


# -- faults on the Entrust emulator -------------------------------------------------------


def test_unknown_enum_fault_on_query_and_poll(emu: EntrustEmulator, api: Api) -> None:
    """unknown_enum adds an unknown authenticator name to query lists and replaces push status."""
    emu.faults.inject("unknown_enum", path=QUERY)
    q = api.ok(api.query("jsmith"))
    assert q["authenticationTypes"] == ["EXTERNAL", UNKNOWN_ENUM_VALUE]
    assert q["availableSecondFactor"][-1] == UNKNOWN_ENUM_VALUE
    token = api.external_second_factor("jsmith", "TOKENPUSH")
    emu.faults.inject("unknown_enum", path="/complete")
    assert api.ok(api.complete("TOKENPUSH", token))["status"] == UNKNOWN_ENUM_VALUE


def test_stale_success_fault(emu: EntrustEmulator, api: Api) -> None:
    """stale_success replays an earlier success whose token is no longer the live one."""
    emu.faults.inject("stale_success", path="/complete")
    synthetic = api.ok(api.complete("OTP", "whatever"))
    assert synthetic["authenticationCompleted"] is True
    assert synthetic["expires"] < synthetic["time"]
    error(api.post(LOGOUT, token=synthetic["token"]), 401, "invalid_token")
    token = api.external_second_factor("jsmith", "OTP")
    old = api.ok(api.complete("OTP", token, response=emu.last_otp("jsmith")))
    assert api.post(LOGOUT, token=old["token"]).status_code == 200
    token = api.external_second_factor("jsmith", "OTP")
    emu.faults.inject("stale_success", path="/complete")
    stale = api.ok(api.complete("OTP", token, response="wrong"))
    assert stale == old
    error(api.post(LOGOUT, token=stale["token"]), 401, "invalid_token")


@pytest.mark.parametrize(("kind", "status"), [("status", 503), ("rate_limit", 429)])
def test_http_faults_hit_api_calls(api: Api, kind: str, status: int) -> None:
    """Faults injected over HTTP hit the matching Entrust call and then go away."""
    spec = {"kind": kind, "path": "/complete", "retry_after": 1}
    assert api.http.post(api.base + "/_emulator/faults", json=spec).status_code == 201
    t1 = api.ok(api.query("jsmith"))["token"]
    assert api.complete("EXTERNAL", t1).status_code == status
    api.ok(api.complete("EXTERNAL", t1))  # the token survived the faulted call


def test_faulted_drop_keeps_state(emu: EntrustEmulator, api: Api) -> None:
    """A dropped connection never reaches the handler, so the token has not been used up."""
    t1 = api.ok(api.query("jsmith"))["token"]
    emu.faults.inject("drop", path="EXTERNAL/complete")
    with pytest.raises(requests.exceptions.ConnectionError):
        api.complete("EXTERNAL", t1)
    api.ok(api.complete("EXTERNAL", t1))
