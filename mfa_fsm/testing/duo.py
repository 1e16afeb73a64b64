"""Loopback emulator of the Duo Auth API v2.

The emulator follows Duo's Auth API v2 documentation (endpoints, parameters, the ``stat``
envelope, error codes, the ``/preauth`` results and ``/auth`` factors) and ``duo_client``'s
``auth.py``/``client.py`` (how requests are signed and sent). It checks the signature of
every request but ``/ping``, with the same integration key, secret key and API hostname a
real Auth API application has (:attr:`DuoEmulator.credentials`).

Endpoints::

    GET  /auth/v2/ping          unsigned liveness check
    GET  /auth/v2/check         signed; {"time": ...}
    POST /auth/v2/preauth       username | user_id, ipaddr
    POST /auth/v2/auth          factor, username | user_id, device | passcode, async, ipaddr
    GET  /auth/v2/auth_status   txid

Parameters are read from a JSON body (signature version 5, what ``duo_client`` sends), a
form-encoded body or the query string (version 2, what Duo's documentation describes).

Control routes (besides the base ``/_emulator/faults`` and ``/_emulator/calls``)::

    POST /_emulator/push/{user}/approve | deny | fraud | timeout
                                     answer the user's latest push or phone call
    GET  /_emulator/sms/{user}       the SMS passcodes sent to the user, and how many SMS
    GET  /_emulator/passcode/{user}  the code the user's token / Duo Mobile shows
    GET  /_emulator/users            configured users and devices

Demo users (``DuoEmulator(demo_users=False)`` starts empty):

===========  =========================================================================
user         preauth result and devices
===========  =========================================================================
jsmith       ``auth``: an iOS phone (push, phone, sms, mobile_otp) and a hardware token
callme       ``auth``: a landline (phone only)
tokenonly    ``auth``: a hardware token (passcode only)
trusted      ``allow``: Duo lets the user in without a second factor
blocked      ``deny``: policy refuses the user
newuser      ``enroll``: not enrolled; preauth gives the enrolment portal URL
===========  =========================================================================

Users the emulator does not know answer as ``unknown_user`` says (``enroll`` by default,
Duo's "Require enrollment" new-user policy; ``deny`` or ``allow`` for the other policies).

Emulator choices (the documentation does not settle these):

* Credential errors are HTTP 401 with Duo's codes: ``40101`` missing ``Authorization`` or
  ``Date`` (or not HTTP Basic), ``40102`` unknown integration key, ``40103`` invalid
  signature. A ``Date`` more than ``date_tolerance`` seconds from the emulator's clock is
  also answered ``40103`` (Duo documents that the date is signed, not which code a stale one
  gets). Signatures are accepted in version 5 (HMAC-SHA512) or version 2 (HMAC-SHA512 or
  HMAC-SHA1); a repeated query parameter counts once (the last value).
* Bad parameters are HTTP 400 ``40002`` "Invalid request parameters" with
  ``message_detail`` naming the parameter; an unknown path is 404 ``40401``.
* Push and phone answer only with ``async=1`` (a ``txid``); the synchronous form would block
  the emulator until a test answers. SMS and passcode answer only synchronously.
* ``/auth_status`` answers at once (Duo's is a long poll that may wait a few seconds).
  A push or call not answered within ``push_lifetime`` seconds ends ``deny``/``timeout``; a
  final answer is repeated to every later poll of the same ``txid``.
* A phone call reports ``calling`` on its first poll and ``answered`` on later ones until a
  test answers it.
* ``factor=sms`` sends a new batch of ``sms_batch_size`` seven-digit passcodes, replacing the
  previous batch; each passcode works once. ``sms_nextcode`` in ``/preauth`` is the first
  digit of the next unused one. The token / Duo Mobile passcode (``DEMO_PASSCODE`` by
  default) is accepted every time.
* ``lockout_count`` consecutive wrong passcodes lock the user out: that answer and every later
  ``/auth`` get ``deny``/``locked_out``, and ``/preauth`` answers ``deny``. A right passcode
  resets the count.
* Faults: every base kind, plus ``throttled``: HTTP 429 with Duo's error body
  (``{"stat": "FAIL", "code": 42901, "message": "Too Many Requests"}``) and a ``Retry-After``
  header when the fault gives one. ``unknown_enum`` replaces ``result`` and ``status`` and
  appends an unknown capability to every device.
"""

