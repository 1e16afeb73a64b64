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


# -- gaps found by fuzzing the providers' parsers; each test flips when core/replies.py is
# -- fixed (the fixes are in the hardening report)


def test_deeply_nested_json_is_a_reply_error() -> None:
    """A body nested deeper than the parser's recursion limit is IdpReplyError."""
    with pytest.raises(IdpReplyError):
        json_body(response(body=b"[" * 100_000), "/p")


@pytest.mark.parametrize("value", ["\xb2", "7\xb3"])
def test_retry_after_non_ascii_digits_are_ignored(value: str) -> None:
    """A Retry-After of non-ASCII digits (a header is ISO-8859-1) is no wait, not a crash."""
    with pytest.raises(IdpError) as caught:
        refuse_transient(HttpResponse(503, {"Retry-After": value}), "/p")
    assert caught.value.retry_after is None


@pytest.mark.parametrize("body", [b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}'])
def test_non_finite_numbers_are_reply_errors(body: bytes) -> None:
    """NaN and infinities are no numbers an IdP sends (NaN would even make Entrust's
    snapshot unequal to itself once it holds an expiry of NaN)."""
    with pytest.raises(IdpReplyError):
        Fields(json_body(response(body=body), "/p"), "/p").number("n")


def test_integers_beyond_any_float_are_reply_errors() -> None:
    """An integer too large for a float (JSON allows any length) is IdpReplyError."""
    body = b'{"n": 1' + b"0" * 400 + b"}"
    with pytest.raises(IdpReplyError):
        Fields(json_body(response(body=body), "/p"), "/p").number("n")


def test_text_that_is_no_unicode_is_a_reply_error() -> None:
    r"""A string holding a lone surrogate (JSON "\ud800") is IdpReplyError: it would reach a
    snapshot that no store can write as UTF-8."""
    with pytest.raises(IdpReplyError):
        Fields(json_body(response(body=b'{"t": "a\\ud800"}'), "/p"), "/p").text("t")
