"""Duo Auth API v2 replies turned into values: pure functions, no I/O.

Every reply is a JSON envelope (Duo Auth API v2 documentation, "Responses"): ``{"stat":
"OK", "response": {...}}`` on success, ``{"stat": "FAIL", "code": 40002, "message":
"Invalid request parameters", "message_detail": "username"}`` on failure, with the HTTP
status saying the class of failure (400 bad parameters, 401 credentials or signature, 429
rate limited, 5xx Duo-side). The field names below are the documentation's:

``/preauth``
    ``result`` (``auth`` | ``allow`` | ``deny`` | ``enroll``), ``status_msg``, and for
    ``auth`` the ``devices`` (``device``, ``type``, ``number``, ``name``, ``display_name``,
    ``capabilities``, ``sms_nextcode``), for ``enroll`` the ``enroll_portal_url``.
``/auth``
    synchronous: ``result`` (``allow`` | ``deny``), ``status``, ``status_msg`` and, with
    Remembered Devices, ``trusted_device_token``; with ``async=1`` only ``txid``.
``/auth_status``
    ``result`` (``allow`` | ``deny`` | ``waiting``), ``status``, ``status_msg``,
    ``trusted_device_token``.
``/check``
    ``time`` (epoch seconds).

Duo says enumerations "may gain new values at any time": an unknown ``status``, device
``type`` or capability is kept as it is (the flow skips what it does not know); only a
``result`` the flow cannot act on is an :class:`IdpReplyError`.
"""

from __future__ import annotations

from typing import Literal, cast

import attrs

from mfa_fsm.core.errors import IdpError, IdpReplyError
from mfa_fsm.core.replies import Fields, json_body, retry_after
from mfa_fsm.core.transport import HttpResponse

__all__ = [
    "AUTH_STATUSES",
    "CAPABILITIES",
    "CREDENTIAL_ERROR_CODES",
    "INVALID_PARAMETERS_CODE",
    "RATE_LIMITED_CODE",
    "AuthReply",
    "AuthStarted",
    "AuthStatusReply",
    "CheckReply",
    "DuoDevice",
    "PreauthReply",
    "decipher",
    "parse_auth",
    "parse_auth_started",
    "parse_auth_status",
    "parse_check",
    "parse_preauth",
]

#: Device capabilities the Auth API documents for ``/preauth`` (more may appear).
CAPABILITIES = frozenset({"auto", "push", "sms", "phone", "mobile_otp"})
#: ``status`` values the documentation lists for ``/auth`` and ``/auth_status``.
AUTH_STATUSES = frozenset(
    {
        "calling",
        "answered",
        "pushed",
        "push_failed",
        "timeout",
        "fraud",
        "allow",
        "bypass",
        "deny",
        "locked_out",
        "sent",
    }
)
#: 400: a parameter is missing or invalid (``message_detail`` names it).
INVALID_PARAMETERS_CODE = 40002
#: 401: missing credentials, unknown integration key, invalid signature.
CREDENTIAL_ERROR_CODES = frozenset({40101, 40102, 40103})
#: 429: too many requests (Duo's rate limiting; ``duo_client`` backs off 1 s doubling to 32 s).
RATE_LIMITED_CODE = 42901

PreauthResult = Literal["auth", "allow", "deny", "enroll"]
AuthResult = Literal["allow", "deny"]
StatusResult = Literal["allow", "deny", "waiting"]


@attrs.frozen
class DuoDevice:
    """One device from ``/preauth``: an authentication choice for the user.

    ``device`` is Duo's opaque id (sent back as ``device`` to ``/auth``); ``kind`` is Duo's
    ``type`` (``phone``, ``token``, ...); ``number`` the masked phone number
    (``XXX-XXX-0100``); ``sms_nextcode`` the first digit of the next SMS passcode, shown so
    the user knows which code of a batch to type.
    """

    device: str
    kind: str
    capabilities: tuple[str, ...]
    display_name: str | None = None
    name: str | None = None
    number: str | None = None
    sms_nextcode: str | None = None

    @property
    def label(self) -> str:
        """What a factor picker shows: Duo's ``display_name``, else the name or number."""
        return self.display_name or self.name or self.number or self.kind


@attrs.frozen
class PreauthReply:
    """``/preauth``: whether and how the user may authenticate."""

    result: PreauthResult
    status_msg: str | None
    devices: tuple[DuoDevice, ...] = ()
    #: where an unenrolled user enrols (``result == "enroll"``); the app shows it as a link
    enroll_portal_url: str | None = None


@attrs.frozen
class AuthReply:
    """A synchronous ``/auth`` answer (a passcode, or the SMS that sent passcodes)."""

    result: AuthResult
    status: str | None
    status_msg: str | None
    trusted_device_token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class AuthStarted:
    """An asynchronous ``/auth`` (``async=1``): the transaction to poll with ``/auth_status``."""

    txid: str = attrs.field(repr=False)


@attrs.frozen
class AuthStatusReply:
    """``/auth_status``: ``waiting`` while the user has not answered, then the outcome."""

    result: StatusResult
    status: str | None
    status_msg: str | None
    trusted_device_token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class CheckReply:
    """``/check``: the keys and the signature are valid; Duo's clock (epoch seconds)."""

    time: int


