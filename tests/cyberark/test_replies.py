"""CyberArk replies deciphered from the vendor documents' own JSON examples (transcribed, ids
kept), without any network."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfa_fsm import HttpResponse, IdpError, IdpReplyError
from mfa_fsm.cyberark.replies import Reply, decipher, parse_reply
from mfa_fsm.testing.scripted import json_reply
from tests.support.cyberark_strategies import envelopes, mostly, retry_after_values, statuses

PATH = "/Security/AdvanceAuthentication"
GENERIC_FAILURE = (
    "Authentication (login or challenge) has failed. Please try again or contact your system "
    "administrator."
)

# The spec's mechanism examples ("Advance authentication", "Supported OOB mechanisms").
UP = {
    "Name": "UP",
    "AnswerType": "Text",
    "PromptMechChosen": "Enter Password",
    "PromptSelectMech": "Password",
    "MechanismId": "64Sn74WQXEaizC7mhZpeucoWNldHkc8z7vWc9XcIJLo1",
}
SQ = {
    "Name": "SQ",
    "AnswerType": "Text",
    "MultipartMechanism": {
        "PromptSelectMech": "Security Question",
        "MechanismParts": [
            {
                "Uuid": "u_a4ed8e81-8e9b-416b-bc00-44ed5bf87744",
                "QuestionText": "What is your cat's name?",
                "PromptMechChosen": "Answer security question 'What is your cat's name?':",
            }
        ],
    },
    "Question": "What is your cat's name?",
    "PromptMechChosen": "Answer security question 'What is your cat's name?':",
    "PromptSelectMech": "Security Question",
    "MechanismId": "UwGNuG9netHTOLrHFF91nO8zFBli_lVDl-0UF4Og4j01",
}
PF = {
    "Name": "PF",
    "AnswerType": "StartOob",
    "PartialPhoneNumber": "6789",
    "PromptMechChosen": "We will now attempt to call your phone (6789). Please follow the "
    "instructions to proceed with authentication.",
    "PromptSelectMech": "Phone Call... XXX-6789",
    "MechanismId": "QqvZbCxYSkyDTEICR-6H6f_mzaxlfotu2wQxnVejsOo1",
}
EMAIL = {
    "Name": "EMAIL",
    "MaskedEmailAddress": "***@cyberark.com",
    "AnswerType": "StartTextOob",
    "PromptMechChosen": "Email sent to xxxx@cyberark.com. Click the link or manually enter the "
    "code to authenticate.",
    "PromptSelectMech": "Email... @cyberark.com",
    "PartialAddress": "cyberark.com",
    "MechanismId": "RPcez9pD9AooKNT5UkEq7kozzer6e0BGn7GGzjDlQqc1",
}
SMS = {
    "Name": "SMS",
    "AnswerType": "StartTextOob",
    "PartialDeviceAddress": "6789",
    "PromptMechChosen": "Sending a text to mobile phone ending... 6789. Enter the code or click "
    "the link in the message to proceed with authentication.",
    "PromptSelectMech": "SMS... XXX-6789",
    "MechanismId": "1YhBw3Gg4Z2etR8RBQebQdTcpRCD-UVBv27xTVNmSDM1",
}
OATH = {
    "Name": "OATH",
    "AnswerType": "StartTextOob",
    "PromptMechChosen": "Enter Verification Code",
    "UiPrompt": "OATH OTP Client",
    "PromptSelectMech": "OATH OTP Client",
    "MechanismId": "DKetaPxIW0yn8e-jBi7fTUz0H8OdsCNCscUijVXUR6s1",
}
OTP = {
    "Name": "OTP",
    "AnswerType": "StartTextOob",
    "PromptMechChosen": "Sent Mobile Authenticator request to your device. Please follow the "
    "instructions to proceed with authentication or enter verification code here.",
    "PromptSelectMech": "Mobile Authenticator",
    "MechanismId": "rKgeXzVIKkKR5ERTUKhT7XuyaYS6LcLhpLkSythzHIA1",
}
U2F = {
    "Name": "U2F",
    "AnswerType": "StartTextOob",
    "PromptMechChosen": "Insert security key and press its button",
    "UiPrompt": "FIDO2 Security Key",
    "PromptSelectMech": "FIDO2 Security Key",
    "MechanismId": "xmbeXzVI8v15ERTUKh7TXuyaY133cLhpLkSythzHIA1",
    "Type": "SECURITYKEY",
}
QR = {
    "AnswerType": "StartOob",
    "Name": "QR",
    "PromptMechChosen": "Scan QR Code with the CyberArk Identity app on an enrolled device.",
    "PromptSelectMech": "QR Code",
    "MechanismId": "VuaMU...",
    "Image": "data:image/png;base64,iVBORw...",
}


def envelope(result: Any, *, success: bool = True, message: str | None = None) -> dict[str, Any]:
    """The response envelope of the spec's SecurityStartAuthentication schema."""
    return {
        "success": success,
        "Result": result,
        "Message": message,
        "MessageID": None,
        "Exception": None,
        "ErrorID": None,
        "ErrorCode": None,
        "IsSoftError": False,
        "InnerExceptions": None,
    }


