"""The CyberArk Identity emulator, driven over real HTTP with plain ``requests``."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.cyberark import GENERIC_FAILURE, UserMechanism

NATIVE = {"X-IDAP-NATIVE-CLIENT": "true"}
ENVELOPE_KEYS = {
    "success",
    "Result",
    "Message",
    "MessageID",
    "Exception",
    "ErrorID",
    "ErrorCode",
    "IsSoftError",
    "InnerExceptions",
}


class Clock:
    """A settable clock, so lifetimes can pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emu() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator() as server:
        yield server


@pytest.fixture
def clock(emu: CyberArkEmulator) -> Clock:
    fake = Clock()
    emu.clock = fake
    return fake


def post(base: str, op: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{base}/Security/{op}",
        json=body,
        headers=NATIVE if headers is None else headers,
        timeout=5,
    )


def start(emu: CyberArkEmulator, user: str, **extra: Any) -> dict[str, Any]:
    """StartAuthentication; return the whole envelope."""
    reply = post(emu.base_url, "StartAuthentication", {"User": user, "Version": "1.0", **extra})
    assert reply.status_code == 200
    body: dict[str, Any] = reply.json()
    return body


def package(emu: CyberArkEmulator, user: str) -> dict[str, Any]:
    """StartAuthentication for a user expected to get a package; return ``Result``."""
    body = start(emu, user)
    assert body["success"] is True
    assert body["Result"]["Summary"] == "NewPackage"
    result: dict[str, Any] = body["Result"]
    return result


def mech(result: dict[str, Any], challenge: int, name: str) -> str:
    """The MechanismId of ``name`` in challenge number ``challenge``."""
    for mechanism in result["Challenges"][challenge]["Mechanisms"]:
        if mechanism["Name"] == name:
            mechanism_id: str = mechanism["MechanismId"]
            return mechanism_id
    raise AssertionError(f"{name} not offered in challenge {challenge}")


def advance(
    emu: CyberArkEmulator,
    session: str,
    mechanism: str,
    action: str,
    answer: Any = None,
    **extra: Any,
) -> requests.Response:
    body = {"TenantId": "ABC1234", "SessionId": session, "MechanismId": mechanism, "Action": action}
    if answer is not None:
        body["Answer"] = answer
    return post(emu.base_url, "AdvanceAuthentication", {**body, **extra})


def summary(reply: requests.Response) -> str:
    """``Result.Summary`` of a successful envelope (fails the test otherwise)."""
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True, body
    value: str = body["Result"]["Summary"]
    return value


def assert_failure(reply: requests.Response) -> None:
    """The vendor's generic failure: HTTP 200, success false, Summary Failure."""
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["Result"] == {"Summary": "Failure"}
    assert body["Message"] == GENERIC_FAILURE
    assert re.fullmatch(r"[0-9a-f-]{36}:[0-9a-f]{16}", body["ErrorID"])
    assert body["ErrorCode"] is None


def assert_refused(reply: requests.Response, fragment: str) -> None:
    """A malformed request: HTTP 200, success false, no Result, a message naming it."""
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["Result"] is None
    assert fragment in body["Message"]


def password_then(emu: CyberArkEmulator, user: str, password: str) -> dict[str, Any]:
    """Start and pass the UP challenge; return the package."""
    result = package(emu, user)
    reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", password)
    assert summary(reply) == "StartNextChallenge"
    return result


# -- StartAuthentication --------------------------------------------------------


def test_start_returns_the_documented_package(emu: CyberArkEmulator) -> None:
    """StartAuthentication answers the full envelope with a two-challenge package."""
    body = start(emu, "alice")
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is True
    assert body["ErrorID"] is None
    result = body["Result"]
    assert result["Summary"] == "NewPackage"
    assert result["Version"] == "1.0"
    assert result["TenantId"] == "ABC1234"
    assert result["RetryWaitingTime"] == 0
    assert result["ClientHints"]["AllowForgotPassword"] is True
    names = [[m["Name"] for m in c["Mechanisms"]] for c in result["Challenges"]]
    assert names == [["UP"], ["OTP", "SMS", "EMAIL", "SQ"]]
    for challenge in result["Challenges"]:
        for mechanism in challenge["Mechanisms"]:
            for key in ("AnswerType", "PromptMechChosen", "PromptSelectMech", "MechanismId"):
                assert mechanism[key]
            assert mechanism["Enrolled"] is True


def test_mechanisms_carry_their_answer_types_and_details(emu: CyberArkEmulator) -> None:
    """Each mechanism has the vendor's AnswerType and its kind-specific fields."""
    alice = {m["Name"]: m for m in package(emu, "alice")["Challenges"][1]["Mechanisms"]}
    grace = {m["Name"]: m for m in package(emu, "grace")["Challenges"][1]["Mechanisms"]}
    assert alice["SMS"]["AnswerType"] == "StartTextOob"
    assert alice["SMS"]["PartialDeviceAddress"] == "6789"
    assert alice["EMAIL"]["MaskedEmailAddress"] == "***@example.com"
    assert alice["OTP"]["AnswerType"] == "StartTextOob"
    assert alice["SQ"]["AnswerType"] == "Text"
    assert alice["SQ"]["Question"] == "What is your pet's name?"
    assert alice["SQ"]["MultipartMechanism"]["MechanismParts"][0]["Uuid"].startswith("u_")
    assert grace["PF"]["AnswerType"] == "StartOob"
    assert grace["PF"]["PartialPhoneNumber"] == "6789"
    assert grace["QR"]["AnswerType"] == "StartOob"
    assert grace["QR"]["Image"].startswith("data:image/png;base64,")
    assert grace["OATH"]["UiPrompt"] == "OATH OTP Client"
    assert grace["U2F"]["Type"] == "SECURITYKEY"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-IDAP-NATIVE-CLIENT": "true"},
        {"X-CENTRIFY-NATIVE-CLIENT": "true"},
        {"x-centrify-native-client": "1"},
    ],
)
def test_either_native_client_header_is_accepted(
    emu: CyberArkEmulator, headers: dict[str, str]
) -> None:
    """Both the CyberArk and the Centrify native-client header are accepted."""
    reply = post(emu.base_url, "StartAuthentication", {"User": "alice", "Version": "1.0"}, headers)
    assert summary(reply) == "NewPackage"


