"""VerifiedUser and client addresses: what the application vouches for, checked at the door."""

from __future__ import annotations

import pytest

from mfa_fsm import InvalidInput, VerifiedUser
from mfa_fsm.core.identity import client_address


def test_verified_user_names_who_checked_what() -> None:
    """A VerifiedUser holds the IdP user id and who checked the first factor."""
    user = VerifiedUser("jsmith", checked_by="example.com password")
    assert (user.user_id, user.checked_by) == ("jsmith", "example.com password")
    assert VerifiedUser("jsmith").checked_by == "the application"


@pytest.mark.parametrize(
    ("user_id", "checked_by", "field"),
    [("", "app", "user_id"), ("bad user!", "app", "user_id"), ("jsmith", " ", "checked_by")],
)
def test_verified_user_refuses_malformed_values(user_id: str, checked_by: str, field: str) -> None:
    """A malformed id or an empty checked_by is InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as refused:
        VerifiedUser(user_id, checked_by=checked_by)
    assert refused.value.field == field


def test_client_address_is_normalised_or_refused() -> None:
    """IPv4 and IPv6 addresses pass (normalised); anything else is refused, not repeated."""
    assert client_address(None) is None
    assert client_address(" 203.0.113.9 ") == "203.0.113.9"
    assert client_address("2001:DB8::0:1") == "2001:db8::1"
    for junk in ("localhost", "203.0.113.9; DROP", "x" * 100, 42):
        with pytest.raises(InvalidInput) as refused:
            client_address(junk)
        assert refused.value.field == "client_ip"
        assert str(junk) not in str(refused.value)