def read(body: Any, status: int = 200) -> Reply:
    return parse_reply(decipher(json_reply(body, status), PATH))


def test_start_package_with_two_alternatives() -> None:
    """A NewPackage of one challenge offering UP or PF (the jetstack fixture's shape)."""
    reply = read(
        envelope(
            {
                "ClientHints": {
                    "PersistDefault": False,
                    "AllowPersist": True,
                    "AllowForgotPassword": False,
                    "EndpointAuthenticationEnabled": False,
                },
                "Version": "1.0",
                "SessionId": "1db90fe4-3b96-4c3e-a3c1-9a10fa7514c9-27f4e64e86ac08e8",
                "EventDescription": None,
                "RetryWaitingTime": 0,
                "SecurityImageName": None,
                "AllowLoginMfaCache": False,
                "Challenges": [{"Mechanisms": [{**UP, "Enrolled": True}, PF]}],
                "Summary": "NewPackage",
                "TenantId": "ABC1234",
            }
        )
    )
    assert reply.success and reply.summary == "NewPackage"
    assert reply.session_id == "1db90fe4-3b96-4c3e-a3c1-9a10fa7514c9-27f4e64e86ac08e8"
    assert reply.tenant_id == "ABC1234"
    assert not reply.is_redirect
    [[up, pf]] = reply.challenges
    assert (up.name, up.answer_type, up.label, up.prompt) == (
        "UP",
        "Text",
        "Password",
        "Enter Password",
    )
    assert (pf.name, pf.answer_type, pf.detail) == ("PF", "StartOob", "6789")
    assert "1db90fe4" not in repr(reply)


def test_every_documented_mechanism() -> None:
    """Each of the spec's mechanism examples reads with its answer type and partial address."""
    mechanisms = [UP, SQ, PF, EMAIL, SMS, OATH, OTP, U2F, QR]
    reply = read(envelope({"Challenges": [{"Mechanisms": mechanisms}], "Summary": "NewPackage"}))
    read_back = {m.name: m for m in reply.challenges[0]}
    assert {name: m.answer_type for name, m in read_back.items()} == {
        m["Name"]: m["AnswerType"] for m in mechanisms
    }
    assert read_back["EMAIL"].detail == "***@cyberark.com"
    assert read_back["SMS"].detail == "6789"
    assert read_back["SQ"].questions == ("What is your cat's name?",)
    assert read_back["SQ"].part_ids == ("u_a4ed8e81-8e9b-416b-bc00-44ed5bf87744",)
    assert read_back["QR"].image == "data:image/png;base64,iVBORw..."
    assert read_back["OATH"].detail is None
    assert all(m.enrolled for m in read_back.values())


