"""Duo Auth API v2 requests: pure builders of signed requests, and a client of exchanges.

The builders (``*_request``) return a signed :class:`HttpRequest` and do no I/O;
:class:`DuoClient` turns each call into an exchange (:mod:`mfa_fsm.core.exchange`) that yields
the signed request and parses the reply (``mfa_fsm.duo.replies``) the flow's sync or async
driver sends back.

Endpoints and parameters (Duo Auth API v2 documentation; ``duo_client/auth.py``)::

    GET  /auth/v2/ping          liveness, unsigned
    GET  /auth/v2/check         keys and signature valid?
    POST /auth/v2/preauth       username, ipaddr, [trusted_device_token]
    POST /auth/v2/auth          factor, username, ipaddr, async, device | passcode,
                                [type, display_username]
    GET  /auth/v2/auth_status   txid

The end user's IP address (``ipaddr``) is a parameter of every call that takes it
(``/preauth`` and ``/auth``; ``/auth_status`` and ``/check`` take none). The builders take it
as ``ipaddr=``; :class:`DuoClient` sends its ``client_ip`` attribute, which the flow sets
before every step from that step's request (``Flow.send(..., client_ip=)``), never from
process-wide configuration. Without it Duo's IP-based policies (authorized networks, user
location) have no effect.

POST parameters travel as a canonical JSON body, GET parameters in the query string, both
signed with signature version 5 (see ``mfa_fsm.duo.signing``), as ``duo_client`` does today.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlencode

import attrs

from mfa_fsm.core.calls import checked, checked_init
from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.core.exchange import Exchange, send
from mfa_fsm.core.http import HeaderPairs, HttpRequest, extra_headers
from mfa_fsm.core.polling import PollSchedule
from mfa_fsm.core.replies import Fields
from mfa_fsm.core.retry import DEFAULT_RETRY, RetryPolicy
from mfa_fsm.duo.replies import (
    AuthReply,
    AuthStarted,
    AuthStatusReply,
    CheckReply,
    PreauthReply,
    decipher,
    parse_auth,
    parse_auth_started,
    parse_auth_status,
    parse_check,
    parse_preauth,
)
from mfa_fsm.duo.signing import (
    DuoCredentials,
    authorization_header,
    canon_json,
    canonicalize,
    http_date,
    signature,
)

__all__ = [
    "AUTH_PATH",
    "AUTH_STATUS_PATH",
    "CHECK_PATH",
    "FACTORS",
    "PING_PATH",
    "PREAUTH_PATH",
    "DuoClient",
    "DuoConfig",
    "auth_request",
    "auth_status_request",
    "check_ipaddr",
    "check_request",
    "duo_extra_headers",
    "preauth_request",
]

PING_PATH = "/auth/v2/ping"
CHECK_PATH = "/auth/v2/check"
PREAUTH_PATH = "/auth/v2/preauth"
AUTH_PATH = "/auth/v2/auth"
AUTH_STATUS_PATH = "/auth/v2/auth_status"

#: The shortest interval a poll schedule takes; tests configure 0 to poll at once.
MIN_INTERVAL = 0.001

Factor = Literal["auto", "push", "phone", "sms", "passcode"]
#: The ``factor`` values ``/auth`` documents.
FACTORS: tuple[Factor, ...] = ("auto", "push", "phone", "sms", "passcode")

# Duo device ids are 20 upper-case letters and digits ("DPFZRS9FB0D46QFTM899"); "auto" lets
# Duo pick. Passcodes are digits: 6 (Duo Mobile), 7 (SMS), 6-8 (tokens), 9 (bypass codes).
_DEVICE = re.compile(r"auto|[A-Z0-9]{1,40}")
_PASSCODE = re.compile(r"[0-9]{4,16}")
_TXID = re.compile(r"[A-Za-z0-9-]{1,64}")


def _strip_slash(url: str | None) -> str | None:
    return None if url is None else str(url).rstrip("/")


def duo_extra_headers(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> HeaderPairs:
    """``DuoConfig.extra_headers``: :func:`mfa_fsm.core.http.extra_headers`, and no ``X-Duo-*``.

    Signature version 5 signs every ``X-Duo-*`` header of a request (their SHA-512 is the
    canonical request's last line: ``duo_client/client.py``, ``canonicalize`` and
    ``canon_x_duo_headers``); mfa_fsm signs none, so Duo would answer such a header with
    ``40103`` "Invalid signature". Raises :class:`InvalidInput` (``extra_headers``), naming
    the header, never its value. Other providers may send an ``X-Duo-*`` header: the name
    means nothing to them.
    """
    pairs = extra_headers(value)
    for name, _ in pairs:
        if name.lower().startswith("x-duo-"):
            raise InvalidInput(
                "extra_headers",
                f"{name} would be part of Duo's request signature, which mfa_fsm makes "
                "without X-Duo-* headers: Duo would refuse every call (remove it)",
            )
    return pairs


@checked_init
@attrs.frozen
class DuoConfig:
    """How to reach one Duo Auth API application.

    ``credentials`` are the application's integration key, secret key and API hostname;
    ``base_url`` overrides where requests go (``https://<api_hostname>`` by default; the
    emulator's loopback URL in tests) while the signed host stays ``api_hostname``.
    ``retry`` applies to the calls that are safe to repeat (``/check``, ``/preauth``,
    ``/auth_status``), never to ``/auth``, which may send a push, a call or an SMS.

    For the flow (seconds): ``poll_interval`` between ``/auth_status`` polls (Duo's is a long
    poll, so a short interval costs little); ``push_lifetime`` caps a push or call (Duo times
    one out after about a minute and says so; this is the flow's own hard limit, kept a
    little longer); ``flow_lifetime`` caps the whole login; ``max_poll_backoff`` caps the wait
    after failed polls; ``resend_cooldown`` is how long after a push, call or SMS the flow
    refuses ``resend`` without calling Duo. ``extra_headers`` (a mapping of header names to
    values) is added to every call without writing a Transport
    (:func:`mfa_fsm.core.http.extra_headers`; ``X-Duo-*`` names are refused,
    :func:`duo_extra_headers`).

    :meth:`from_settings` builds one from flat values (the integration's three keys as
    separate keywords), as ``mfa-fsm login --provider duo`` reads them.
    """

    credentials: DuoCredentials
    base_url: str | None = attrs.field(default=None, converter=_strip_slash)
    retry: RetryPolicy = DEFAULT_RETRY
    poll_interval: float = 2.0
    push_lifetime: float = 90.0
    flow_lifetime: float = 600.0
    max_poll_backoff: float = 60.0
    extra_headers: HeaderPairs = attrs.field(default=(), converter=duo_extra_headers)
    resend_cooldown: float = 30.0

    @classmethod
    @checked
    def from_settings(
        cls, *, integration_key: str, secret_key: str, api_hostname: str, **options: Any
    ) -> DuoConfig:
        """A configuration from the Admin Panel's three values given flat (``ikey``,
        ``skey`` and API hostname of the Auth API application, Duo Auth API v2 documentation,
        "First Steps"), plus any other field of this class in ``options``.

        This is ``DuoFlow.config_from_settings``, so ``mfa-fsm login --provider duo`` builds
        its configuration here. Raises :class:`InvalidInput` for a key that is empty or not
        ASCII (never repeating it) and :class:`UsageError` for a missing key or an unknown option.
        """
        credentials = DuoCredentials(integration_key, secret_key, api_hostname)
        config: DuoConfig = cls(credentials, **options)
        return config

    @property
    def poll_schedule(self) -> PollSchedule:
        """The poll schedule these settings describe (an interval of 0 polls at once)."""
        return PollSchedule(
            interval=max(self.poll_interval, MIN_INTERVAL), max_backoff=self.max_poll_backoff
        )

    @property
    def url(self) -> str:
        """Where requests are sent: ``base_url``, else ``https://<api_hostname>``."""
        return self.base_url or f"https://{self.credentials.api_hostname}"


