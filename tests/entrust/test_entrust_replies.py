"""Entrust reply parsing, a pure function: the vendor's own example bodies, and fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfa_fsm import HttpResponse, IdpError, IdpReplyError
from mfa_fsm.entrust.replies import decipher, parse_authenticated, parse_query

PATH = "/api/web/v1/authentication/users/authenticate/OTP/complete"

# Bodies as Entrust's Authentication API guide shows them (tokens shortened).
GUIDE_QUERY = {
    "availableSecondFactor": ["TOKENPUSH", "TOKEN", "OTP"],
    "userMachineSettings": {
        "machineAuthenticatorEnabled": True,
        "deviceFingerprintRequired": False,
        "attributeExclusions": [],
        "userMachineAuthenticators": [],
    },
    "machineAuthenticator": None,
    "authenticationTypes": ["EXTERNAL"],
    "time": 1521647783740,
    "otpDeliveryInfo": {
        "otpDefaultDelivery": "SMS",
        "availableOTPDelivery": ["SMS", "EMAIL", "VOICE"],
    },
}
GUIDE_COMPLETED = {
    "status": None,
    "firstName": "John",
    "lastName": "Smith",
    "authenticationCompleted": True,
    "machineAuthenticator": None,
    "userMachineSettings": None,
    "kbaChallenge": None,
    "token": "GENw36RGssBDAmU8UgULDBFGp2cG6aWDO0dWUQU24QyAIDo2KFzfr62M",
    "expires": 1521648936739,
    "otpdeliveryType": None,
    "time": 1521648223398,
}
GUIDE_PENDING = {
    "status": "NO_RESPONSE",
    "authenticationCompleted": False,
    "token": None,
    "expires": 0,
    "time": 1521648184761,
}
GUIDE_CONFIRM = {**GUIDE_COMPLETED, "status": "CONFIRM"}
GUIDE_WRONG = {"errorCode": "invalid_user_response", "errorMessage": "", "parameters": None}
GUIDE_CANCELLED = {"errorCode": "no_transaction", "errorMessage": "", "parameters": None}


def reply(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def test_query_from_the_guide() -> None:
    """The guide's query reply gives first and second factors and OTP deliveries."""
    query = parse_query(decipher(reply(GUIDE_QUERY), PATH))
    assert query.authentication_types == ("EXTERNAL",)
    assert query.second_factors == ("TOKENPUSH", "TOKEN", "OTP")
    assert query.otp_default_delivery == "SMS"
    assert query.otp_deliveries == ("SMS", "EMAIL", "VOICE")
    assert query.token is None
    assert not query.completed


def test_query_lockout_status() -> None:
    """authenticatorLockoutStatus gives attempts left and locked authenticators."""
    body = {
        **GUIDE_QUERY,
        "authenticatorLockoutStatus": [
            {"type": "OTP", "locked": False, "remainingAuthenticationAttempts": 3},
            {"type": "TOKEN", "locked": True, "remainingAuthenticationAttempts": 0},
            {"locked": True},
        ],
    }
    query = parse_query(decipher(reply(body), PATH))
    assert query.remaining_attempts == {"OTP": 3, "TOKEN": 0}
    assert query.locked == frozenset({"TOKEN"})


def test_completed_from_the_guide() -> None:
    """The guide's final reply: completed, the new token, the user's name, expiry in seconds."""
    done = parse_authenticated(decipher(reply(GUIDE_COMPLETED), PATH))
    assert done.completed
    assert done.token == GUIDE_COMPLETED["token"]
    assert done.display_name == "John Smith"
    assert done.expires_at == 1521648936.739


def test_pending_push_from_the_guide() -> None:
    """A pending push: NO_RESPONSE, no token, no expiry."""
    pending = parse_authenticated(decipher(reply(GUIDE_PENDING), PATH))
    assert (pending.status, pending.token, pending.expires_at) == ("NO_RESPONSE", None, None)
    assert not pending.completed
    assert parse_authenticated(decipher(reply(GUIDE_CONFIRM), PATH)).status == "CONFIRM"