def test_missing_native_client_header_is_refused(emu: CyberArkEmulator) -> None:
    """Without the native-client header every /Security call is refused."""
    reply = post(emu.base_url, "StartAuthentication", {"User": "alice", "Version": "1.0"}, {})
    assert_refused(reply, "X-IDAP-NATIVE-CLIENT")
    reply = post(emu.base_url, "AdvanceAuthentication", {"SessionId": "x"}, {})
    assert_refused(reply, "X-IDAP-NATIVE-CLIENT")


def test_header_requirement_can_be_switched_off() -> None:
    """require_native_client=False accepts requests without the header."""
    with CyberArkEmulator(require_native_client=False) as emu:
        reply = post(emu.base_url, "StartAuthentication", {"User": "alice", "Version": "1.0"}, {})
        assert summary(reply) == "NewPackage"


def test_non_json_content_type_is_refused(emu: CyberArkEmulator) -> None:
    """A form-encoded body is refused even when it holds the right fields."""
    reply = requests.post(
        f"{emu.base_url}/Security/StartAuthentication",
        data={"User": "alice", "Version": "1.0"},
        headers=NATIVE,
        timeout=5,
    )
    assert_refused(reply, "Content-Type")


def test_malformed_json_is_refused(emu: CyberArkEmulator) -> None:
    """A body that is not JSON, or not a JSON object, is refused."""
    headers = {**NATIVE, "Content-Type": "application/json"}
    url = f"{emu.base_url}/Security/StartAuthentication"
    assert_refused(requests.post(url, data=b"{nope", headers=headers, timeout=5), "JSON")
    assert_refused(requests.post(url, data=b"[1, 2]", headers=headers, timeout=5), "object")


def test_version_is_required_and_must_be_1_0(emu: CyberArkEmulator) -> None:
    """StartAuthentication without Version, or with another one, is refused."""
    assert_refused(post(emu.base_url, "StartAuthentication", {"User": "alice"}), "Version")
    reply = post(emu.base_url, "StartAuthentication", {"User": "alice", "Version": "2.0"})
    assert_refused(reply, "Version")


def test_missing_user_gets_undefined(emu: CyberArkEmulator) -> None:
    """A missing or empty User is the recorded success:false Summary Undefined."""
    for body in ({"Version": "1.0"}, {"User": "", "Version": "1.0"}):
        reply = post(emu.base_url, "StartAuthentication", body).json()
        assert reply["success"] is False
        assert reply["Result"] == {"Summary": "Undefined"}
        assert reply["Message"] == GENERIC_FAILURE


def test_wrong_tenant_is_refused_at_start(emu: CyberArkEmulator) -> None:
    """A TenantId other than the emulator's fails StartAuthentication; its own passes."""
    assert start(emu, "alice", TenantId="OTHER99")["Result"] == {"Summary": "Undefined"}
    assert start(emu, "alice", TenantId="abc1234")["success"] is True


def test_user_may_carry_the_login_suffix(emu: CyberArkEmulator) -> None:
    """alice@example.com is alice."""
    assert len(package(emu, "Alice@example.com")["Challenges"]) == 2


def test_unknown_user_gets_a_decoy_package_that_fails(emu: CyberArkEmulator) -> None:
    """An unknown user is not revealed: a UP package comes back and any password fails."""
    result = package(emu, "mallory")
    assert [[m["Name"] for m in c["Mechanisms"]] for c in result["Challenges"]] == [["UP"]]
    assert_failure(advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "guess"))


def test_unknown_user_can_be_revealed() -> None:
    """reveal_unknown_users=True answers Undefined for an unknown user."""
    with CyberArkEmulator(reveal_unknown_users=True) as emu:
        assert start(emu, "mallory")["Result"] == {"Summary": "Undefined"}


# -- in-band mechanisms and failures ----------------------------------------------


def test_password_only_user_logs_in_with_cookie_and_tokens(emu: CyberArkEmulator) -> None:
    """A single UP challenge ends in LoginSuccess with .ASPXAUTH, Token, Auth and user data."""
    emu.add_user("hank", password="hank-pw", display_name="Hank Hill")
    result = package(emu, "hank")
    reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "hank-pw")
    assert summary(reply) == "LoginSuccess"
    success = reply.json()["Result"]
    assert reply.cookies[".ASPXAUTH"] == success["Auth"]
    assert success["Token"].count(".") == 2
    assert success["DisplayName"] == "Hank Hill"
    assert success["User"] == "hank@example.com"
    assert success["PodFqdn"] == f"127.0.0.1:{emu.port}"
    assert success["CustomerID"] == "ABC1234"
    assert success["AuthLevel"] == "Normal"
    assert "RefreshToken" not in success
    assert emu.token_valid(success["Token"])
    assert emu.token_valid(success["Auth"])


def test_platform_token_response_adds_refresh_token(emu: CyberArkEmulator) -> None:
    """PlatformTokenResponse:true at start adds RefreshToken and TokenLifetime on success."""
    emu.add_user("hank", password="hank-pw")
    result = start(emu, "hank", PlatformTokenResponse=True)["Result"]
    reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "hank-pw")
    success = reply.json()["Result"]
    assert success["RefreshToken"]
    assert success["TokenLifetime"] == 3600


def test_wrong_password_fails_and_kills_the_package(emu: CyberArkEmulator) -> None:
    """A wrong password gives the generic failure; the session cannot be used again."""
    result = package(emu, "alice")
    up = mech(result, 0, "UP")
    assert_failure(advance(emu, result["SessionId"], up, "Answer", "nope"))
    assert emu.last_failure("alice") == "wrong answer to UP"
    assert_failure(advance(emu, result["SessionId"], up, "Answer", "alice-password"))