from __future__ import annotations

import base64
import email.utils
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl

import attrs

from mfa_fsm.duo.signing import DuoCredentials, canonicalize, signature_matches
from mfa_fsm.testing._server import (
    BASE_FAULT_KINDS,
    UNKNOWN_ENUM_VALUE,
    BadRequest,
    EmulatorReply,
    EmulatorRequest,
    EmulatorServer,
    Fault,
)
from mfa_fsm.testing.leaks import add_secret

__all__ = [
    "DEFAULT_API_HOSTNAME",
    "DEFAULT_INTEGRATION_KEY",
    "DEMO_PASSCODE",
    "DuoEmulator",
    "DuoEmulatorDevice",
    "DuoUser",
]

#: Integration key the emulator accepts unless told otherwise (``DI`` + 18, as Duo's).
DEFAULT_INTEGRATION_KEY = "DIEMULATORDUO0000001"
#: Host the emulator expects in signatures (``.test`` is reserved: RFC 6761).
DEFAULT_API_HOSTNAME = "api-emulator.duosecurity.test"
#: The code every demo user's token and Duo Mobile show.
DEMO_PASSCODE = "246810"

PreauthResult = Literal["auth", "allow", "deny", "enroll"]
Answer = Literal["approve", "deny", "fraud", "timeout"]

PREAUTH_PATH = "/auth/v2/preauth"
AUTH_PATH = "/auth/v2/auth"
AUTH_STATUS_PATH = "/auth/v2/auth_status"
CHECK_PATH = "/auth/v2/check"
PING_PATH = "/auth/v2/ping"

_STATUS_MSG = {
    "allow": "Success. Logging you in...",
    "deny": "Login request denied.",
    "fraud": "Login request reported as fraudulent.",
    "timeout": "Login timed out.",
    "locked_out": "Your account is locked out. Contact your administrator.",
    "pushed": "Pushed a login request to your device...",
    "answered": "Answered. Press any key on your phone to log in.",
    "sent": "New SMS passcodes sent.",
}


@attrs.frozen
class DuoEmulatorDevice:
    """One enrolled device: Duo's ``device`` id, ``type``, ``capabilities`` and labels."""

    device: str
    kind: str
    capabilities: tuple[str, ...]
    number: str | None = None
    name: str = ""
    display_name: str | None = None


@attrs.define
class DuoUser:
    """One Duo user; mutable state (SMS batch, lockout) lives here too."""

    username: str
    user_id: str
    preauth: PreauthResult
    devices: tuple[DuoEmulatorDevice, ...]
    passcode: str = attrs.field(repr=False)
    sms_passcodes: list[str] = attrs.field(factory=list, repr=False)
    sms_sent: int = 0
    failed_passcodes: int = 0
    locked: bool = False


@attrs.define
class _Txn:
    txid: str = attrs.field(repr=False)
    username: str
    factor: Literal["push", "phone"]
    device: DuoEmulatorDevice
    started: float
    state: Literal["waiting", "allow", "deny", "fraud", "timeout"] = "waiting"
    polls: int = 0