@pytest.mark.parametrize(
    ("body", "code"), [(GUIDE_WRONG, "invalid_user_response"), (GUIDE_CANCELLED, "no_transaction")]
)
def test_error_info_from_the_guide(body: dict[str, Any], code: str) -> None:
    """ErrorInfo bodies become IdpError carrying the errorCode, not the errorMessage."""
    with pytest.raises(IdpError) as info:
        decipher(reply({**body, "errorMessage": "you typed 123456"}, 400), PATH)
    assert info.value.error_code == code
    assert info.value.status == 400
    assert "123456" not in str(info.value)


def test_challenges_are_read() -> None:
    """KBA questions, grid cells (A1-style), mutual challenge and TOKENCR challenge are read."""
    body = {
        "authenticationCompleted": False,
        "token": "T",
        "kbaChallenge": {"id": "k1", "userQuestions": [{"id": "q1", "question": "Pet?"}]},
        "gridChallenge": {"challenge": [{"row": 0, "column": 0}, {"row": 4, "column": 2}]},
        "tokenPushMutualChallenge": "42",
        "tokenChallenge": {"challenge": "918273"},
        "otpDeliveryType": "EMAIL",
        "someFutureField": {"nested": [1, 2]},
    }
    parsed = parse_authenticated(decipher(reply(body), PATH))
    assert parsed.kba_id == "k1"
    assert parsed.kba_questions == (("q1", "Pet?"),)
    assert parsed.grid_cells == ("A1", "C5")
    assert parsed.mutual_challenge == "42"
    assert parsed.token_challenge == "918273"
    assert parsed.delivery == "EMAIL"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
REPLY_KEYS = (
    "authenticationCompleted",
    "token",
    "expires",
    "status",
    "kbaChallenge",
    "gridChallenge",
    "authenticationTypes",
    "availableSecondFactor",
    "otpDeliveryInfo",
    "authenticatorLockoutStatus",
    "errorCode",
    "tokenChallenge",
    "firstName",
)
shaped = st.fixed_dictionaries({}, optional=dict.fromkeys(REPLY_KEYS, json_values))


@given(
    body=st.binary(max_size=200), status=st.sampled_from([200, 201, 400, 401, 403, 404, 429, 500])
)
def test_arbitrary_bytes_raise_only_typed_errors(body: bytes, status: int) -> None:
    """Any bytes with any status parse or raise an IdpError, never anything else."""
    try:
        fields = decipher(HttpResponse(status, {}, body), PATH)
        parse_authenticated(fields)
        parse_query(fields)
    except IdpError:
        pass


@settings(max_examples=500)
@given(data=json_values | shaped, status=st.sampled_from([200, 400, 403]))
def test_arbitrary_json_raises_only_typed_errors(data: Any, status: int) -> None:
    """Any JSON, including the right keys with wrong values, parses or raises IdpError."""
    try:
        fields = decipher(reply(data, status), PATH)
        parse_authenticated(fields)
        parse_query(fields)
    except IdpError:
        pass


@pytest.mark.parametrize(
    "cell", [{"row": -1, "column": 0}, {"row": 0, "column": 1e20}, {"row": 0.5, "column": 1}]
)
def test_grid_cells_out_of_range_are_reply_errors(cell: dict[str, float]) -> None:
    """Grid cells must be whole, non-negative and on the card."""
    with pytest.raises(IdpReplyError):
        parse_authenticated(decipher(reply({"gridChallenge": {"challenge": [cell]}}), PATH))


def test_infinite_attempts_are_a_reply_error() -> None:
    """A remaining-attempts count that is not a whole number is refused."""
    body = {
        "authenticatorLockoutStatus": [{"type": "OTP", "remainingAuthenticationAttempts": 1e999}]
    }
    with pytest.raises(IdpReplyError):
        parse_query(decipher(HttpResponse(200, {}, json.dumps(body).encode()), PATH))