def test_security_question_answer_logs_in(emu: CyberArkEmulator) -> None:
    """alice's single security question is answered with a plain string."""
    result = password_then(emu, "alice", "alice-password")
    reply = advance(emu, result["SessionId"], mech(result, 1, "SQ"), "Answer", " smokey ")
    assert summary(reply) == "LoginSuccess"


def test_multi_question_sq_takes_answers_keyed_by_uuid(emu: CyberArkEmulator) -> None:
    """carol's two questions are answered with an object keyed by MechanismParts Uuid."""
    result = password_then(emu, "carol", "carol-password")
    sq = next(m for m in result["Challenges"][1]["Mechanisms"] if m["Name"] == "SQ")
    parts = sq["MultipartMechanism"]["MechanismParts"]
    answers = {"First car?": "Beetle", "Favourite colour?": "Teal"}
    answer = {p["Uuid"]: answers[p["QuestionText"]] for p in parts}
    reply = advance(emu, result["SessionId"], sq["MechanismId"], "Answer", answer)
    assert summary(reply) == "LoginSuccess"


def test_multi_question_sq_rejects_a_single_string(emu: CyberArkEmulator) -> None:
    """A plain string cannot answer two questions."""
    result = password_then(emu, "carol", "carol-password")
    assert_failure(advance(emu, result["SessionId"], mech(result, 1, "SQ"), "Answer", "Beetle"))


def test_unknown_session_id_fails(emu: CyberArkEmulator) -> None:
    """An unknown SessionId gets the generic failure."""
    result = package(emu, "alice")
    assert_failure(advance(emu, "no-such-session", mech(result, 0, "UP"), "Answer", "x"))


def test_unknown_mechanism_id_fails_and_kills_the_package(emu: CyberArkEmulator) -> None:
    """An unknown MechanismId fails the package."""
    result = package(emu, "alice")
    assert_failure(advance(emu, result["SessionId"], "no-such-mech", "Answer", "alice-password"))
    reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "alice-password")
    assert_failure(reply)


def test_mechanism_of_a_later_challenge_fails(emu: CyberArkEmulator) -> None:
    """Challenges are taken in order: challenge 2's mechanism is refused during challenge 1."""
    result = package(emu, "alice")
    assert_failure(advance(emu, result["SessionId"], mech(result, 1, "SMS"), "StartOOB"))
    assert emu.last_failure("alice") == "MechanismId is not in the current challenge"


def test_unknown_action_fails(emu: CyberArkEmulator) -> None:
    """An Action the spec does not list fails the package."""
    result = package(emu, "alice")
    assert_failure(advance(emu, result["SessionId"], mech(result, 0, "UP"), "Guess"))


@pytest.mark.parametrize("missing", ["SessionId", "MechanismId", "Action"])
def test_advance_requires_its_fields(emu: CyberArkEmulator, missing: str) -> None:
    """AdvanceAuthentication without SessionId, MechanismId or Action is refused."""
    result = package(emu, "alice")
    body = {"SessionId": result["SessionId"], "MechanismId": mech(result, 0, "UP")}
    body |= {"Action": "Answer", "Answer": "alice-password"}
    del body[missing]
    assert_refused(post(emu.base_url, "AdvanceAuthentication", body), missing)


def test_tenant_id_is_ignored_on_advance(emu: CyberArkEmulator) -> None:
    """The vendor's own example changes TenantId between calls; advance ignores it."""
    result = package(emu, "alice")
    reply = advance(
        emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "alice-password", TenantId="AB1"
    )
    assert summary(reply) == "StartNextChallenge"


def test_session_expires(emu: CyberArkEmulator, clock: Clock) -> None:
    """After session_lifetime the package is dead."""
    result = package(emu, "alice")
    clock.now += emu.session_lifetime
    assert_failure(advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "x"))
    assert emu.last_failure("alice") == "session expired"


# -- out-of-band mechanisms ----------------------------------------------------------


def test_push_is_polled_until_approved(emu: CyberArkEmulator) -> None:
    """StartOOB answers OobPending; polls stay pending until approve, then LoginSuccess."""
    result = password_then(emu, "alice", "alice-password")
    session, otp = result["SessionId"], mech(result, 1, "OTP")
    assert summary(advance(emu, session, otp, "StartOOB")) == "OobPending"
    assert summary(advance(emu, session, otp, "Poll")) == "OobPending"
    assert summary(advance(emu, session, otp, "Poll")) == "OobPending"
    emu.approve("alice")
    reply = advance(emu, session, otp, "Poll")
    assert summary(reply) == "LoginSuccess"
    assert reply.cookies[".ASPXAUTH"]
    assert emu.poll_count("alice") == 3


def test_denied_push_fails(emu: CyberArkEmulator) -> None:
    """A denied push fails the package at the next poll."""
    result = password_then(emu, "alice", "alice-password")
    session, otp = result["SessionId"], mech(result, 1, "OTP")
    advance(emu, session, otp, "StartOOB")
    emu.deny("alice")
    assert_failure(advance(emu, session, otp, "Poll"))
    assert emu.last_failure("alice") == "out-of-band challenge denied"
    with pytest.raises(LookupError):
        emu.approve("alice")


def test_oob_expires(emu: CyberArkEmulator, clock: Clock) -> None:
    """Polls after oob_lifetime fail the package, even if approved too late."""
    result = password_then(emu, "alice", "alice-password")
    session, otp = result["SessionId"], mech(result, 1, "OTP")
    advance(emu, session, otp, "StartOOB")
    clock.now += emu.oob_lifetime
    emu.approve("alice")
    assert_failure(advance(emu, session, otp, "Poll"))
    assert emu.last_failure("alice") == "out-of-band challenge expired"


def test_sms_code_is_typed_while_polling(emu: CyberArkEmulator) -> None:
    """SMS: StartOOB makes a code; polls stay pending; Answer with the code logs in."""
    result = password_then(emu, "alice", "alice-password")
    session, sms = result["SessionId"], mech(result, 1, "SMS")
    assert emu.last_code("alice") is None
    assert summary(advance(emu, session, sms, "StartOOB")) == "OobPending"
    code = emu.last_code("alice")
    assert code is not None
    assert re.fullmatch(r"\d{6}", code)
    assert summary(advance(emu, session, sms, "Poll")) == "OobPending"
    assert summary(advance(emu, session, sms, "Answer", code)) == "LoginSuccess"