def test_old_style_question_without_parts() -> None:
    """A security question given only as ``Question`` (no MechanismParts) is still shown."""
    mechanism = {key: value for key, value in SQ.items() if key != "MultipartMechanism"}
    reply = read(envelope({"Challenges": [{"Mechanisms": [mechanism]}], "Summary": "NewPackage"}))
    assert reply.challenges[0][0].questions == ("What is your cat's name?",)
    assert reply.challenges[0][0].part_ids == ()


def test_oob_pending_from_the_seed_document() -> None:
    """StartOOB's answer, as the Centrify guide shows it, with and without number matching."""
    assert read(envelope({"Summary": "OobPending"})).summary == "OobPending"
    reply = read(envelope({"Summary": "OobPending", "GeneratedAuthValue": 42}))
    assert reply.generated_auth_value == "42"


def test_login_success() -> None:
    """LoginSuccess carries the SecurityAdvanceAuthentication fields; tokens stay out of repr."""
    reply = read(
        envelope(
            {
                "AuthLevel": "Normal",
                "DisplayName": "Test User",
                "Token": "eyJhbGciOiJSUzI1NiJ9.platform.token",
                "Auth": "11BA426199A9092FBF36746C5DB361934A9B0E3E6",
                "UserId": "c2c7bcc6-9560-44e0-8dff-5be221cd37ee",
                "EmailAddress": "test@example.com",
                "UserDirectory": "CDS",
                "PodFqdn": "xxx0000.id.integration-cyberark.cloud",
                "User": "test@example.com",
                "CustomerID": "XXX0000",
                "SystemID": "XXX0000",
                "SourceDsType": "CDS",
                "Summary": "LoginSuccess",
            }
        )
    )
    assert reply.login is not None
    assert reply.login.user_id == "c2c7bcc6-9560-44e0-8dff-5be221cd37ee"
    assert reply.login.display_name == "Test User"
    assert reply.login.token == "eyJhbGciOiJSUzI1NiJ9.platform.token"
    assert reply.login.pod_fqdn == "xxx0000.id.integration-cyberark.cloud"
    assert not reply.is_redirect  # a login names its pod too
    assert "11BA4261" not in repr(reply) and "platform.token" not in repr(reply)


# The CyberArk/Delinea platform form of LoginSuccess, in the shape of a captured browser
# login (values replaced): the token only in OAuthTokens; no Token, no Auth, no .ASPXAUTH.
OAUTH_LOGIN_SUCCESS = json.loads(
    """
    {"success": true,
     "Result": {"AuthLevel": "Normal", "DisplayName": "Test User",
                "UserId": "c2c7bcc6-9560-44e0-8dff-5be221cd37ee",
                "EmailAddress": "test@example.com", "UserDirectory": "CDS",
                "PodFqdn": "example.delinea.app/identity", "User": "test@example.com",
                "CustomerID": "XXX0000", "SystemID": "XXX0000", "SourceDsType": "CDS",
                "Summary": "LoginSuccess",
                "OAuthTokens": {"access_token": "eyJhbGciOiJSUzI1NiJ9.oauth-access.sig",
                                "refresh_token": "oauth-refresh-0f2c4e6a8b",
                                "id_token": "eyJhbGciOiJSUzI1NiJ9.oauth-id.sig",
                                "token_type": "Bearer", "expires_in": 3615,
                                "session_expires_in": 43200, "scope": "xpmInteractive"}},
     "Message": null, "MessageID": null, "Exception": null, "ErrorID": null,
     "ErrorCode": null, "IsSoftError": false, "InnerExceptions": null}
    """
)


