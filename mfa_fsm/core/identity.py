"""Who the end user is, and where their request comes from: what the application vouches for.

Two facts come from the application's own code, never from a form field:

* :class:`VerifiedUser`: a user whose first factor the *application* has checked (its own
  password check, a session it trusts). Only such a user may start a flow whose first
  factor the IdP does not check (Entrust ``EXTERNAL``): that flow is a login with the second
  factor alone. A plain ``user_id=`` string is a name someone typed; flows started with one
  must have the IdP check a first factor itself (a password).
* the end user's IP address (``client_ip=``), given with every step, because the IdP's risk
  rules judge each request by it (Entrust: "the client IP address must be made available to
  Identity as a Service in all requests", the ``clientIp`` field of every Authentication API
  body). The address is not a secret, but it is personal data: mfa_fsm never logs it nor
  stores it in a snapshot.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.core.inputs import identifier


def _user_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    identifier("user_id", value)


def _checked_by(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 120:
        raise InvalidInput(
            "checked_by", "must say in under 120 characters who checked the first factor"
        )


@attrs.frozen
class VerifiedUser:
    """A user whose first factor the application has checked itself.

    Build it only in the application's own code, after its own check succeeded, from its
    own verified session: ``VerifiedUser(session["user"], checked_by="example.com password")``.
    ``user_id`` is the user's id at the IdP; ``checked_by`` says, for people and pages, who
    checked which first factor. Raises :class:`InvalidInput` for a malformed id or an empty
    ``checked_by``.
    """

    user_id: str = attrs.field(validator=_user_id)
    checked_by: str = attrs.field(default="the application", validator=_checked_by)


def client_address(value: Any) -> str | None:
    """``value`` as a normalised IP address (``None`` stays ``None``).

    Raises :class:`InvalidInput` (field ``client_ip``) for anything that is not an IPv4 or
    IPv6 address; the value is not repeated.
    """
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput("client_ip", "must be an IPv4 or IPv6 address as a string")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidInput("client_ip", "must be an IPv4 or IPv6 address") from None