def test_wrong_code_fails(emu: CyberArkEmulator) -> None:
    """A wrong SMS code fails the package."""
    result = password_then(emu, "alice", "alice-password")
    session, sms = result["SessionId"], mech(result, 1, "SMS")
    advance(emu, session, sms, "StartOOB")
    code = emu.last_code("alice")
    wrong = "000000" if code != "000000" else "111111"
    assert_failure(advance(emu, session, sms, "Answer", wrong))


def test_email_link_click_advances_at_next_poll(emu: CyberArkEmulator) -> None:
    """EMAIL is answerable but also pollable: a clicked link (approve) logs in at the poll."""
    result = password_then(emu, "alice", "alice-password")
    session, email = result["SessionId"], mech(result, 1, "EMAIL")
    advance(emu, session, email, "StartOOB")
    emu.approve("alice")
    assert summary(advance(emu, session, email, "Poll")) == "LoginSuccess"


def test_code_before_start_oob_fails(emu: CyberArkEmulator) -> None:
    """Answering an OOB mechanism that was never started fails (no code exists yet)."""
    result = password_then(emu, "alice", "alice-password")
    assert_failure(advance(emu, result["SessionId"], mech(result, 1, "SMS"), "Answer", "123456"))


def test_poll_without_start_oob_fails(emu: CyberArkEmulator) -> None:
    """Polling a mechanism that was never started fails."""
    result = password_then(emu, "alice", "alice-password")
    assert_failure(advance(emu, result["SessionId"], mech(result, 1, "OTP"), "Poll"))


def test_start_oob_on_a_text_mechanism_fails(emu: CyberArkEmulator) -> None:
    """StartOOB on UP fails."""
    result = package(emu, "alice")
    assert_failure(advance(emu, result["SessionId"], mech(result, 0, "UP"), "StartOOB"))


def test_phone_call_is_poll_only(emu: CyberArkEmulator) -> None:
    """PF (StartOob) is polled to success but cannot be answered."""
    result = password_then(emu, "grace", "grace-password")
    session, pf = result["SessionId"], mech(result, 1, "PF")
    assert summary(advance(emu, session, pf, "StartOOB")) == "OobPending"
    assert emu.last_code("grace") is None
    emu.approve("grace")
    assert summary(advance(emu, session, pf, "Poll")) == "LoginSuccess"
    result = password_then(emu, "grace", "grace-password")
    session, pf = result["SessionId"], mech(result, 1, "PF")
    advance(emu, session, pf, "StartOOB")
    assert_failure(advance(emu, session, pf, "Answer", "1234"))


def test_qr_is_polled_after_scan(emu: CyberArkEmulator) -> None:
    """QR (StartOob) advances at the poll after the scan."""
    result = password_then(emu, "grace", "grace-password")
    session, qr = result["SessionId"], mech(result, 1, "QR")
    advance(emu, session, qr, "StartOOB")
    assert summary(advance(emu, session, qr, "Poll")) == "OobPending"
    emu.approve("grace")
    assert summary(advance(emu, session, qr, "Poll")) == "LoginSuccess"


def test_oath_code_is_answered(emu: CyberArkEmulator) -> None:
    """OATH gets a code at StartOOB, readable through the control route, and is answered."""
    result = password_then(emu, "grace", "grace-password")
    session, oath = result["SessionId"], mech(result, 1, "OATH")
    advance(emu, session, oath, "StartOOB")
    control = requests.get(f"{emu.base_url}/_emulator/code/grace", timeout=5)
    assert control.status_code == 200
    code = control.json()["code"]
    assert code == emu.last_code("grace")
    assert summary(advance(emu, session, oath, "Answer", code)) == "LoginSuccess"


def test_u2f_is_answered_but_not_polled(emu: CyberArkEmulator) -> None:
    """U2F accepts its assertion as the answer; a poll fails the package."""
    result = password_then(emu, "grace", "grace-password")
    session, u2f = result["SessionId"], mech(result, 1, "U2F")
    advance(emu, session, u2f, "StartOOB")
    assert summary(advance(emu, session, u2f, "Answer", "u2f-assertion")) == "LoginSuccess"
    result = password_then(emu, "grace", "grace-password")
    session, u2f = result["SessionId"], mech(result, 1, "U2F")
    advance(emu, session, u2f, "StartOOB")
    assert_failure(advance(emu, session, u2f, "Poll"))


def test_unenrolled_mechanism_fails(emu: CyberArkEmulator) -> None:
    """A mechanism advertised with Enrolled false fails when used."""
    emu.add_user("ivan", challenges=[[UserMechanism("OTP", enrolled=False)]])
    result = package(emu, "ivan")
    assert result["Challenges"][0]["Mechanisms"][0]["Enrolled"] is False
    assert_failure(advance(emu, result["SessionId"], mech(result, 0, "OTP"), "StartOOB"))


def test_number_matching_sends_generated_auth_value(emu: CyberArkEmulator) -> None:
    """bob's push carries GeneratedAuthValue; approving with that number logs in."""
    result = package(emu, "bob")
    assert len(result["Challenges"]) == 1
    session, otp = result["SessionId"], mech(result, 0, "OTP")
    started = advance(emu, session, otp, "StartOOB").json()["Result"]
    assert started["Summary"] == "OobPending"
    number = started["GeneratedAuthValue"]
    assert re.fullmatch(r"\d{2}", number)
    emu.approve("bob", number=number)
    assert summary(advance(emu, session, otp, "Poll")) == "LoginSuccess"


def test_number_matching_wrong_number_is_a_denial(emu: CyberArkEmulator) -> None:
    """Picking the wrong number in the app counts as a denial."""
    result = package(emu, "bob")
    session, otp = result["SessionId"], mech(result, 0, "OTP")
    number = advance(emu, session, otp, "StartOOB").json()["Result"]["GeneratedAuthValue"]
    emu.approve("bob", number="00" if number != "00" else "01")
    assert_failure(advance(emu, session, otp, "Poll"))