def test_non_object_json_is_a_reply_error() -> None:
    """A JSON list where an object belongs is IdpReplyError."""
    with pytest.raises(IdpReplyError):
        decipher(reply([1, 2]), PATH)


# -- the IdP fields that decide behaviour, each pinned -----------------------------------


@pytest.mark.parametrize(
    ("expires", "time", "want"),
    [
        (1_800_000_000_500, 1_799_999_000_250, (1_800_000_000.5, 1_799_999_000.25)),
        (0, 0, (None, None)),  # 0: no expiry given (pending push replies)
        (None, None, (None, None)),
    ],
)
def test_query_expires_and_time_are_epoch_milliseconds(
    expires: Any, time: Any, want: tuple[Any, Any]
) -> None:
    """The query's token expiry and the IdP's clock, in epoch ms on the wire, seconds here."""
    body = {"authenticationTypes": ["OTP"], "token": "t", "expires": expires, "time": time}
    got = parse_query(decipher(reply(body), "/q"))
    assert (got.expires_at, got.time) == want


@pytest.mark.parametrize("field", ["expires", "time"])
def test_query_expires_and_time_of_the_wrong_type_are_refused(field: str) -> None:
    with pytest.raises(IdpReplyError):
        parse_query(decipher(reply({"authenticationTypes": ["OTP"], field: "soon"}), "/q"))


def test_authenticated_time_is_epoch_milliseconds() -> None:
    got = parse_authenticated(decipher(reply({"token": "t", "time": 1_500}), "/a"))
    assert got.time == 1.5


@pytest.mark.parametrize("status", [199, 300, 302, 304, 399])
def test_only_2xx_is_success(status: int) -> None:
    """A redirect (3xx) is not a reply of the API: refused like any non-2xx status."""
    with pytest.raises(IdpError) as caught:
        decipher(reply({"authenticationTypes": ["OTP"]}, status), "/q")
    assert caught.value.status == status and not caught.value.transient


@pytest.mark.parametrize("status", [200, 201, 299])
def test_every_2xx_is_read(status: int) -> None:
    assert decipher(reply({"token": "t"}, status), "/q").text("token") == "t"


def test_query_token_and_completion_are_read() -> None:
    body = {"authenticationTypes": ["OTP"], "token": "tok", "authenticationCompleted": True}
    got = parse_query(decipher(reply(body), "/q"))
    assert (got.token, got.completed) == ("tok", True)
    bare = parse_query(decipher(reply({"authenticationTypes": ["OTP"]}), "/q"))
    assert (bare.token, bare.completed) == (None, False)


def test_authenticated_fields_that_decide_behaviour() -> None:
    body = {
        "authenticationCompleted": True,
        "token": "tok",
        "expires": 2_000,
        "userId": "jsmith",
        "pushMutualChallenge": "42",
        "otpdeliveryType": "SMS",
    }
    got = parse_authenticated(decipher(reply(body), "/a"))
    assert (got.completed, got.token, got.expires_at) == (True, "tok", 2.0)
    assert (got.user_id, got.mutual_challenge, got.delivery) == ("jsmith", "42", "SMS")
    other = parse_authenticated(decipher(reply({"otpDeliveryType": "VOICE"}), "/a"))
    assert (other.delivery, other.completed, other.user_id) == ("VOICE", False, None)
    token_push = parse_authenticated(decipher(reply({"tokenPushMutualChallenge": "7"}), "/a"))
    assert token_push.mutual_challenge == "7"


def test_kba_questions_keep_their_ids_and_need_text() -> None:
    body = {"kbaChallenge": {"id": "k1", "userQuestions": [{"question": "Pet?"}]}}
    got = parse_authenticated(decipher(reply(body), "/a"))
    assert (got.kba_id, got.kba_questions) == ("k1", (("", "Pet?"),))
    body = {"kbaChallenge": {"userQuestions": [{"id": "q1"}]}}
    with pytest.raises(IdpReplyError, match="a KBA question has no text") as caught:
        parse_authenticated(decipher(reply(body), "/a"))
    assert caught.value.path == "/a"


