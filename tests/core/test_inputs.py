"""Checks on caller input: type, length and characters, never echoing the value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfa_fsm import InvalidInput
from mfa_fsm.core.inputs import MAX_CODE, MAX_SECRET, code, identifier, secret_text


@pytest.mark.parametrize("value", ["123456", "A6N3D5", "TAC-4242", " 1234 5678 "])
def test_codes_accepted(value: str) -> None:
    """Digits, letters and dashes are codes; spaces people type are dropped."""
    assert " " not in code("response", value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "12\t34",
        "\uff11\uff12\uff13\uff14",
        "12;34",
        "<script>",
        "1" * (MAX_CODE + 1),
        None,
        1234,
        ["1"],
    ],
)
def test_codes_refused(value: object) -> None:
    """Empty, oversize, non-ASCII, punctuation and non-strings are refused."""
    with pytest.raises(InvalidInput) as info:
        code("response", value)
    assert info.value.field == "response"


@pytest.mark.parametrize("value", ["hunter2", "pässwörd with spaces", "x" * MAX_SECRET])
def test_secrets_accepted(value: str) -> None:
    """Passwords and answers may hold any printable text up to the limit."""
    assert secret_text("password", value) == value


@pytest.mark.parametrize("value", ["", "x" * (MAX_SECRET + 1), "a\x00b", "line\nbreak", 5])
def test_secrets_refused(value: object) -> None:
    """Empty, oversize, control characters and non-strings are refused."""
    with pytest.raises(InvalidInput):
        secret_text("password", value)


@pytest.mark.parametrize("value", ["jsmith", "j.smith@example.com", "user+tag", "A-1_b"])
def test_identifiers_accepted(value: str) -> None:
    """User and flow ids of the usual shapes are accepted."""
    assert identifier("user_id", value) == value


@pytest.mark.parametrize("value", ["", "../etc", "a b", "ü", "x" * 256, "-lead", None])
def test_identifiers_refused(value: object) -> None:
    """Ids with path, space, non-ASCII or leading punctuation are refused."""
    with pytest.raises(InvalidInput):
        identifier("user_id", value)


@given(st.text(max_size=300).map(lambda text: "\N{SNOWMAN}" + text))
def test_messages_never_echo_the_value(value: str) -> None:
    """Whatever is refused, the error message does not contain the input."""
    messages = []
    for check in (code, secret_text, identifier):
        try:
            check("field", value)
        except InvalidInput as exc:
            messages.append(str(exc))
    assert all(value not in message for message in messages)


@pytest.mark.parametrize("check", [code, identifier, secret_text])
def test_a_missing_field_is_required_not_the_wrong_type(check: object) -> None:
    """None (a field left out) says "is required"; a value of the wrong type says so."""
    with pytest.raises(InvalidInput, match=r"^password: is required$"):
        check("password", None)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match="string"):
        check("password", 5)  # type: ignore[operator]


def test_password_left_out_of_a_typed_entrust_start_is_required() -> None:
    """The new user's case: a password-first flow sent submit_first_factor without one."""
    from mfa_fsm import EntrustConfig, EntrustFlow  # noqa: PLC0415
    from mfa_fsm.testing import EntrustEmulator  # noqa: PLC0415

    with EntrustEmulator() as emulator:
        config = EntrustConfig(base_url=emulator.base_url, application_id=emulator.application_id)
        flow = EntrustFlow.start(config=config, user="pwuser")
        with pytest.raises(InvalidInput, match=r"^answer: is required$"):
            flow.send("submit_first_factor")
        assert flow.version == 0