def test_push_without_number_matching_has_no_generated_value(emu: CyberArkEmulator) -> None:
    """A plain push StartOOB reply is just Summary OobPending."""
    result = password_then(emu, "alice", "alice-password")
    reply = advance(emu, result["SessionId"], mech(result, 1, "OTP"), "StartOOB")
    assert reply.json()["Result"] == {"Summary": "OobPending"}


def test_retry_oob_sends_a_new_code(emu: CyberArkEmulator) -> None:
    """RetryOOB issues a new code; the old one no longer works."""
    result = password_then(emu, "alice", "alice-password")
    session, sms = result["SessionId"], mech(result, 1, "SMS")
    advance(emu, session, sms, "StartOOB")
    first = emu.last_code("alice")
    for _ in range(5):  # a fresh random code may repeat the old one by chance
        assert summary(advance(emu, session, sms, "RetryOOB")) == "OobPending"
        if emu.last_code("alice") != first:
            break
    assert_failure(advance(emu, session, sms, "Answer", first))


def test_retry_oob_before_start_fails(emu: CyberArkEmulator) -> None:
    """RetryOOB on a mechanism that was never started fails."""
    result = password_then(emu, "alice", "alice-password")
    assert_failure(advance(emu, result["SessionId"], mech(result, 1, "SMS"), "RetryOOB"))


def test_control_routes_approve_deny_and_count(emu: CyberArkEmulator) -> None:
    """/_emulator/oob/{user}/approve|deny drive the phone; 404 when nothing is pending."""
    base = emu.base_url
    assert requests.post(f"{base}/_emulator/oob/alice/approve", timeout=5).status_code == 404
    assert requests.get(f"{base}/_emulator/code/alice", timeout=5).status_code == 404
    result = password_then(emu, "alice", "alice-password")
    session, otp = result["SessionId"], mech(result, 1, "OTP")
    advance(emu, session, otp, "StartOOB")
    advance(emu, session, otp, "Poll")
    assert requests.post(f"{base}/_emulator/oob/alice/approve", timeout=5).status_code == 200
    assert summary(advance(emu, session, otp, "Poll")) == "LoginSuccess"
    polls = requests.get(f"{base}/_emulator/polls/alice", timeout=5).json()
    assert polls == {"user": "alice", "polls": 2}
    result = package(emu, "bob")
    advance(emu, result["SessionId"], mech(result, 0, "OTP"), "StartOOB")
    assert requests.post(f"{base}/_emulator/oob/bob/deny", timeout=5).status_code == 200
    assert_failure(advance(emu, result["SessionId"], mech(result, 0, "OTP"), "Poll"))
    assert requests.post(f"{base}/_emulator/oob/bob/shrug", timeout=5).status_code == 404


# -- package-level behaviour ------------------------------------------------------------


def test_deferred_failure_is_reported_after_the_last_challenge(emu: CyberArkEmulator) -> None:
    """dave's wrong password still yields StartNextChallenge and a code; the end fails."""
    result = package(emu, "dave")
    session = result["SessionId"]
    reply = advance(emu, session, mech(result, 0, "UP"), "Answer", "wrong")
    assert summary(reply) == "StartNextChallenge"
    email = mech(result, 1, "EMAIL")
    assert summary(advance(emu, session, email, "StartOOB")) == "OobPending"
    assert_failure(advance(emu, session, email, "Answer", emu.last_code("dave")))
    assert emu.last_failure("dave") == "wrong answer to UP"


def test_deferred_failure_user_with_right_answers_logs_in(emu: CyberArkEmulator) -> None:
    """dave with the right password and code logs in."""
    result = password_then(emu, "dave", "dave-password")
    session, email = result["SessionId"], mech(result, 1, "EMAIL")
    advance(emu, session, email, "StartOOB")
    assert summary(advance(emu, session, email, "Answer", emu.last_code("dave"))) == "LoginSuccess"


def test_deferral_does_not_hide_a_failure_in_the_last_challenge(emu: CyberArkEmulator) -> None:
    """A wrong code in dave's last challenge fails at once."""
    result = password_then(emu, "dave", "dave-password")
    session, email = result["SessionId"], mech(result, 1, "EMAIL")
    advance(emu, session, email, "StartOOB")
    assert_failure(advance(emu, session, email, "Answer", "not-a-code"))


def test_new_package_mid_flow(emu: CyberArkEmulator) -> None:
    """erin's password yields NewPackage (same session, new challenges) that then logs in."""
    result = package(emu, "erin")
    session = result["SessionId"]
    assert len(result["Challenges"]) == 1
    reply = advance(emu, session, mech(result, 0, "UP"), "Answer", "erin-password")
    assert summary(reply) == "NewPackage"
    new = reply.json()["Result"]
    assert new["SessionId"] == session
    assert new["EventDescription"]
    assert [m["Name"] for m in new["Challenges"][0]["Mechanisms"]] == ["EMAIL", "SMS"]
    sms = mech(new, 0, "SMS")
    advance(emu, session, sms, "StartOOB")
    assert summary(advance(emu, session, sms, "Answer", emu.last_code("erin"))) == "LoginSuccess"


def test_old_package_mechanisms_die_with_new_package(emu: CyberArkEmulator) -> None:
    """After NewPackage the old package's MechanismIds are refused."""
    result = package(emu, "erin")
    up = mech(result, 0, "UP")
    advance(emu, result["SessionId"], up, "Answer", "erin-password")
    assert_failure(advance(emu, result["SessionId"], up, "Answer", "erin-password"))


