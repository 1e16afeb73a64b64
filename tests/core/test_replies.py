"""Pure reply helpers shared by the providers: JSON bodies, transient errors, typed fields."""

from __future__ import annotations

import pytest

from mfa_fsm import HttpResponse, IdpError, IdpReplyError
from mfa_fsm.core.replies import MAX_RETRY_AFTER, Fields, json_body, refuse_transient, retry_after


def response(status: int = 200, body: bytes = b"{}", **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("0", 0.0), ("99999", MAX_RETRY_AFTER), ("soon", None), (" 3 ", 3.0)],
)
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    """Retry-After in seconds is read, capped, and garbage ignored."""
    assert retry_after(response(429, **{"Retry-After": value})) == expected


def test_retry_after_http_date() -> None:
    """Retry-After as an HTTP date is the time left until then."""
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    reply = response(503, **{"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"})
    assert retry_after(reply, now=now) == pytest.approx(10.0)


def test_no_retry_after() -> None:
    """Without the header there is no advice."""
    assert retry_after(response(429)) is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    """429 and 5xx raise a transient IdpError."""
    with pytest.raises(IdpError) as info:
        refuse_transient(response(status, b""), "/p")
    assert info.value.transient
    assert info.value.status == status


@pytest.mark.parametrize("status", [200, 400, 401, 404])
def test_other_statuses_pass(status: int) -> None:
    """Other statuses are left to the provider's parser."""
    refuse_transient(response(status), "/p")


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty"), (b"  \n", "empty"), (b"<html>", "HTML"), (b"{oops", "not JSON")],
)
def test_unreadable_bodies(body: bytes, message: str) -> None:
    """Empty, HTML and non-JSON bodies raise IdpReplyError saying which."""
    with pytest.raises(IdpReplyError, match=message):
        json_body(response(200, body), "/p")


def test_fields_read_types_and_defaults() -> None:
    """Fields reads typed values; missing and null read as defaults."""
    fields = Fields(
        {"a": "x", "b": True, "n": 3, "l": ["p", "q"], "o": [{"k": "v"}], "c": {"z": None}},
        "/p",
    )
    assert fields.text("a") == "x"
    assert fields.text("missing") is None
    assert fields.flag("b") is True
    assert fields.flag("missing") is False
    assert fields.number("n") == 3.0
    assert fields.texts("l") == ("p", "q")
    assert fields.texts("missing") == ()
    assert [o.text("k") for o in fields.objects("o")] == ["v"]
    child = fields.child("c")
    assert child is not None and child.text("z") is None
    assert fields.child("missing") is None


@pytest.mark.parametrize(
    ("data", "read"),
    [
        ({"a": 1}, lambda f: f.text("a")),
        ({"a": "yes"}, lambda f: f.flag("a")),
        ({"a": True}, lambda f: f.number("a")),
        ({"a": "3"}, lambda f: f.number("a")),
        ({"a": [1]}, lambda f: f.texts("a")),
        ({"a": "x"}, lambda f: f.objects("a")),
        ({"a": ["x"]}, lambda f: f.objects("a")),
        ({"a": 5}, lambda f: f.child("a")),
    ],
)
def test_fields_refuse_wrong_types(data: dict[str, object], read: object) -> None:
    """A value of the wrong type is an IdpReplyError naming the field."""
    with pytest.raises(IdpReplyError, match=r"malformed 'a'|reply\.a"):
        read(Fields(data, "/p"))  # type: ignore[operator]


def test_fields_refuse_non_objects() -> None:
    """A reply that is not a JSON object is refused."""
    with pytest.raises(IdpReplyError):
        Fields(["x"], "/p")