def test_login_success_with_only_oauth_tokens() -> None:
    """The platform form: token from OAuthTokens.access_token, lifetime from expires_in."""
    reply = read(OAUTH_LOGIN_SUCCESS)
    assert reply.login is not None
    assert reply.login.token == "eyJhbGciOiJSUzI1NiJ9.oauth-access.sig"
    assert reply.login.auth is None
    assert reply.login.token_lifetime == 3615
    assert reply.login.user == "test@example.com"
    assert "oauth-access" not in repr(reply) and "oauth-access" not in repr(reply.login)


def test_classic_token_fields_win_over_oauth_tokens() -> None:
    body = json.loads(json.dumps(OAUTH_LOGIN_SUCCESS))
    body["Result"] |= {"Token": "classic.jwt.token", "TokenLifetime": 60}
    login = read(body).login
    assert login is not None and login.token == "classic.jwt.token"
    assert login.token_lifetime == 60


@pytest.mark.parametrize(
    "tokens",
    [
        {"access_token": 42},
        {"access_token": "x", "expires_in": "soon"},
        {"access_token": "x", "expires_in": -1},
        {"access_token": "x", "expires_in": math.inf},
        "not an object",
    ],
)
def test_malformed_oauth_tokens_are_refused(tokens: Any) -> None:
    body = json.loads(json.dumps(OAUTH_LOGIN_SUCCESS))
    body["Result"]["OAuthTokens"] = tokens
    with pytest.raises(IdpReplyError):
        read(body)


def test_generic_failure() -> None:
    """The spec's failure example: success false, Summary Failure; not a refused request."""
    reply = read(envelope({"Summary": "Failure"}, success=False, message=GENERIC_FAILURE))
    assert not reply.success and reply.summary == "Failure"
    assert not reply.request_refused


def test_refused_request_has_no_result() -> None:
    """success false with Result null is the service refusing the request itself."""
    body = envelope(None, success=False, message="Missing required parameter: SessionId.")
    body["ErrorID"] = "8f7ab3a2-27b1-4b1b-8f4e-3c1cf2a9e0b1:4a0c0f6e2d3b9a11"
    reply = read(body)
    assert reply.request_refused and reply.error_id is not None


def test_pod_redirect() -> None:
    """A StartAuthentication that only names a pod is a redirect."""
    reply = read(envelope({"PodFqdn": "aaa0001.my.idaptive.app"}))
    assert reply.is_redirect and reply.pod_fqdn == "aaa0001.my.idaptive.app"


def test_federated_user() -> None:
    """A reply with IdpRedirectUrl marks a federated user."""
    assert read(envelope({"IdpRedirectUrl": "https://idp.example/sso"})).federated


def test_cookies_are_not_parsed_from_the_body() -> None:
    """Cookies come from the HTTP reply (the client adds them), never from the JSON."""
    assert read(envelope({"Summary": "OobPending"})).cookies == {}


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Unexpected</body></html>",
        b"",
        b"{not json",
        json.dumps([1, 2]).encode(),
        json.dumps({"Result": {"Summary": "OobPending"}}).encode(),
        json.dumps({"success": "true"}).encode(),
        json.dumps({"success": True, "Result": "LoginSuccess"}).encode(),
        json.dumps({"success": True, "Result": {"Summary": 3}}).encode(),
        json.dumps({"success": True, "Result": {"Challenges": [{"Mechanisms": []}]}}).encode(),
        json.dumps(
            {"success": True, "Result": {"Challenges": [{"Mechanisms": [{"Name": "UP"}]}]}}
        ).encode(),
    ],
    ids=[
        "html",
        "empty",
        "not-json",
        "array",
        "no-success",
        "success-string",
        "result-string",
        "summary-number",
        "empty-challenge",
        "mechanism-without-id",
    ],
)
def test_unreadable_replies(body: bytes) -> None:
    """Anything but the documented envelope is an IdpReplyError."""
    with pytest.raises(IdpReplyError):
        read_raw(HttpResponse(200, {"Content-Type": "application/json"}, body))


def read_raw(response: HttpResponse) -> Reply:
    return parse_reply(decipher(response, PATH))