def test_three_challenges_in_a_row(emu: CyberArkEmulator) -> None:
    """Each passed challenge but the last answers StartNextChallenge."""
    emu.add_user("judy", password="judy-pw", challenges=[["UP"], ["SQ"], ["QR"]])
    result = package(emu, "judy")
    session = result["SessionId"]
    assert summary(advance(emu, session, mech(result, 0, "UP"), "Answer", "judy-pw")) == (
        "StartNextChallenge"
    )
    assert summary(advance(emu, session, mech(result, 1, "SQ"), "Answer", "Smokey")) == (
        "StartNextChallenge"
    )
    qr = mech(result, 2, "QR")
    advance(emu, session, qr, "StartOOB")
    emu.approve("judy")
    assert summary(advance(emu, session, qr, "Poll")) == "LoginSuccess"


def test_finished_session_is_dead(emu: CyberArkEmulator) -> None:
    """After LoginSuccess the SessionId is no longer accepted."""
    emu.add_user("hank", password="hank-pw")
    result = package(emu, "hank")
    up = mech(result, 0, "UP")
    assert summary(advance(emu, result["SessionId"], up, "Answer", "hank-pw")) == "LoginSuccess"
    assert_failure(advance(emu, result["SessionId"], up, "Answer", "hank-pw"))


def test_multiple_operations_batch(emu: CyberArkEmulator) -> None:
    """A batch answers UP and starts EMAIL at once; ResultAppliesTo names EMAIL."""
    result = package(emu, "alice")
    session, email = result["SessionId"], mech(result, 1, "EMAIL")
    body = {
        "TenantId": "ABC1234",
        "SessionId": session,
        "PersistentLogin": False,
        "MultipleOperations": [
            {"MechanismId": mech(result, 0, "UP"), "Answer": "alice-password", "Action": "Answer"},
            {"MechanismId": email, "Action": "StartOOB"},
        ],
    }
    reply = post(emu.base_url, "AdvanceAuthentication", body)
    assert reply.json()["Result"] == {"ResultAppliesTo": email, "Summary": "OobPending"}
    final = advance(emu, session, email, "Answer", emu.last_code("alice"), PersistentLogin=False)
    assert summary(final) == "LoginSuccess"
    assert "Max-Age" not in final.headers["Set-Cookie"]


def test_batch_with_wrong_password_fails(emu: CyberArkEmulator) -> None:
    """A wrong password in a batch fails the whole request."""
    result = package(emu, "alice")
    body = {
        "SessionId": result["SessionId"],
        "MultipleOperations": [
            {"MechanismId": mech(result, 0, "UP"), "Answer": "nope", "Action": "Answer"},
            {"MechanismId": mech(result, 1, "EMAIL"), "Action": "StartOOB"},
        ],
    }
    assert_failure(post(emu.base_url, "AdvanceAuthentication", body))
    assert emu.last_code("alice") is None


def test_forgot_password_resets_and_ends_noncommittally(emu: CyberArkEmulator) -> None:
    """ForgotPassword gives a new package (EMAIL, RESET) ending in NoncommitalSuccess."""
    result = package(emu, "alice")
    body = {"TenantId": "ABC1234", "SessionId": result["SessionId"], "Action": "ForgotPassword"}
    reply = post(emu.base_url, "AdvanceAuthentication", body)
    assert summary(reply) == "NewPackage"
    reset = reply.json()["Result"]
    assert reset["SessionId"] != result["SessionId"]
    session, email = reset["SessionId"], mech(reset, 0, "EMAIL")
    advance(emu, session, email, "StartOOB")
    assert summary(advance(emu, session, email, "Answer", emu.last_code("alice"))) == (
        "StartNextChallenge"
    )
    done = advance(emu, session, mech(reset, 1, "RESET"), "Answer", "brand-new-pw")
    assert summary(done) == "NoncommitalSuccess"
    assert done.json()["Result"]["ClientMessage"]
    assert ".ASPXAUTH" not in done.cookies
    again = package(emu, "alice")
    up = mech(again, 0, "UP")
    assert summary(advance(emu, again["SessionId"], up, "Answer", "brand-new-pw")) == (
        "StartNextChallenge"
    )


def test_forgot_password_not_allowed_fails(emu: CyberArkEmulator) -> None:
    """ForgotPassword for a user without it fails the package."""
    result = package(emu, "carol")
    assert result["ClientHints"]["AllowForgotPassword"] is False
    body = {"SessionId": result["SessionId"], "Action": "ForgotPassword"}
    assert_failure(post(emu.base_url, "AdvanceAuthentication", body))


# -- pods, cookies, logout ------------------------------------------------------------------


def test_redirect_to_a_second_emulator(emu: CyberArkEmulator) -> None:
    """StartAuthentication answers only PodFqdn until the call reaches the named pod."""
    with CyberArkEmulator() as pod:
        emu.redirect_user("alice", pod.base_url)
        body = start(emu, "alice")
        assert body["success"] is True
        assert body["Result"] == {"PodFqdn": f"127.0.0.1:{pod.port}"}
        assert package(pod, "alice")["Challenges"]
        assert package(emu, "bob")["Challenges"]  # other users stay here


def test_redirect_as_url_for_plain_http_clients() -> None:
    """pod_fqdn_as_url=True puts a full http:// base URL into PodFqdn."""
    with CyberArkEmulator(pod_fqdn_as_url=True) as emu, CyberArkEmulator() as pod:
        emu.redirect_user("alice", pod.base_url)
        assert start(emu, "alice")["Result"] == {"PodFqdn": pod.base_url}


def test_demo_user_lives_on_a_pod_path(emu: CyberArkEmulator) -> None:
    """frank is redirected to HOST:PORT/pod2, which the same emulator serves."""
    pod = start(emu, "frank")["Result"]["PodFqdn"]
    assert pod == f"127.0.0.1:{emu.port}/pod2"
    reply = requests.post(
        f"http://{pod}/Security/StartAuthentication",
        json={"User": "frank", "Version": "1.0"},
        headers=NATIVE,
        timeout=5,
    )
    result = reply.json()["Result"]
    up = mech(result, 0, "UP")
    step = requests.post(
        f"http://{pod}/Security/AdvanceAuthentication",
        json={"SessionId": result["SessionId"], "MechanismId": up, "Action": "Answer"}
        | {"Answer": "frank-password"},
        headers=NATIVE,
        timeout=5,
    )
    assert summary(step) == "StartNextChallenge"