def _signed(
    config: DuoConfig,
    method: Literal["GET", "POST"],
    path: str,
    params: Mapping[str, str],
    now: float,
) -> HttpRequest:
    credentials = config.credentials
    date = http_date(now)
    headers = dict(config.extra_headers)
    headers |= {"Date": date, "Accept": "application/json"}
    if method == "GET":
        canonical = canonicalize(method, credentials.api_hostname, path, params, date)
        query = urlencode(sorted(params.items()))
        url = f"{config.url}{path}" + (f"?{query}" if query else "")
        content = None
    else:
        content = canon_json(params)
        canonical = canonicalize(method, credentials.api_hostname, path, {}, date, body=content)
        headers["Content-Type"] = "application/json"
        url = f"{config.url}{path}"
    headers["Authorization"] = authorization_header(
        credentials.integration_key, signature(credentials.secret_key, canonical)
    )
    return HttpRequest(
        method, url, path, headers, json=dict(params) if content else None, content=content
    )


def _username(username: str) -> str:
    if not isinstance(username, str) or not username.strip() or len(username) > 256:
        raise InvalidInput("username", "must be the user's Duo username (1-256 characters)")
    return username


def check_ipaddr(ipaddr: str | None) -> str | None:
    """The end user's IP address in its normal form, ``None`` if not given.

    Raises :class:`InvalidInput` (field ``client_ip``) for anything but an IPv4 or IPv6 address.
    """
    if ipaddr is None:
        return None
    try:
        return str(ipaddress.ip_address(ipaddr))
    except ValueError:
        raise InvalidInput("client_ip", "must be the end user's IPv4 or IPv6 address") from None