class _DuoFailure(Exception):
    """A ``stat: FAIL`` answer (status, Duo code, message, detail)."""

    def __init__(self, status: int, code: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.reply = _fail(status, code, message, detail)


def _fail(status: int, code: int, message: str, detail: str | None = None) -> EmulatorReply:
    body: dict[str, Any] = {"stat": "FAIL", "code": code, "message": message}
    if detail is not None:
        body["message_detail"] = detail
    return EmulatorReply.json(body, status=status)


def _ok(response: Mapping[str, Any]) -> EmulatorReply:
    return EmulatorReply.json({"stat": "OK", "response": dict(response)})


def _invalid(parameter: str) -> _DuoFailure:
    return _DuoFailure(400, 40002, "Invalid request parameters", parameter)


def _device_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "D" + "".join(secrets.choice(alphabet) for _ in range(19))


class DuoEmulator(EmulatorServer):
    """Loopback emulator of the Duo Auth API v2 (see the module docstring).

    Args:
        integration_key, secret_key, api_hostname: the application's credentials; the
            secret key is random per emulator unless given (read it from
            :attr:`credentials`).
        push_lifetime: seconds a push or call waits for the user before it times out.
        date_tolerance: seconds a signed ``Date`` may differ from the emulator's clock.
        lockout_count: consecutive wrong passcodes that lock a user out.
        sms_batch_size: passcodes sent per SMS.
        unknown_user: the ``/preauth`` result for users the emulator does not know.
        require_ipaddr: answer 400 (``message_detail: ipaddr``) to a ``/preauth`` or
            ``/auth`` without the end user's IP address.
        demo_users: add the demo users listed in the module docstring.
        tls: serve HTTPS with a throwaway CA (``ca_file``), as the other emulators do.
    """

    fault_kinds: ClassVar[frozenset[str]] = BASE_FAULT_KINDS | {"throttled"}

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        integration_key: str = DEFAULT_INTEGRATION_KEY,
        secret_key: str | None = None,
        api_hostname: str = DEFAULT_API_HOSTNAME,
        push_lifetime: float = 60.0,
        date_tolerance: float = 300.0,
        lockout_count: int = 10,
        sms_batch_size: int = 10,
        unknown_user: PreauthResult = "enroll",
        require_ipaddr: bool = False,
        demo_users: bool = True,
        tls: bool = False,
    ) -> None:
        super().__init__(host, port, tls=tls)
        self.credentials = DuoCredentials(
            integration_key, secret_key or secrets.token_urlsafe(30)[:40], api_hostname
        )
        self.push_lifetime = push_lifetime
        self.date_tolerance = date_tolerance
        self.lockout_count = lockout_count
        self.sms_batch_size = sms_batch_size
        self.unknown_user = unknown_user
        self.require_ipaddr = require_ipaddr
        self.users: dict[str, DuoUser] = {}
        self._txns: dict[str, _Txn] = {}
        self._latest: dict[str, _Txn] = {}  # latest push or call per user
        self._note_secret(self.credentials.secret_key)
        if demo_users:
            self._add_demo_users()

    def __repr__(self) -> str:
        return f"DuoEmulator(base_url={self.host}:{self.port}, users={sorted(self.users)})"

    # -- configuration -----------------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        preauth: PreauthResult = "auth",
        devices: Iterable[DuoEmulatorDevice] | None = None,
        passcode: str = DEMO_PASSCODE,
    ) -> DuoUser:
        """Add (or replace) a user; by default one phone with every capability."""
        if devices is None:
            devices = (
                DuoEmulatorDevice(
                    _device_id(),
                    "phone",
                    ("auto", "push", "sms", "phone", "mobile_otp"),
                    number="XXX-XXX-0100",
                    display_name="iOS (XXX-XXX-0100)",
                ),
            )
        if preauth not in ("auth", "allow", "deny", "enroll"):
            raise ValueError(f"unsupported preauth result {preauth!r}")
        user = DuoUser(
            username=username,
            user_id="DU" + uuid.uuid5(uuid.NAMESPACE_URL, username).hex[:18].upper(),
            preauth=preauth,
            devices=tuple(devices),
            passcode=passcode,
        )
        self._note_secret(passcode)
        with self.lock:
            self.users[username] = user
        return user

    def _add_demo_users(self) -> None:
        phone = DuoEmulatorDevice(
            "DPFZRS9FB0D46QFTM899",
            "phone",
            ("auto", "push", "sms", "phone", "mobile_otp"),
            number="XXX-XXX-0100",
            display_name="iOS (XXX-XXX-0100)",
        )
        token = DuoEmulatorDevice("DHEKH0JJIYC1LX3AZWO4", "token", (), name="0")
        landline = DuoEmulatorDevice(
            "DPL4NDL1NE0000000001",
            "phone",
            ("auto", "phone"),
            number="XXX-XXX-0199",
            display_name="Landline (XXX-XXX-0199)",
        )
        self.add_user("jsmith", devices=(phone, token))
        self.add_user("callme", devices=(landline,))
        self.add_user("tokenonly", devices=(token,))
        self.add_user("trusted", preauth="allow", devices=())
        self.add_user("blocked", preauth="deny", devices=())
        self.add_user("newuser", preauth="enroll", devices=())

    # -- helpers for tests (thread-safe) -------------------------------------

    def waiting(self, username: str) -> bool:
        """Whether the user's latest push or phone call still waits for an answer (not
        answered, not timed out): :meth:`answer` would act on it."""
        with self.lock:
            txn = self._latest.get(username)
            return txn is not None and self._state(txn) == "waiting"

    def answer(self, username: str, answer: Answer) -> None:
        """Answer the user's latest push or phone call (``approve``, ``deny``, ``fraud``,
        ``timeout``). Raises :class:`LookupError` when none is waiting."""
        states: dict[str, Literal["allow", "deny", "fraud", "timeout"]] = {
            "approve": "allow",
            "deny": "deny",
            "fraud": "fraud",
            "timeout": "timeout",
        }
        if answer not in states:
            raise ValueError(f"unknown answer {answer!r}; expected one of {sorted(states)}")
        with self.lock:
            txn = self._latest.get(username)
            if txn is None or self._state(txn) != "waiting":
                raise LookupError(f"no push or call is waiting for {username!r}")
            txn.state = states[answer]

    def sms_passcodes(self, username: str) -> tuple[str, ...]:
        """The unused passcodes of the user's latest SMS batch."""
        with self.lock:
            return tuple(self._user(username).sms_passcodes)

    def sms_count(self, username: str) -> int:
        """How many SMS (batches of passcodes) the user has been sent."""
        with self.lock:
            return self._user(username).sms_sent

    def poll_count(self, username: str) -> int:
        """How many times the user's latest push or call was polled."""
        with self.lock:
            txn = self._latest.get(username)
            return 0 if txn is None else txn.polls

    def passcode(self, username: str) -> str:
        """The code the user's token / Duo Mobile shows."""
        with self.lock:
            return self._user(username).passcode

    def unlock(self, username: str) -> None:
        """Clear the user's lockout and failed-passcode count."""
        with self.lock:
            user = self._user(username)
            user.locked, user.failed_passcodes = False, 0

    def _user(self, username: str) -> DuoUser:
        try:
            return self.users[username]
        except KeyError:
            raise LookupError(f"no emulator user {username!r}") from None

    def _note_secret(self, value: str | None) -> None:
        sink = EmulatorServer.secret_sink
        if sink is not None and value:
            add_secret(sink, value)

    # -- request authentication ----------------------------------------------

    def _authenticate(self, request: EmulatorRequest, params: Mapping[str, str]) -> None:
        """Raise :class:`_DuoFailure` (401) unless the request is signed by our keys."""
        authorization = request.header("authorization") or ""
        date = request.header("date")
        scheme, _, token = authorization.partition(" ")
        try:
            ikey, colon, presented = base64.b64decode(token, validate=True).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
            ikey, colon, presented = "", "", ""
        if not date or scheme.lower() != "basic" or not colon:
            raise _DuoFailure(401, 40101, "Missing request credentials")
        if ikey != self.credentials.integration_key:
            raise _DuoFailure(401, 40102, "Invalid integration key in request credentials")
        try:
            signed_at = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            signed_at = None
        fresh = signed_at is not None and abs(self.clock() - signed_at) <= self.date_tolerance
        if not fresh or not any(
            signature_matches(self.credentials.secret_key, canonical, presented)
            for canonical in self._canonical_forms(request, params, date)
        ):
            raise _DuoFailure(401, 40103, "Invalid signature in request credentials")

    def _canonical_forms(
        self, request: EmulatorRequest, params: Mapping[str, str], date: str
    ) -> list[str]:
        host = self.credentials.api_hostname
        duo_headers = {k: v for k, v in request.headers.items() if k.startswith("x-duo-")}
        if self._is_json(request):
            # Version 5 with a JSON body: the parameters are only in the body.
            query = dict(request.query)
            return [
                canonicalize(
                    request.method,
                    host,
                    request.path,
                    query,
                    date,
                    body=request.body,
                    duo_headers=duo_headers,
                )
            ]
        return [
            canonicalize(request.method, host, request.path, params, date, version=2),
            canonicalize(
                request.method,
                host,
                request.path,
                params if request.method == "GET" else {},
                date,
                body=b"" if request.method == "GET" else request.body,
                duo_headers=duo_headers,
            ),
        ]

    @staticmethod
    def _is_json(request: EmulatorRequest) -> bool:
        content_type = (request.header("content-type") or "").lower()
        return request.method != "GET" and content_type.startswith("application/json")

    def _params(self, request: EmulatorRequest) -> dict[str, str]:
        if request.method == "GET":
            return dict(request.query)
        if self._is_json(request):
            data = request.json()
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise BadRequest("body")
            return data
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise BadRequest("body") from None
        return dict(parse_qsl(text, keep_blank_values=True))

    # -- dispatch -------------------------------------------------------------

    def bad_request_reply(self, message: str) -> EmulatorReply:
        """Duo's 400: ``40002`` with the parameter in ``message_detail``."""
        return _fail(400, 40002, "Invalid request parameters", message)

    def not_found_reply(self, request: EmulatorRequest) -> EmulatorReply:
        """Duo's 404 envelope."""
        return _fail(404, 40401, "Resource not found")

    def handle(self, request: EmulatorRequest) -> EmulatorReply:
        """Route one API request (runs with :attr:`lock` held)."""
        route = (request.method, request.path)
        if route == ("GET", PING_PATH):
            return _ok({"time": int(self.clock())})
        handlers = {
            ("GET", CHECK_PATH): self._check,
            ("POST", PREAUTH_PATH): self._preauth,
            ("POST", AUTH_PATH): self._auth,
            ("GET", AUTH_STATUS_PATH): self._auth_status,
        }
        handler = handlers.get(route)
        if handler is None:
            return self.not_found_reply(request)
        try:
            params = self._params(request)
            self._authenticate(request, params)
            self._note_secret(params.get("passcode"))
            return handler(params)
        except _DuoFailure as failure:
            return failure.reply

    def _check(self, params: Mapping[str, str]) -> EmulatorReply:
        return _ok({"time": int(self.clock())})

    def _lookup(self, params: Mapping[str, str]) -> DuoUser | None:
        username, user_id = params.get("username"), params.get("user_id")
        if not username and not user_id:
            raise _invalid("username")
        if self.require_ipaddr and not params.get("ipaddr"):
            raise _invalid("ipaddr")
        for user in self.users.values():
            if user.username == username or (user_id and user.user_id == user_id):
                return user
        return None

    def _preauth(self, params: Mapping[str, str]) -> EmulatorReply:
        user = self._lookup(params)
        result = self.unknown_user if user is None else user.preauth
        if user is not None and user.locked:
            return _ok({"result": "deny", "status_msg": _STATUS_MSG["locked_out"]})
        if result == "enroll":
            code = secrets.token_hex(8)
            url = f"https://{self.credentials.api_hostname}/portal?code={code}"
            return _ok(
                {
                    "result": "enroll",
                    "status_msg": "Enroll an authentication device to proceed",
                    "enroll_portal_url": url,
                }
            )
        if result == "allow":
            return _ok({"result": "allow", "status_msg": "Allowing unknown user"})
        if result == "deny" or user is None:
            return _ok({"result": "deny", "status_msg": "Login denied by policy."})
        return _ok(
            {
                "result": "auth",
                "status_msg": "Account is active",
                "devices": [self._describe_device(user, d) for d in user.devices],
            }
        )

    @staticmethod
    def _describe_device(user: DuoUser, device: DuoEmulatorDevice) -> dict[str, Any]:
        described: dict[str, Any] = {"device": device.device, "type": device.kind}
        if device.capabilities:
            described["capabilities"] = list(device.capabilities)
        described["name"] = device.name
        if device.number is not None:
            described["number"] = device.number
        if device.display_name is not None:
            described["display_name"] = device.display_name
        if "sms" in device.capabilities and user.sms_passcodes:
            described["sms_nextcode"] = user.sms_passcodes[0][0]
        return described

    def _auth(self, params: Mapping[str, str]) -> EmulatorReply:
        user = self._lookup(params)
        if user is None:
            raise _invalid("username")
        factor = params.get("factor")
        if factor not in ("auto", "push", "phone", "sms", "passcode"):
            raise _invalid("factor")
        if params.get("async", "0") not in ("0", "1"):
            raise _invalid("async")
        asynchronous = params.get("async") == "1"
        if user.locked:
            return self._final("locked_out", "deny")
        if user.preauth != "auth":
            return self._final("deny", "deny")
        if factor == "passcode":
            if asynchronous:
                raise _invalid("async")
            return self._check_passcode(user, params.get("passcode"))
        device = self._device(user, factor, params.get("device", "auto"))
        if factor == "auto":
            factor = "push" if "push" in device.capabilities else "phone"
        if factor == "sms":
            if asynchronous:
                raise _invalid("async")
            return self._send_sms(user)
        if not asynchronous:
            raise _invalid("async")
        txn = _Txn(
            txid=str(uuid.uuid4()),
            username=user.username,
            factor="push" if factor == "push" else "phone",
            device=device,
            started=self.clock(),
        )
        self._txns[txn.txid] = txn
        self._latest[user.username] = txn
        self._note_secret(txn.txid)
        return _ok({"txid": txn.txid})

    @staticmethod
    def _device(user: DuoUser, factor: str, device_id: str) -> DuoEmulatorDevice:
        wanted = ("push", "phone") if factor == "auto" else (factor,)
        for device in user.devices:
            if device_id in ("auto", device.device) and any(
                w in device.capabilities for w in wanted
            ):
                return device
        raise _invalid("device")

    def _send_sms(self, user: DuoUser) -> EmulatorReply:
        user.sms_passcodes = [
            f"{index % 10}{secrets.randbelow(10**6):06d}"
            for index in range(1, self.sms_batch_size + 1)
        ]
        user.sms_sent += 1
        for code in user.sms_passcodes:
            self._note_secret(code)
        return self._final("sent", "deny")

    def _check_passcode(self, user: DuoUser, passcode: str | None) -> EmulatorReply:
        if not passcode:
            raise _invalid("passcode")
        if passcode in user.sms_passcodes:
            user.sms_passcodes.remove(passcode)  # each SMS passcode works once
            ok = True
        else:
            ok = secrets.compare_digest(passcode.encode(), user.passcode.encode())
        if ok:
            user.failed_passcodes = 0
            return self._final("allow", "allow")
        user.failed_passcodes += 1
        if user.failed_passcodes >= self.lockout_count:
            user.locked = True
            return self._final("locked_out", "deny")
        return _ok(
            {
                "result": "deny",
                "status": "deny",
                "status_msg": "Incorrect passcode. Please try again.",
            }
        )

    @staticmethod
    def _final(status: str, result: str) -> EmulatorReply:
        return _ok({"result": result, "status": status, "status_msg": _STATUS_MSG[status]})

    def _state(self, txn: _Txn) -> str:
        if txn.state == "waiting" and self.clock() - txn.started > self.push_lifetime:
            txn.state = "timeout"
        return txn.state

    def _auth_status(self, params: Mapping[str, str]) -> EmulatorReply:
        txid = params.get("txid")
        txn = self._txns.get(txid or "")
        if txn is None:
            raise _invalid("txid")
        txn.polls += 1
        state = self._state(txn)
        if state == "waiting":
            if txn.factor == "push":
                status, message = "pushed", _STATUS_MSG["pushed"]
            elif txn.polls == 1:
                status, message = "calling", f"Dialing {txn.device.number or 'your phone'}..."
            else:
                status, message = "answered", _STATUS_MSG["answered"]
            return _ok({"result": "waiting", "status": status, "status_msg": message})
        return self._final(state, "allow" if state == "allow" else "deny")

    # -- faults and control -----------------------------------------------------

    def mangle_enums(self, obj: Any) -> Any:
        """Replace ``result``/``status`` and add an unknown capability to each device."""
        if not isinstance(obj, dict) or not isinstance(obj.get("response"), dict):
            return obj
        response = dict(obj["response"])
        for key in ("result", "status"):
            if isinstance(response.get(key), str):
                response[key] = UNKNOWN_ENUM_VALUE
        if isinstance(response.get("devices"), list):
            response["devices"] = [
                {**d, "capabilities": [*d.get("capabilities", []), UNKNOWN_ENUM_VALUE]}
                for d in response["devices"]
            ]
        return {**obj, "response": response}

    def apply_provider_fault(self, fault: Fault, request: EmulatorRequest) -> EmulatorReply:
        """``throttled``: Duo's HTTP 429 body, with ``Retry-After`` when the fault has one."""
        reply = _fail(429, 42901, "Too Many Requests")
        if fault.retry_after is not None:
            reply = attrs.evolve(
                reply, headers={**reply.headers, "Retry-After": str(fault.retry_after)}
            )
        return reply

    def handle_control(self, request: EmulatorRequest, route: str) -> EmulatorReply | None:
        """Duo control routes: answer pushes and calls, read passcodes, list users."""
        parts = route.split("/")
        try:
            if request.method == "POST" and len(parts) == 3 and parts[0] == "push":
                answer = parts[2]
                if answer not in ("approve", "deny", "fraud", "timeout"):
                    return None
                self.answer(parts[1], answer)  # type: ignore[arg-type]
                return EmulatorReply.json({"username": parts[1], "answer": answer})
            if request.method == "GET" and len(parts) == 2 and parts[0] == "sms":
                user = self._user(parts[1])
                return EmulatorReply.json(
                    {
                        "username": user.username,
                        "passcodes": list(user.sms_passcodes),
                        "sent": user.sms_sent,
                    }
                )
            if request.method == "GET" and len(parts) == 2 and parts[0] == "passcode":
                user = self._user(parts[1])
                return EmulatorReply.json({"username": user.username, "passcode": user.passcode})
            if request.method == "GET" and route == "users":
                return EmulatorReply.json([self._describe_user(u) for u in self.users.values()])
        except LookupError as exc:
            return EmulatorReply.json({"error": str(exc)}, status=409)
        return None

    def _describe_user(self, user: DuoUser) -> dict[str, Any]:
        return {
            "username": user.username,
            "user_id": user.user_id,
            "preauth": user.preauth,
            "devices": [self._describe_device(user, d) for d in user.devices],
            "passcode": user.passcode,
            "sms_sent": user.sms_sent,
            "locked": user.locked,
        }