def test_unknown_pod_path_is_not_found(emu: CyberArkEmulator) -> None:
    """Only registered pod paths are served; others are an HTML 404."""
    reply = requests.post(
        f"{emu.base_url}/pod9/Security/StartAuthentication",
        json={"User": "alice", "Version": "1.0"},
        headers=NATIVE,
        timeout=5,
    )
    assert reply.status_code == 404
    assert reply.headers["Content-Type"].startswith("text/html")


def test_pod_redirecting_to_itself_loops(emu: CyberArkEmulator) -> None:
    """With loop=True the pod keeps answering PodFqdn even at itself."""
    emu.redirect_user("alice", emu.base_url, loop=True)
    for _ in range(3):
        assert start(emu, "alice")["Result"] == {"PodFqdn": f"127.0.0.1:{emu.port}"}


def test_success_pod_fqdn_names_the_pod(emu: CyberArkEmulator) -> None:
    """LoginSuccess carries the PodFqdn the flow ran on."""
    emu.add_user("hank", password="hank-pw")
    result = package(emu, "hank")
    reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "hank-pw")
    assert reply.json()["Result"]["PodFqdn"] == f"127.0.0.1:{emu.port}"


def test_aspxauth_cookie_skips_the_package_until_logout(emu: CyberArkEmulator) -> None:
    """With a live .ASPXAUTH StartAuthentication says LoginSuccess; Logout ends that."""
    emu.add_user("hank", password="hank-pw")
    http = requests.Session()
    http.headers.update(NATIVE)
    url = emu.base_url + "/Security/"
    result = http.post(url + "StartAuthentication", json={"User": "hank", "Version": "1.0"})
    body = {"SessionId": result.json()["Result"]["SessionId"], "Action": "Answer"}
    body |= {"MechanismId": mech(result.json()["Result"], 0, "UP"), "Answer": "hank-pw"}
    token = http.post(url + "AdvanceAuthentication", json=body).json()["Result"]["Token"]
    again = http.post(url + "StartAuthentication", json={"User": "hank", "Version": "1.0"})
    assert summary(again) == "LoginSuccess"
    logout = http.post(url + "Logout", json={}, headers={"Authorization": f"Bearer {token}"})
    assert logout.status_code == 200
    assert logout.json()["success"] is True
    assert not emu.token_valid(token)
    after = http.post(url + "StartAuthentication", json={"User": "hank", "Version": "1.0"})
    assert summary(after) == "NewPackage"


def test_logout_with_unknown_token_still_succeeds(emu: CyberArkEmulator) -> None:
    """Logout is open to anyone and answers success even for a stale token."""
    reply = post(emu.base_url, "Logout", {}, {**NATIVE, "Authorization": "Bearer stale"})
    assert reply.json()["success"] is True


# -- HTTP surface, call log, faults, threads ------------------------------------------------


def test_get_is_not_allowed(emu: CyberArkEmulator) -> None:
    """Only POST is served on /Security paths."""
    reply = requests.get(f"{emu.base_url}/Security/StartAuthentication", timeout=5)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "POST"


def test_unknown_path_is_html_404(emu: CyberArkEmulator) -> None:
    """Paths outside the API are an HTML 404, as from the real web front end."""
    reply = requests.post(f"{emu.base_url}/Security/Nope", json={}, headers=NATIVE, timeout=5)
    assert reply.status_code == 404
    assert "<html>" in reply.text


def test_every_request_is_logged(emu: CyberArkEmulator) -> None:
    """The call log holds each API request with its JSON body and status."""
    result = package(emu, "alice")
    advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "alice-password")
    post(emu.base_url, "StartAuthentication", {"User": "alice"}, {})
    calls = emu.calls
    assert [c.path.rsplit("/", 1)[1] for c in calls] == [
        "StartAuthentication",
        "AdvanceAuthentication",
        "StartAuthentication",
    ]
    assert calls[1].body["Action"] == "Answer"
    assert calls[2].headers.get("x-idap-native-client") is None
    assert all(c.status == 200 for c in calls)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("status", {"status": 502}),
        ("rate_limit", {"retry_after": 7}),
        ("slow", {"delay": 0.05}),
        ("drop", {}),
        ("reset", {}),
        ("empty", {}),
        ("html", {}),
        ("wrong_shape", {}),
        ("unknown_enum", {}),
    ],
)
def test_every_fault_kind_reaches_the_client(
    emu: CyberArkEmulator, kind: str, options: dict[str, Any]
) -> None:
    """Each injected fault replaces the answer to the next matching request only."""
    emu.faults.inject(kind, path="/Security/StartAuthentication", **options)
    body = {"User": "alice", "Version": "1.0"}
    if kind in ("drop", "reset"):
        # A reset mid-body surfaces as ConnectionError or ChunkedEncodingError.
        broken = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
        with pytest.raises(broken):
            post(emu.base_url, "StartAuthentication", body)
    else:
        reply = post(emu.base_url, "StartAuthentication", body)
        if kind == "status":
            assert reply.status_code == 502
        elif kind == "rate_limit":
            assert (reply.status_code, reply.headers["Retry-After"]) == (429, "7")
        elif kind == "slow":
            assert summary(reply) == "NewPackage"
        elif kind == "empty":
            assert reply.content == b""
        elif kind == "html":
            assert reply.headers["Content-Type"].startswith("text/html")
        elif kind == "wrong_shape":
            assert "success" not in reply.json()
        else:
            assert reply.json()["Result"]["Summary"] == "EMULATOR_UNKNOWN_VALUE"
    assert emu.calls[0].fault == kind
    assert summary(post(emu.base_url, "StartAuthentication", body)) == "NewPackage"