def _ipaddr(ipaddr: str | None) -> dict[str, str]:
    checked = check_ipaddr(ipaddr)
    return {} if checked is None else {"ipaddr": checked}


def check_request(config: DuoConfig, *, now: float) -> HttpRequest:
    """``GET /auth/v2/check`` signed at ``now`` (epoch seconds)."""
    return _signed(config, "GET", CHECK_PATH, {}, now)


def preauth_request(
    config: DuoConfig,
    *,
    username: str,
    ipaddr: str | None,
    now: float,
    trusted_device_token: str | None = None,
) -> HttpRequest:
    """``POST /auth/v2/preauth`` for ``username`` from the end user's ``ipaddr``.

    Raises :class:`InvalidInput` for an empty username or a malformed IP address.
    """
    params = {"username": _username(username), **_ipaddr(ipaddr)}
    if trusted_device_token:
        params["trusted_device_token"] = trusted_device_token
    return _signed(config, "POST", PREAUTH_PATH, params, now)


def auth_request(
    config: DuoConfig,
    *,
    factor: Factor,
    username: str,
    ipaddr: str | None,
    now: float,
    device: str = "auto",
    passcode: str | None = None,
    async_txn: bool = False,
    display_username: str | None = None,
    push_type: str | None = None,
) -> HttpRequest:
    """``POST /auth/v2/auth``: start ``factor`` on ``device``, or check a ``passcode``.

    ``async_txn`` sends ``async=1``: Duo answers at once with a ``txid`` to poll (push,
    phone). ``push_type`` (Duo's ``type``) and ``display_username`` are shown in the push
    (Duo's defaults otherwise). Raises :class:`InvalidInput` for an unknown factor, a
    malformed device id or passcode (the message never repeats the passcode), a missing
    passcode for ``factor="passcode"``, or a malformed IP address.
    """
    if factor not in FACTORS:
        raise InvalidInput("factor", f"must be one of {', '.join(FACTORS)}")
    params = {
        "factor": factor,
        "username": _username(username),
        "async": "1" if async_txn else "0",
        **_ipaddr(ipaddr),
    }
    if factor == "passcode":
        if not isinstance(passcode, str) or not _PASSCODE.fullmatch(passcode.strip()):
            raise InvalidInput("passcode", "must be the 4-16 digits of a Duo passcode")
        params["passcode"] = passcode.strip()
    else:
        if not isinstance(device, str) or not _DEVICE.fullmatch(device):
            raise InvalidInput("device", "must be a Duo device id from preauth, or 'auto'")
        params["device"] = device
    if display_username:
        params["display_username"] = display_username
    if push_type:
        params["type"] = push_type
    return _signed(config, "POST", AUTH_PATH, params, now)