@pytest.mark.parametrize(("status", "retry_after"), [(429, "5"), (503, None), (500, None)])
def test_throttled_or_unavailable(status: int, retry_after: str | None) -> None:
    """HTTP 429 and 5xx are transient IdpErrors, with the IdP's Retry-After when given."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    response = HttpResponse(status, headers, b"Service Unavailable")
    with pytest.raises(IdpError) as caught:
        read_raw(response)
    assert caught.value.transient and caught.value.status == status
    assert caught.value.retry_after == (float(retry_after) if retry_after else None)


def test_other_http_errors() -> None:
    """Another non-2xx status with a JSON body is an IdpError carrying status and code."""
    with pytest.raises(IdpError) as caught:
        read(envelope(None, success=False) | {"ErrorCode": "E42"}, status=404)
    assert (caught.value.status, caught.value.error_code) == (404, "E42")
    assert not caught.value.transient


def test_token_lifetime_must_be_seconds() -> None:
    """A TokenLifetime that is NaN, infinite or negative is IdpReplyError, never a lifetime."""
    for bad in (b"NaN", b"Infinity", b"-1"):
        body = b'{"success": true, "Result": {"Summary": "LoginSuccess", "Token": "t", '
        body += b'"TokenLifetime": ' + bad + b"}}"
        with pytest.raises(IdpReplyError, match="TokenLifetime"):
            read_raw(HttpResponse(200, {}, body))
    login = read(envelope({"Summary": "LoginSuccess", "TokenLifetime": 3600})).login
    assert login is not None and login.token_lifetime == 3600.0


# -- fuzzing: any reply is a Reply or an IdpError, nothing else --------------------------


def check(response: HttpResponse) -> None:
    """The reply parses into a Reply whose numbers are numbers, or raises an IdpError."""
    try:
        reply = parse_reply(decipher(response, PATH))
    except IdpError:
        return
    assert isinstance(reply.success, bool)
    for challenge in reply.challenges:
        assert challenge and all(m.id and m.name and m.answer_type for m in challenge)
    if reply.login is not None and reply.login.token_lifetime is not None:
        assert math.isfinite(reply.login.token_lifetime) and reply.login.token_lifetime >= 0


@settings(max_examples=300)
@given(body=st.binary(max_size=300), status=statuses, retry_after=retry_after_values)
def test_arbitrary_bytes_raise_only_idp_errors(
    body: bytes, status: int, retry_after: str | None
) -> None:
    """Any bytes, with any status and Retry-After, parse or raise an IdpError."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    check(HttpResponse(status, headers, body))


@settings(max_examples=500)
@given(data=mostly(envelopes), status=statuses)
def test_arbitrary_json_raises_only_idp_errors(data: Any, status: int) -> None:
    """Any JSON, including the documented keys with values of any type, parses into a
    well-formed Reply or raises an IdpError."""
    check(HttpResponse(status, {}, json.dumps(data).encode()))


# -- the IdP fields that decide behaviour, each pinned -----------------------------------


def _package_with(mechanism: dict[str, Any]) -> Reply:
    return read(
        envelope(
            {"Summary": "NewPackage", "SessionId": "s", "Challenges": [{"Mechanisms": [mechanism]}]}
        )
    )


@pytest.mark.parametrize(("enrolled", "expected"), [(True, True), (False, False), (None, True)])
def test_enrolled_decides_whether_a_mechanism_is_usable(enrolled: Any, expected: bool) -> None:
    """Enrolled false marks a mechanism unusable; absent, the spec's default is enrolled."""
    mechanism = dict(PF) if enrolled is None else {**PF, "Enrolled": enrolled}
    assert _package_with(mechanism).challenges[0][0].enrolled is expected


def test_enrolled_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(IdpReplyError):
        _package_with({**PF, "Enrolled": "yes"})