def test_concurrent_flows_do_not_mix(emu: CyberArkEmulator) -> None:
    """Parallel logins each get their own session and all succeed."""
    outcomes: list[str] = []

    def login() -> None:
        result = package(emu, "carol")
        reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "carol-password")
        outcomes.append(summary(reply))

    threads = [threading.Thread(target=login) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert outcomes == ["StartNextChallenge"] * 8


def test_add_user_validates_its_package() -> None:
    """A UP user needs a password, and packages need mechanisms."""
    emu = CyberArkEmulator(demo_users=False)
    with pytest.raises(ValueError, match="password"):
        emu.add_user("x", challenges=[["UP"]])
    with pytest.raises(ValueError, match="at least one"):
        emu.add_user("x", password="p", challenges=[[]])
    with pytest.raises(ValueError, match="name"):
        UserMechanism("SMOKE")


def test_bare_host_pod_is_sent_verbatim(emu: CyberArkEmulator) -> None:
    """A pod given as a bare host is the PodFqdn; as a URL it defaults to https."""
    emu.redirect_user("alice", "ABC1234.my.idaptive.app/identity/")
    assert start(emu, "alice")["Result"] == {"PodFqdn": "abc1234.my.idaptive.app/identity"}
    with CyberArkEmulator(pod_fqdn_as_url=True) as other:
        other.redirect_user("alice", "abc1234.my.idaptive.app")
        assert start(other, "alice")["Result"] == {"PodFqdn": "https://abc1234.my.idaptive.app"}
    with pytest.raises(ValueError, match="pod"):
        emu.redirect_user("alice", "https:///nohost")


@pytest.mark.parametrize(
    ("operations", "fragment"),
    [
        ([], "non-empty"),
        (["Answer"], "JSON object"),
        ([{"Action": "ForgotPassword"}], "batched"),
        ([{"Action": "Poll"}], "MechanismId"),
    ],
)
def test_malformed_batches_are_refused(
    emu: CyberArkEmulator, operations: list[Any], fragment: str
) -> None:
    """MultipleOperations must be a non-empty list of complete operations."""
    body = {"SessionId": package(emu, "alice")["SessionId"], "MultipleOperations": operations}
    assert_refused(post(emu.base_url, "AdvanceAuthentication", body), fragment)


def test_code_typed_after_oob_lifetime_fails(emu: CyberArkEmulator, clock: Clock) -> None:
    """The right code typed after oob_lifetime fails the package."""
    result = password_then(emu, "alice", "alice-password")
    session, sms = result["SessionId"], mech(result, 1, "SMS")
    advance(emu, session, sms, "StartOOB")
    clock.now += emu.oob_lifetime
    assert_failure(advance(emu, session, sms, "Answer", emu.last_code("alice")))


def test_abandoned_sessions_and_tokens_are_purged(emu: CyberArkEmulator, clock: Clock) -> None:
    """A new StartAuthentication drops expired packages and tokens."""
    emu.add_user("hank", password="hank-pw")
    result = package(emu, "hank")
    reply = advance(emu, result["SessionId"], mech(result, 0, "UP"), "Answer", "hank-pw")
    token = reply.json()["Result"]["Token"]
    abandoned = package(emu, "alice")
    clock.now += emu.token_lifetime
    package(emu, "bob")
    assert emu.last_failure("alice") == "session expired"
    assert not emu.token_valid(token)
    assert_failure(advance(emu, abandoned["SessionId"], mech(abandoned, 0, "UP"), "Answer", "x"))


def test_logout_body_must_be_an_object(emu: CyberArkEmulator) -> None:
    """Logout with a JSON body that is not an object is refused."""
    assert_refused(post(emu.base_url, "Logout", [1]), "object")


def test_batch_running_past_the_package_end_fails(emu: CyberArkEmulator) -> None:
    """Operations after the package is complete fail instead of crashing."""
    emu.add_user("hank", password="hank-pw")
    result = package(emu, "hank")
    up = mech(result, 0, "UP")
    answer = {"MechanismId": up, "Answer": "hank-pw", "Action": "Answer"}
    body = {"SessionId": result["SessionId"], "MultipleOperations": [answer, answer]}
    assert_failure(post(emu.base_url, "AdvanceAuthentication", body))


def test_replay_success_fault(emu: CyberArkEmulator) -> None:
    """replay_success answers with the last LoginSuccess sent, body and cookie, and does not
    process the request; before any login it replays a made-up user's."""
    emu.faults.inject("replay_success")
    made_up = post(emu.base_url, "StartAuthentication", {"User": "alice", "Version": "1.0"})
    assert made_up.json()["Result"]["User"] == "replayed@example.com"
    alice = package(emu, "alice")
    done = advance(emu, alice["SessionId"], mech(alice, 0, "UP"), "Answer", "alice-password")
    assert summary(done) == "StartNextChallenge"
    bob = package(emu, "bob")
    started = advance(emu, bob["SessionId"], mech(bob, 0, "OTP"), "StartOOB")
    emu.approve("bob", number=started.json()["Result"]["GeneratedAuthValue"])
    success = advance(emu, bob["SessionId"], mech(bob, 0, "OTP"), "Poll")
    assert summary(success) == "LoginSuccess"
    emu.faults.inject("replay_success", path="AdvanceAuthentication")
    sq = mech(alice, 1, "SQ")
    replayed = advance(emu, alice["SessionId"], sq, "Answer", "wrong answer")
    assert replayed.json() == success.json()
    assert replayed.cookies[".ASPXAUTH"] == success.cookies[".ASPXAUTH"]
    assert emu.calls[-1].fault == "replay_success"
    # The wrong answer was never processed: alice's package is still alive.
    assert summary(advance(emu, alice["SessionId"], sq, "Answer", "Smokey")) == "LoginSuccess"


def test_the_old_name_of_user_mechanism_still_works_with_a_warning() -> None:
    """``Mechanism`` (the name the CyberArk replies' parsed mechanism also has) is a
    deprecated alias of UserMechanism for one release."""
    from mfa_fsm.testing import cyberark  # noqa: PLC0415

    with pytest.warns(DeprecationWarning, match=r"cyberark\.Mechanism is now UserMechanism"):
        old = cyberark.Mechanism
    assert old is UserMechanism
    with pytest.raises(AttributeError, match="no attribute 'Mechanisms'"):
        _ = cyberark.Mechanisms