def auth_status_request(config: DuoConfig, *, txid: str, now: float) -> HttpRequest:
    """``GET /auth/v2/auth_status?txid=...`` for an asynchronous ``/auth``."""
    if not isinstance(txid, str) or not _TXID.fullmatch(txid):
        raise InvalidInput("txid", "must be the txid an asynchronous auth returned")
    return _signed(config, "GET", AUTH_STATUS_PATH, {"txid": txid}, now)


class DuoClient:
    """Builds the Auth API calls as exchanges; every reply is deciphered by ``replies``.

    Each method returns an :data:`~mfa_fsm.core.exchange.Exchange` of the parsed reply
    (``reply = yield from client.preauth(user)``). It raises :class:`IdpError` (Duo refused;
    ``error_code`` is Duo's numeric ``code``), :class:`IdpReplyError` (unreadable reply),
    :class:`TransportError` (network, thrown in by the driver) or :class:`InvalidInput` (a
    malformed argument; nothing was sent). ``clock`` gives the epoch seconds each request is
    signed at.

    ``client_ip`` is the end user's IP address, sent as ``ipaddr`` with every ``/preauth``
    and ``/auth``; a :class:`~mfa_fsm.duo.flow.DuoFlow` sets it before each step (from
    ``send(..., client_ip=)``), so it is never stored; ``None`` leaves ``ipaddr`` out.
    """

    #: the end user's IP address for the calls about to be made (Duo's ``ipaddr``)
    client_ip: str | None = None

    def __init__(self, config: DuoConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock

    def check(self) -> Exchange[CheckReply]:
        """Whether the keys and the signature are valid (read-only: retried)."""
        fields = yield from self.config.retry.exchange(
            lambda: self._fields(lambda now: check_request(self.config, now=now))
        )
        return parse_check(fields)

    def preauth(
        self, username: str, *, trusted_device_token: str | None = None
    ) -> Exchange[PreauthReply]:
        """May ``username`` log in, and with which devices (read-only: retried)."""

        def build(now: float) -> HttpRequest:
            return preauth_request(
                self.config,
                username=username,
                ipaddr=self.client_ip,
                now=now,
                trusted_device_token=trusted_device_token,
            )

        fields = yield from self.config.retry.exchange(lambda: self._fields(build))
        return parse_preauth(fields)

    def auth(
        self,
        factor: Literal["sms", "passcode"],
        username: str,
        *,
        device: str = "auto",
        passcode: str | None = None,
    ) -> Exchange[AuthReply]:
        """A synchronous ``/auth``: send SMS passcodes, or check a typed passcode (not retried)."""
        fields = yield from self._auth(factor, username, device=device, passcode=passcode)
        return parse_auth(fields)

    def auth_async(
        self,
        factor: Literal["push", "phone"],
        username: str,
        *,
        device: str = "auto",
        display_username: str | None = None,
        push_type: str | None = None,
    ) -> Exchange[AuthStarted]:
        """Start a push or a phone call with ``async=1`` and return its ``txid`` (not retried)."""
        fields = yield from self._auth(
            factor,
            username,
            device=device,
            async_txn=True,
            display_username=display_username,
            push_type=push_type,
        )
        return parse_auth_started(fields)

    def auth_status(self, txid: str) -> Exchange[AuthStatusReply]:
        """The state of an asynchronous ``/auth`` (safe: retried)."""
        fields = yield from self.config.retry.exchange(
            lambda: self._fields(lambda now: auth_status_request(self.config, txid=txid, now=now))
        )
        return parse_auth_status(fields)

    def _auth(self, factor: Factor, username: str, **options: Any) -> Exchange[Fields]:
        """One ``/auth`` from the end user's address (never retried: it may send a push)."""
        return self._fields(
            lambda now: auth_request(
                self.config,
                factor=factor,
                username=username,
                ipaddr=self.client_ip,
                now=now,
                **options,
            )
        )

    def _fields(self, build: Callable[[float], HttpRequest]) -> Exchange[Fields]:
        # Signed afresh on each try, so a retried request carries a fresh Date.
        request = build(self.clock())
        response = yield from send(request)
        return decipher(response, request.path)