def test_a_security_question_without_its_id_or_text_is_refused() -> None:
    for broken in ({"QuestionText": "Pet?"}, {"Uuid": "u_1"}, {"Uuid": "", "QuestionText": "x"}):
        mechanism = {**SQ, "MultipartMechanism": {"MechanismParts": [broken]}}
        with pytest.raises(IdpReplyError, match="security question lacks its Uuid or text"):
            _package_with(mechanism)


def test_a_mechanism_without_id_name_or_answer_type_is_refused() -> None:
    for key in ("MechanismId", "Name", "AnswerType"):
        with pytest.raises(IdpReplyError, match="lacks its MechanismId, Name or AnswerType"):
            _package_with({k: v for k, v in UP.items() if k != key})


def test_a_challenge_without_mechanisms_is_refused() -> None:
    body = envelope({"Summary": "NewPackage", "SessionId": "s", "Challenges": [{"Mechanisms": []}]})
    with pytest.raises(IdpReplyError, match="offers no mechanism"):
        read(body)


@pytest.mark.parametrize(("code", "expected"), [("E42", "E42"), (42, "42"), (None, None)])
def test_the_envelope_error_code_and_id_are_kept(code: Any, expected: str | None) -> None:
    body = envelope({"Summary": "Failure"}, success=False, message=GENERIC_FAILURE)
    body |= {"ErrorCode": code, "ErrorID": "8f7a:4a0c"}
    reply = read(body)
    assert (reply.error_code, reply.error_id) == (expected, "8f7a:4a0c")
    refused = read(envelope(None, success=False) | {"ErrorCode": code})
    assert refused.request_refused and refused.error_code == expected


def test_a_question_comes_from_question_when_there_are_no_parts() -> None:
    mechanism = {k: v for k, v in SQ.items() if k != "MultipartMechanism"}
    got = _package_with(mechanism).challenges[0][0]
    assert (got.questions, got.part_ids) == (("What is your cat's name?",), ())


def test_detail_label_prompt_and_image_come_from_their_fields() -> None:
    got = _package_with(PF).challenges[0][0]
    assert (got.detail, got.label) == ("6789", "Phone Call... XXX-6789")
    assert got.prompt.startswith("We will now attempt to call")
    bare = _package_with(
        {
            "Name": "QR",
            "AnswerType": "StartOob",
            "MechanismId": "m1",
            "Image": "data:image/png;base64,AAAA",
        }
    ).challenges[0][0]
    assert (bare.label, bare.prompt, bare.image) == ("QR", "QR", "data:image/png;base64,AAAA")
    assert _package_with({**PF, "Image": "data:x"}).challenges[0][0].image is None  # QR only


def test_a_redirect_is_only_a_reply_with_nothing_but_pod_fqdn() -> None:
    assert read(envelope({"PodFqdn": "pod.example"})).is_redirect
    assert not read(envelope({"PodFqdn": "pod.example", "SessionId": "s"})).is_redirect
    assert not read(envelope({"PodFqdn": ""})).is_redirect
    assert not read(envelope({"PodFqdn": "p"}, success=False)).is_redirect


@pytest.mark.parametrize("status", [199, 300, 302, 304, 399, 400, 404])
def test_only_2xx_is_success(status: int) -> None:
    """A redirect (3xx) is not a reply of the API: refused like any non-2xx status."""
    with pytest.raises(IdpError) as caught:
        read(envelope({"Summary": "NewPackage"}), status=status)
    assert caught.value.status == status and not caught.value.transient


@pytest.mark.parametrize("status", [200, 201, 299])
def test_every_2xx_is_read(status: int) -> None:
    assert read(envelope({"Summary": "StartNextChallenge"}), status=status).success


