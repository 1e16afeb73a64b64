"""The Entrust IDaaS Authentication API calls, as exchanges: requests built, replies parsed.

Four calls drive every flow (Entrust's guide, "Authentication API"): query the user's
authenticators, select (challenge) an authenticator, complete it, and log out. Every select
and complete returns a new token that the next call must use.

The client does no I/O: each method is an exchange (:mod:`mfa_fsm.core.exchange`) that yields
its request and parses the reply it is sent back, so the flow's sync or async driver sends
it: ``reply = yield from client.query(user_id)``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs

from mfa_fsm.core.calls import checked_init
from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.core.exchange import Exchange, send
from mfa_fsm.core.http import HeaderPairs, HttpRequest, extra_headers
from mfa_fsm.core.polling import PollSchedule
from mfa_fsm.core.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from mfa_fsm.core.http import HttpResponse
    from mfa_fsm.core.replies import Fields
    from mfa_fsm.entrust.replies import AuthReply, QueryReply

QUERY_PATH = "/api/web/v2/authentication/users"
SELECT_PATH = "/api/web/v2/authentication/users/authenticate/{authenticator}"
COMPLETE_PATH = "/api/web/v1/authentication/users/authenticate/{authenticator}/complete"
LOGOUT_PATH = "/api/web/v1/authentication/logout"

#: The shortest interval a poll schedule takes; tests configure 0 to poll at once.
MIN_INTERVAL = 0.001

#: Authenticator names are upper-case enum values; anything else never reaches a URL path.
_AUTHENTICATOR = re.compile(r"[A-Z][A-Z0-9_]{0,39}")

#: Error codes that mean "locked out". Entrust does not document the code; these are the
#: ones seen in integrations and the emulator's. Override with ``EntrustConfig.lockout_codes``.
DEFAULT_LOCKOUT_CODES = frozenset(
    {"authenticator_locked", "user_locked", "account_locked", "ACCOUNT_LOCKED_OUT"}
)


def _strip_slash(url: str) -> str:
    return str(url).rstrip("/")


@checked_init
@attrs.frozen
class EntrustConfig:
    """How to reach one Entrust IDaaS Authentication API application.

    ``base_url`` is the tenant (``https://customer.region.trustedauth.com``);
    ``application_id`` the Authentication API application's id; ``client_ip`` a fixed
    address sent as ``clientIp`` when a step gives none of its own (a CLI on one machine):
    an application serving many users passes each user's address with every step instead
    (``client_ip=`` of ``start`` and ``send``). ``bearer`` sends ``Authorization: Bearer
    <token>`` instead of the bare token (IDaaS accepts both). In seconds: ``poll_interval``
    and ``push_lifetime`` (the tenant's push authentication lifetime, 300 s by default) shape
    push polling, and ``max_poll_backoff`` caps the wait after failed polls;
    ``flow_lifetime`` caps a flow whose token carries no expiry. ``retry`` applies to the
    calls that are safe to repeat (the query and push polls), never to a select or an
    answer. ``resend_cooldown`` (seconds) is how long after a code or push was sent the flow
    refuses ``resend`` without calling IDaaS; ``otp_length`` (digits), when set to the
    tenant's ``otpLength`` (admin ``OTPAuthenticatorSettings``, 8 by default), refuses a
    typed OTP of another length locally. ``extra_headers`` (a mapping of header names to
    values) is added to every call, e.g. a gateway's routing header, without writing a Transport
    (:func:`mfa_fsm.core.http.extra_headers` says what is refused).
    """

    base_url: str = attrs.field(converter=_strip_slash)
    application_id: str
    client_ip: str | None = None
    bearer: bool = False
    poll_interval: float = 1.0
    push_lifetime: float = 300.0
    flow_lifetime: float = 900.0
    lockout_codes: frozenset[str] = DEFAULT_LOCKOUT_CODES
    retry: RetryPolicy = DEFAULT_RETRY
    max_poll_backoff: float = 60.0
    extra_headers: HeaderPairs = attrs.field(default=(), converter=extra_headers)
    resend_cooldown: float = 30.0
    otp_length: int | None = None

    @property
    def poll_schedule(self) -> PollSchedule:
        """The poll schedule these settings describe (an interval of 0 polls at once)."""
        return PollSchedule(
            interval=max(self.poll_interval, MIN_INTERVAL), max_backoff=self.max_poll_backoff
        )


def check_authenticator(name: str) -> str:
    """``name`` if it is a well-formed authenticator name, else :class:`InvalidInput`."""
    if not isinstance(name, str) or not _AUTHENTICATOR.fullmatch(name):
        raise InvalidInput("factor", "must be an authenticator name such as 'OTP' or 'TOKEN'")
    return name


class EntrustClient:
    """Builds the Authentication API calls as exchanges; every reply is deciphered by
    ``replies``.

    Each method returns an :data:`~mfa_fsm.core.exchange.Exchange` of the parsed reply; run
    it with ``yield from`` inside a handler, or with a driver
    (:func:`~mfa_fsm.core.exchange.drive`). It raises :class:`IdpError` (the IdP refused;
    ``error_code`` is Entrust's ``errorCode``), :class:`IdpReplyError` (unreadable reply) or
    :class:`TransportError` (network, thrown in by the driver).
    """

    #: The end user's address for the current step, sent as ``clientIp`` in the body of the
    #: query, select and complete (Authentication API v5.46: ``UserAuthenticateQueryParameters``,
    #: ``UserChallengeParameters``, ``UserAuthenticateParameters``; logout has no body). Set
    #: by the flow before each step; ``None`` falls back to ``config.client_ip``.
    client_ip: str | None = None

    def __init__(self, config: EntrustConfig) -> None:
        self.config = config

    def query(self, user_id: str) -> Exchange[QueryReply]:
        """The authenticators ``user_id`` may use with this application (read-only: retried)."""
        fields = yield from self.config.retry.exchange(
            lambda: self._post(QUERY_PATH, {"userId": user_id})
        )
        return _parse_query(fields)

    def select(
        self,
        authenticator: str,
        *,
        user_id: str | None = None,
        auth_token: str | None = None,
        second_factor: str | None = None,
        delivery: str | None = None,
    ) -> Exchange[AuthReply]:
        """Start a challenge of ``authenticator`` (sends the OTP, the push, the questions)."""
        body = {
            "userId": user_id,
            "authToken": auth_token,
            "secondFactorAuthenticator": second_factor,
            "otpDeliveryType": delivery,
        }
        path = SELECT_PATH.format(authenticator=check_authenticator(authenticator))
        fields = yield from self._post(path, body)
        return _parse_authenticated(fields)

    def complete(
        self,
        authenticator: str,
        token: str,
        *,
        response: str | None = None,
        second_factor: str | None = None,
        kba_challenge: dict[str, Any] | None = None,
        cancel: bool = False,
    ) -> Exchange[AuthReply]:
        """Answer (or, with no ``response``, poll; with ``cancel``, cancel) a challenge."""
        body = {
            "response": response,
            "secondFactorAuthenticator": second_factor,
            "kbaChallenge": kba_challenge,
            "cancel": True if cancel else None,
        }
        path = COMPLETE_PATH.format(authenticator=check_authenticator(authenticator))
        fields = yield from self._post(path, body, token=token)
        return _parse_authenticated(fields)

    def poll(
        self, authenticator: str, token: str, *, second_factor: str | None = None
    ) -> Exchange[AuthReply]:
        """Ask whether a push was answered: complete with no response (safe: retried)."""
        return self.config.retry.exchange(
            lambda: self.complete(authenticator, token, second_factor=second_factor)
        )

    def logout(self, token: str) -> Exchange[None]:
        """End the IDaaS session of a final token."""
        response = yield from send(self._request(LOGOUT_PATH, None, token))
        if response.status >= 300:
            _decipher(response, LOGOUT_PATH)

    def _post(self, path: str, fields: dict[str, Any], token: str | None = None) -> Exchange[Any]:
        body = {"applicationId": self.config.application_id}
        client_ip = self.client_ip or self.config.client_ip
        if client_ip:
            body["clientIp"] = client_ip
        body.update((key, value) for key, value in fields.items() if value is not None)
        response = yield from send(self._request(path, body, token))
        return _decipher(response, path)

    def _request(self, path: str, body: dict[str, Any] | None, token: str | None) -> HttpRequest:
        headers = dict(self.config.extra_headers)
        headers["Accept"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}" if self.config.bearer else token
        return HttpRequest("POST", self.config.base_url + path, path, headers, body)


# The reply parsers (mfa_fsm.entrust.replies) are imported by the first call that reads a
# reply, not with this module: importing the Entrust flow (a serverless handler's cold start)
# does not build the reply records, attrs classes of about half a millisecond each (issue 12).
def _decipher(response: HttpResponse, path: str) -> Fields:
    from mfa_fsm.entrust.replies import decipher  # noqa: PLC0415 - on first use

    return decipher(response, path)


def _parse_query(fields: Fields) -> QueryReply:
    from mfa_fsm.entrust.replies import parse_query  # noqa: PLC0415 - on first use

    return parse_query(fields)


def _parse_authenticated(fields: Fields) -> AuthReply:
    from mfa_fsm.entrust.replies import parse_authenticated  # noqa: PLC0415 - on first use

    return parse_authenticated(fields)