@pytest.mark.parametrize(
    ("cell", "shown"),
    [({"row": 0, "column": 0}, "A1"), ({"row": 99, "column": 25}, "Z100")],
)
def test_grid_cells_at_the_edges_of_the_card(cell: dict[str, int], shown: str) -> None:
    got = parse_authenticated(decipher(reply({"gridChallenge": {"challenge": [cell]}}), "/a"))
    assert got.grid_cells == (shown,)


@pytest.mark.parametrize(
    "cell", [{"row": 100, "column": 0}, {"row": 0, "column": 26}, {"row": 1}, {"column": 1}]
)
def test_grid_cells_off_the_card_are_refused(cell: dict[str, int]) -> None:
    with pytest.raises(IdpReplyError) as caught:
        parse_authenticated(decipher(reply({"gridChallenge": {"challenge": [cell]}}), "/a"))
    assert caught.value.path == "/a"


def test_refusals_name_the_path_and_status() -> None:
    with pytest.raises(IdpError) as coded:
        decipher(reply({"errorCode": "user_not_found"}, 404), "/users")
    assert (coded.value.path, coded.value.status, coded.value.error_code) == (
        "/users",
        404,
        "user_not_found",
    )
    assert str(coded.value) == "the IdP refused /users (HTTP 404, user_not_found)"
    with pytest.raises(IdpReplyError) as bare:
        decipher(reply({"nothing": True}, 400), "/users")
    assert (bare.value.path, bare.value.status) == ("/users", 400)
    assert "without an ErrorInfo body" in str(bare.value)
    with pytest.raises(IdpReplyError) as wrong:
        decipher(reply({"errorCode": 5}, 400), "/users")
    assert "ErrorInfo" in str(wrong.value) and wrong.value.path == "/users"


def test_transient_and_unreadable_replies_name_the_path() -> None:
    with pytest.raises(IdpError) as busy:
        decipher(reply({"errorCode": "busy"}, 503), "/users")
    assert (busy.value.path, busy.value.transient) == ("/users", True)
    junk = HttpResponse(200, {"Content-Type": "text/html"}, b"<html></html>")
    with pytest.raises(IdpReplyError) as unreadable:
        decipher(junk, "/users")
    assert unreadable.value.path == "/users"


def test_a_lockout_status_without_a_type_is_skipped_not_the_end() -> None:
    body = {
        "authenticationTypes": ["OTP"],
        "authenticatorLockoutStatus": [
            {"locked": True},
            {"type": "OTP", "remainingAuthenticationAttempts": 2, "locked": True},
        ],
    }
    got = parse_query(decipher(reply(body), "/q"))
    assert (got.remaining_attempts, got.locked) == ({"OTP": 2}, frozenset({"OTP"}))


def test_a_grid_cell_without_row_or_column_says_so() -> None:
    with pytest.raises(IdpReplyError, match=r"^a grid challenge cell has no row or column$"):
        parse_authenticated(decipher(reply({"gridChallenge": {"challenge": [{"row": 1}]}}), "/a"))


@pytest.mark.parametrize("token", ["tok\u00e9n", "tok\u20acn", "tok\nen", " "])
def test_a_token_that_could_not_go_back_in_a_header_is_a_reply_error(token: str) -> None:
    """IDaaS's token is sent back as Authorization: one that is not visible ASCII (RFC 9110
    section 5.5) is refused when the reply is read, not when the next call fails."""
    body = json.dumps({"authenticationCompleted": False, "token": token}).encode()
    response = HttpResponse(200, {"Content-Type": "application/json"}, body)
    with pytest.raises(IdpReplyError, match="malformed 'token'"):
        parse_authenticated(decipher(response, "/x"))