def test_login_user_auth_email_and_client_message_are_read() -> None:
    body = envelope(
        {
            "Summary": "LoginSuccess",
            "Auth": "A1",
            "User": "u@example.com",
            "EmailAddress": "e@example.com",
        }
    )
    login = read(body).login
    assert login is not None
    assert (login.auth, login.user, login.email, login.token) == (
        "A1",
        "u@example.com",
        "e@example.com",
        None,
    )
    assert read(envelope({"Summary": "LoginSuccess", "Auth": ""})).login.auth is None  # type: ignore[union-attr]
    done = read(envelope({"Summary": "NoncommitalSuccess", "ClientMessage": "Reset."}))
    assert done.client_message == "Reset." and done.login is None


@pytest.mark.parametrize(("seconds", "ok"), [(0, True), (0.5, True), (3600, True), (-0.5, False)])
def test_a_zero_or_fractional_token_lifetime_is_a_lifetime(seconds: float, ok: bool) -> None:
    body = envelope({"Summary": "LoginSuccess", "Token": "t", "TokenLifetime": seconds})
    if ok:
        assert read(body).login.token_lifetime == seconds  # type: ignore[union-attr]
    else:
        with pytest.raises(IdpReplyError, match="TokenLifetime is not a number of seconds"):
            read(body)


def test_a_boolean_error_code_is_not_a_number() -> None:
    with pytest.raises(IdpReplyError):
        read(envelope(None, success=False) | {"ErrorCode": True})


def test_refusals_name_the_path_and_status() -> None:
    with pytest.raises(IdpError) as refused:
        read(envelope(None, success=False) | {"ErrorCode": 42}, status=404)
    assert (refused.value.path, refused.value.status, refused.value.error_code) == (PATH, 404, None)
    assert str(refused.value) == f"the IdP refused {PATH} (HTTP 404); check the base URL and tenant"
    with pytest.raises(IdpReplyError) as no_flag:
        read({"Result": None})
    assert (no_flag.value.path, no_flag.value.status) == (PATH, 200)
    assert "has no 'success' flag; is the base URL a CyberArk Identity tenant?" in str(
        no_flag.value
    )
    with pytest.raises(IdpReplyError) as empty:
        read(envelope({"Summary": "NewPackage", "Challenges": [{"Mechanisms": []}]}))
    assert empty.value.path == PATH


def test_malformed_packages_are_refused_naming_the_path() -> None:
    """Each refusal names the endpoint's path, and says exactly what is missing."""
    cases = [
        ({"Challenges": [{"Mechanisms": []}]}, "a challenge offers no mechanism"),
        (
            {"Challenges": [{"Mechanisms": [{"Name": "UP"}]}]},
            "a mechanism lacks its MechanismId, Name or AnswerType",
        ),
        (
            {
                "Challenges": [
                    {
                        "Mechanisms": [
                            {
                                **SQ,
                                "MultipartMechanism": {
                                    "MechanismParts": [{"QuestionText": "Pet?"}]
                                },
                            }
                        ]
                    }
                ]
            },
            "a security question lacks its Uuid or text",
        ),
        (
            {"Summary": "LoginSuccess", "TokenLifetime": -1},
            "the IdP's TokenLifetime is not a number of seconds",
        ),
    ]
    for result, message in cases:
        with pytest.raises(IdpReplyError) as caught:
            read(envelope({"Summary": "NewPackage", "SessionId": "s", **result}))
        assert caught.value.path == PATH
        assert str(caught.value) == message


def test_wrong_types_in_the_envelope_name_the_envelope_and_path() -> None:
    with pytest.raises(IdpReplyError) as caught:
        read(envelope(None) | {"ErrorID": 5})
    assert caught.value.path == PATH
    assert str(caught.value) == f"the IdP's envelope from {PATH} has a malformed 'ErrorID'"
    with pytest.raises(IdpError) as busy:
        read(envelope(None), status=503)
    assert busy.value.path == PATH and busy.value.transient
    junk = HttpResponse(200, {"Content-Type": "text/html"}, b"<html></html>")
    with pytest.raises(IdpReplyError) as unreadable:
        parse_reply(decipher(junk, PATH))
    assert unreadable.value.path == PATH