def _fail(response: HttpResponse, path: str, data: object) -> IdpError:
    """The error a ``stat: FAIL`` envelope (or a bare error status) means."""
    envelope = Fields(data, path, "error envelope")
    code = envelope.integer("code", low=0, high=99999)
    message = envelope.text("message")
    detail = envelope.text("message_detail")
    wait = retry_after(response)
    transient = response.status == 429 or response.status >= 500
    # Without Duo's code the body was not Duo's (a proxy's page), unless the status alone
    # says what happened (throttled, unavailable).
    error_class = IdpError if code is not None or transient else IdpReplyError
    # Duo's message and message_detail name the error and the parameter (never a value the
    # user typed), so they may be shown; both are cut short in case a proxy sends a novel.
    said = f"{code} {message or ''}".strip() if code is not None else "no Duo error code"
    if detail:
        said += f" ({detail[:60]})"
    if response.status == 429 or code == RATE_LIMITED_CODE:
        hint = "Duo is rate limiting this application; wait, then try the same step again"
    elif response.status >= 500:
        hint = "Duo is unavailable; try the same step again later"
    elif code in CREDENTIAL_ERROR_CODES or response.status == 401:
        hint = (
            "check the integration key, the secret key and the API hostname, and that this "
            "server's clock is right (the Date header is signed)"
        )
    else:
        hint = "the request was refused; check the parameter it names"
    return error_class(
        f"Duo refused {path} (HTTP {response.status}: {said[:120]}); {hint}",
        path=path,
        status=response.status,
        error_code=None if code is None else str(code),
        retry_after=wait,
    )


def decipher(response: HttpResponse, path: str) -> Fields:
    """The ``response`` object of a ``stat: OK`` reply; raise the typed error anything else means.

    Raises :class:`IdpError` for a ``stat: FAIL`` envelope (``error_code`` is Duo's numeric
    ``code`` as a string, ``retry_after`` the ``Retry-After`` header if Duo sent one; 429 and
    5xx are ``transient``) and :class:`IdpReplyError` for a reply that is not Duo's envelope
    (empty, HTML, wrong shape, an error status without a code).
    """
    if response.status == 429 or response.status >= 500:
        try:
            data: object = json_body(response, path)
        except IdpReplyError:
            data = {}  # a proxy's page instead of Duo's body: the status still says it all
        raise _fail(response, path, data if isinstance(data, dict) else {})
    data = json_body(response, path)
    envelope = Fields(data, path, "envelope")
    stat = envelope.text("stat")
    if stat == "OK" and response.status == 200:
        body = envelope.child("response")
        if body is None:
            raise IdpReplyError(f"Duo's reply to {path} has no 'response' object", path=path)
        return body
    if stat == "FAIL" or response.status >= 400:
        raise _fail(response, path, data)
    raise IdpReplyError(
        f"Duo's reply to {path} is not a Duo envelope (HTTP {response.status}, no 'stat')",
        path=path,
        status=response.status,
    )


def _choice(reply: Fields, key: str, allowed: tuple[str, ...]) -> str:
    value = reply.text(key)
    if value is None or value not in allowed:
        raise IdpReplyError(
            f"Duo's {reply.where} from {reply.path} has a {key!r} the flow cannot act on; "
            "check for a newer mfa_fsm",
            path=reply.path,
        )
    return value


def parse_preauth(reply: Fields) -> PreauthReply:
    """Read a ``/preauth`` response object."""
    result = cast(PreauthResult, _choice(reply, "result", ("auth", "allow", "deny", "enroll")))
    devices = []
    for item in reply.objects("devices"):
        device_id = item.text("device")
        if not device_id:
            raise IdpReplyError(f"a device from {reply.path} has no 'device' id", path=reply.path)
        devices.append(
            DuoDevice(
                device=device_id,
                kind=item.text("type") or "unknown",
                capabilities=item.texts("capabilities"),
                display_name=item.text("display_name"),
                name=item.text("name"),
                number=item.text("number"),
                sms_nextcode=item.text("sms_nextcode"),
            )
        )
    return PreauthReply(
        result=result,
        status_msg=reply.text("status_msg"),
        devices=tuple(devices),
        enroll_portal_url=reply.text("enroll_portal_url"),
    )


def parse_auth(reply: Fields) -> AuthReply:
    """Read a synchronous ``/auth`` response object."""
    return AuthReply(
        result=cast(AuthResult, _choice(reply, "result", ("allow", "deny"))),
        status=reply.text("status"),
        status_msg=reply.text("status_msg"),
        trusted_device_token=reply.text("trusted_device_token"),
    )


def parse_auth_started(reply: Fields) -> AuthStarted:
    """Read an asynchronous ``/auth`` response object (its ``txid``)."""
    txid = reply.text("txid")
    if not txid:
        raise IdpReplyError(f"Duo's reply to {reply.path} (async=1) has no 'txid'", path=reply.path)
    return AuthStarted(txid=txid)


def parse_auth_status(reply: Fields) -> AuthStatusReply:
    """Read an ``/auth_status`` response object."""
    return AuthStatusReply(
        result=cast(StatusResult, _choice(reply, "result", ("allow", "deny", "waiting"))),
        status=reply.text("status"),
        status_msg=reply.text("status_msg"),
        trusted_device_token=reply.text("trusted_device_token"),
    )


def parse_check(reply: Fields) -> CheckReply:
    """Read a ``/check`` (or ``/ping``) response object."""
    time = reply.integer("time", low=0, high=2**40)
    if time is None:
        raise IdpReplyError(f"Duo's reply to {reply.path} has no 'time'", path=reply.path)
    return CheckReply(time=time)
