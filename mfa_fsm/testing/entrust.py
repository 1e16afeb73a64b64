"""Loopback emulator of the Entrust Identity as a Service (IDaaS) Authentication API.

The emulator follows Entrust's published documents: the "EXTERNAL plus
second-factor authentication" walkthrough, the Authentication API guide and
the OpenAPI schemas (``UserAuthenticateQueryResponse``,
``AuthenticatedResponse``, ``ErrorInfo``...). Field names, paths and flows are
the vendor's; where the vendor is silent the emulator makes a documented
choice (see "Emulator choices" below) so that clients are tested against
explicit, predictable behaviour.

Endpoints::

    POST /api/web/v2/authentication/users                                  query
    POST /api/web/v2/authentication/users/authenticate/{AUTHENTICATOR}     select
    POST /api/web/v1/authentication/users/authenticate/{AUTHENTICATOR}/complete
    POST /api/web/v1/authentication/logout

Control routes (besides the base ``/_emulator/faults`` and ``/_emulator/calls``)::

    POST /_emulator/push/{user}/approve | deny | flag   (deny body: {"reply": "CANCEL"})
    GET  /_emulator/otp/{user}          last OTP generated for the user
    GET  /_emulator/answer/{user}       expected answer to the user's open challenge
    GET  /_emulator/users               configured users, with their secrets

Demo users (``EntrustEmulator(demo_users=False)`` starts empty):

=========  ==========================  ==========================================
user       first factor                second factors / notes
=========  ==========================  ==========================================
jsmith     EXTERNAL                    TOKENPUSH, TOKEN, OTP, KBA, GRID,
                                       TEMP_ACCESS_CODE (John Smith)
pwuser     PASSWORD_AND_SECONDFACTOR   password ``Passw0rd!``; TOKENPUSH, TOKEN, OTP
lowrisk    EXTERNAL                    OTP; risk rule needs no second factor, so
                                       ``EXTERNAL/complete`` finishes the login
pushmc     EXTERNAL                    TOKENPUSH, SMARTCREDENTIALPUSH, FACE with a
                                       two-digit push mutual challenge
otpuser    (single factor)             OTP, TOKEN offered as first factors
blocked    EXTERNAL                    the query is refused with HTTP 403 (RBA deny)
=========  ==========================  ==========================================

Every demo user has token code ``DEMO_TOKEN_CODE``, temporary access code
``DEMO_TEMP_ACCESS_CODE`` and the KBA answers in ``DEMO_KBA``.

Emulator choices (the vendor documents do not settle these):

* Every answer validates against the response schema of the vendor's OpenAPI
  document (5.46) for its path and status; the schemas mark no field nullable,
  so fields without a value are left out rather than sent as ``null``
  (recorded replies show ``null``; a client must read both the same way).
* ``enableWebSession: true`` on the completing call sets the
  ``INTELLITRUST_SESSION_ID`` cookie (HttpOnly; Secure with ``tls=True``).

* The query returns a ``token`` for EXTERNAL users; that token authorises
  ``EXTERNAL/complete``. (A select on ``.../authenticate/EXTERNAL`` with
  ``userId`` is accepted too and also yields such a token; with
  ``query_tokens=False`` the query sends no token and that select is the only
  way in.) Other users get
  no ``token`` from the query and start with a select.
* Error codes besides the vendor's ``invalid_user_response`` and
  ``no_transaction``: ``invalid_request`` (400: malformed body, missing
  ``applicationId``/``userId``...), ``invalid_authenticator`` (400: unknown
  name in the path, or a path that does not match the open challenge),
  ``authenticator_not_available`` (403: a valid name the user may not use at
  this step), ``application_not_found`` (404), ``user_not_found`` (404),
  ``access_denied`` (403: RBA refuses the query), ``invalid_token`` (401:
  missing, unknown, already-rotated, or wrong-step token), ``token_expired``
  (401), ``authenticator_locked`` (403), ``not_found`` (404: unknown path).
  ``invalid_user_response`` and ``no_transaction`` answer with HTTP 400.
* A wrong answer leaves the same token valid for a retry. The
  ``lockout_count``-th consecutive wrong answer locks that authenticator for
  that user: that answer and every later use get ``authenticator_locked``
  (403). A correct answer resets the counter. Push denials do not count.
* Sessions last ``session_lifetime`` seconds from the first call of the
  transaction; later steps do not extend them (as in the vendor examples).
  A push expires ``push_lifetime`` seconds after its select; polls then get
  ``no_transaction`` (the IdP-side expiry). A denial, flag or cancel is
  reported once (as 200 ``CANCEL`` by default, or ``no_transaction`` when
  ``deny_push(reply="no_transaction")``; 200 ``CONCERN``); every poll after
  that gets ``no_transaction``.
* ``cancel: true`` on complete answers 200 ``status: "CANCEL"`` with
  ``token: null`` and ends the challenge: a cancelled push answers later
  polls with ``no_transaction``; any other challenge's token stops working.
* A ``userId`` sent along with a token must be the token's user (400
  ``invalid_request`` otherwise).
* Logout accepts any live token of a transaction and ends the transaction;
  it answers 200 with an empty body.
* ``poll_count(user)`` counts the polls of the user's latest push only.
* Locked authenticators stay listed in ``availableSecondFactor``; only
  ``authenticatorLockoutStatus`` shows them locked.
* OTPs are 8 random digits (the tenant default length) valid for the rest of
  the session; TOKEN answers are compared with the user's current
  ``token_code``; KBA answers are case-insensitive; GRID answers ignore case
  and spaces. ``AuthenticatedResponse`` bodies carry the fields of the vendor
  examples plus the challenge fields (no ``userId``, which the examples omit).
* Faults: ``unknown_enum`` replaces ``status``/``otpdeliveryType`` and appends
  an unknown name to ``authenticationTypes``/``availableSecondFactor``;
  ``stale_success`` (Entrust only) replays an earlier success body instead of
  handling the request.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import attrs

from mfa_fsm.testing._server import (
    BASE_FAULT_KINDS,
    UNKNOWN_ENUM_VALUE,
    EmulatorReply,
    EmulatorRequest,
    EmulatorServer,
    Fault,
)

__all__ = [
    "AUTHENTICATORS",
    "DEFAULT_APPLICATION_ID",
    "DEMO_KBA",
    "DEMO_TEMP_ACCESS_CODE",
    "DEMO_TOKEN_CODE",
    "PUSH_AUTHENTICATORS",
    "SUPPORTED_AUTHENTICATORS",
    "EntrustEmulator",
    "EntrustUser",
]

#: Application id the emulator accepts unless told otherwise.
DEFAULT_APPLICATION_ID = "6781549d-433c-44ea-a42f-4705c26f3245"

#: Every authenticator name of the vendor's enum (valid in URL paths).
AUTHENTICATORS: frozenset[str] = frozenset(
    {
        "MACHINE",
        "PASSWORD",
        "EXTERNAL",
        "KBA",
        "TEMP_ACCESS_CODE",
        "OTP",
        "GRID",
        "TOKEN",
        "TOKENCR",
        "TOKENPUSH",
        "FIDO",
        "SMARTCREDENTIALPUSH",
        "PASSWORD_AND_SECONDFACTOR",
        "SMART_LOGIN",
        "IDP",
        "PASSKEY",
        "IDP_AND_SECONDFACTOR",
        "USER_CERTIFICATE",
        "FACE",
        "PASSTHROUGH",
        "MAGICLINK",
    }
)
#: Authenticators completed by polling instead of a typed answer.
PUSH_AUTHENTICATORS: frozenset[str] = frozenset({"TOKENPUSH", "SMARTCREDENTIALPUSH", "FACE"})
#: Authenticators the emulator can challenge (as second or single factor).
SUPPORTED_AUTHENTICATORS: frozenset[str] = PUSH_AUTHENTICATORS | {
    "OTP",
    "TOKEN",
    "KBA",
    "GRID",
    "TEMP_ACCESS_CODE",
}
#: Authenticators IDaaS offers that a server-side client cannot drive (a FIDO2 security key
#: or passkey needs the browser's WebAuthn): a user may have them, to show how a client
#: offers them as unavailable; selecting one is refused.
UNDRIVABLE_AUTHENTICATORS: frozenset[str] = frozenset({"FIDO"})
OTP_DELIVERIES: frozenset[str] = frozenset({"EMAIL", "SMS", "VOICE", "WECHAT", "WHATSAPP"})
FirstFactor = Literal["EXTERNAL", "PASSWORD_AND_SECONDFACTOR"]

DEMO_TOKEN_CODE = "24681357"  # noqa: S105 - demo fixture
DEMO_TEMP_ACCESS_CODE = "TAC-4242"
#: The demo *application's* own passwords for the EXTERNAL users: IDaaS never sees them.
#: ``mfa-fsm demo`` and ``mfa-fsm login --emulator`` check one before they vouch for the
#: user (the application owns the first factor of an EXTERNAL login).
DEMO_APP_PASSWORDS: Mapping[str, str] = {
    "jsmith": "jsmith-app-password",
    "pushmc": "pushmc-app-password",
    "lowrisk": "lowrisk-app-password",
    "blocked": "blocked-app-password",
}
DEMO_KBA: Mapping[str, str] = {
    "What was the name of your first pet?": "Rex",
    "In what city were you born?": "Ottawa",
    "What is your favourite colour?": "Teal",
}
# Contact values are masked in query answers, as the vendor does.
MASKED_CONTACTS: Mapping[str, str] = {
    "EMAIL": "j*****@example.com",
    "SMS": "******1234",
    "VOICE": "******1234",
    "WECHAT": "******1234",
    "WHATSAPP": "******1234",
}
# Entrust grid cards use this alphabet (no easily confused letters).
GRID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUVWXY"
GRID_ROWS, GRID_COLUMNS, GRID_CELLS_ASKED = 5, 10, 3

QUERY_PATH = "/api/web/v2/authentication/users"
LOGOUT_PATH = "/api/web/v1/authentication/logout"
SELECT_RE = re.compile(r"^/api/web/v2/authentication/users/authenticate/([^/]+)$")
COMPLETE_RE = re.compile(r"^/api/web/v1/authentication/users/authenticate/([^/]+)/complete$")


class _ApiError(Exception):
    """An ``ErrorInfo`` answer, raised from deep inside a handler."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _error_reply(status: int, code: str, message: str = "") -> EmulatorReply:
    return EmulatorReply.json(
        {"errorCode": code, "errorMessage": message, "parameters": []}, status=status
    )


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _without_nulls(reply: EmulatorReply) -> EmulatorReply:
    """``reply`` with every null-valued JSON field left out (at any depth)."""
    parsed = reply.parsed_json()
    if not isinstance(parsed, dict):
        return reply
    return attrs.evolve(reply, body=json.dumps(_drop_nulls(parsed)).encode())


def _new_token() -> str:
    # Opaque base64 like the vendor's examples, which all start with "G":
    # a first byte of 0x18-0x1B encodes to that letter.
    raw = bytes([0x18 | secrets.randbelow(4)]) + secrets.token_bytes(359)
    return base64.b64encode(raw).decode()


def _user_machine_settings() -> dict[str, Any]:
    return {
        "machineAuthenticatorEnabled": True,
        "deviceFingerprintRequired": False,
        "attributeExclusions": [],
        "userMachineAuthenticators": [],
    }


def _demo_grid(seed: str) -> tuple[tuple[str, ...], ...]:
    # Deterministic per user so a grid card can be "printed" from the seed.
    rng = random.Random(seed)  # noqa: S311 - test fixture, not a secret
    return tuple(
        tuple(rng.choice(GRID_ALPHABET) for _ in range(GRID_COLUMNS)) for _ in range(GRID_ROWS)
    )


@attrs.define
class EntrustUser:
    """A user of the emulated tenant. Mutable so tests can change secrets mid-test."""

    user_id: str
    first_name: str
    last_name: str
    #: ``EXTERNAL``, ``PASSWORD_AND_SECONDFACTOR``, or ``None`` for single factor
    #: (then :attr:`authenticators` are offered as first factors).
    first_factor: FirstFactor | None
    authenticators: tuple[str, ...]
    password: str | None = None
    otp_deliveries: tuple[str, ...] = ("SMS", "EMAIL", "VOICE")
    kba: Mapping[str, str] = attrs.field(factory=dict)
    kba_question_count: int = 2
    grid: tuple[tuple[str, ...], ...] = ()
    grid_serial: str = "GRID-0001"
    token_code: str = DEMO_TOKEN_CODE
    token_serial: str = "TOKEN-0001"  # noqa: S105 - a serial number
    temp_access_code: str = DEMO_TEMP_ACCESS_CODE
    #: The resource rule needs no second factor for this user's risk level.
    risk_no_second_factor: bool = False
    push_mutual_challenge: bool = False
    #: The resource rule refuses access outright (query answers 403).
    access_denied: bool = False
    #: Consecutive wrong answers per authenticator.
    failures: dict[str, int] = attrs.field(factory=dict)
    #: Lockout time (epoch seconds) per locked authenticator.
    locked_at: dict[str, float] = attrs.field(factory=dict)

    @property
    def authentication_types(self) -> list[str]:
        """What the query reports in ``authenticationTypes``."""
        return [self.first_factor] if self.first_factor else list(self.authenticators)

    @property
    def second_factors(self) -> list[str]:
        """What the query reports in ``availableSecondFactor`` (empty for single factor)."""
        return list(self.authenticators) if self.first_factor else []

    @property
    def lockable(self) -> list[str]:
        """Authenticators with a lockout counter (those that take an answer)."""
        names = ["PASSWORD"] if self.first_factor == "PASSWORD_AND_SECONDFACTOR" else []
        undriven = PUSH_AUTHENTICATORS | UNDRIVABLE_AUTHENTICATORS
        return names + [a for a in self.authenticators if a not in undriven]


@attrs.define
class _Push:
    """One push notification sent to the user's device."""

    authenticator: str
    created: float
    mutual_challenge: str | None
    state: Literal["pending", "approved", "denied", "flagged", "gone"] = "pending"
    #: How a denial is reported: 200 ``status: "CANCEL"`` or the ``no_transaction`` error.
    deny_reply: Literal["no_transaction", "CANCEL"] = "CANCEL"
    polls: int = 0


@attrs.define
class _Challenge:
    """The open challenge of a transaction: what complete must receive."""

    authenticator: str  # the factor being answered (OTP, PASSWORD, TOKENPUSH...)
    path: str  # the authenticator complete's URL must name
    expected: str | None = None  # fixed answer (OTP, grid, temp code...), if any
    kba_id: str | None = None
    kba: dict[str, str] = attrs.field(factory=dict)  # question id -> question text
    cells: list[tuple[int, int]] = attrs.field(factory=list)  # grid (row, column) asked
    push: _Push | None = None
    otp_delivery: str | None = None


@attrs.define
class _Txn:
    """One authentication transaction; holds the only live token of its chain."""

    user: EntrustUser
    expires_at: float
    #: What the live token may be used for next.
    next_step: Literal["complete", "select", "session", "closed"]
    stage: Literal["first", "second"] = "first"
    challenge: _Challenge | None = None
    token: str | None = None


class EntrustEmulator(EmulatorServer):
    """Loopback emulator of the Entrust IDaaS Authentication API (see module docs).

    Args:
        application_id: the only ``applicationId`` accepted.
        session_lifetime: seconds a transaction's tokens live (not extended).
        push_lifetime: seconds a push waits for the user before expiring.
        query_tokens: whether the query hands EXTERNAL users a ``token``; with
            ``False`` it sends none (as the seed's example query reply), so the
            client must select EXTERNAL with ``userId`` (v5.46
            ``UserChallengeParameters.userId``: "required for non-passwordless
            authenticators").
        lockout_count: consecutive wrong answers that lock an authenticator.
        demo_users: add the demo users listed in the module docstring.
        require_client_ip: answer 400 when a call lacks ``clientIp`` (the
            tenant's "Provided in the API" client-IP source).
        tls: serve HTTPS with a certificate from a throwaway authority whose PEM
            file is :attr:`ca_file` (see :mod:`mfa_fsm.testing._server`).
        reselect: accept a select whose ``authToken`` is the token of a running
            second-factor challenge (as Entrust integrations' "resend authentication
            request"): a new code or push, a new token. With ``False`` such a select is
            refused (401 ``invalid_token``), a tenant that does not allow it.
    """

    fault_kinds: ClassVar[frozenset[str]] = BASE_FAULT_KINDS | {"stale_success"}

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        application_id: str = DEFAULT_APPLICATION_ID,
        session_lifetime: float = 900.0,
        push_lifetime: float = 300.0,
        lockout_count: int = 5,
        demo_users: bool = True,
        require_client_ip: bool = False,
        query_tokens: bool = True,
        tls: bool = False,
        reselect: bool = True,
    ) -> None:
        super().__init__(host, port, tls=tls)
        self.reselect = reselect
        self.query_tokens = query_tokens
        self.application_id = application_id
        self.session_lifetime = session_lifetime
        self.push_lifetime = push_lifetime
        self.lockout_count = lockout_count
        self.require_client_ip = require_client_ip
        self.users: dict[str, EntrustUser] = {}
        self._tokens: dict[str, _Txn] = {}
        self._pushes: dict[str, _Push] = {}  # latest push per user
        self._otps: dict[str, str] = {}  # latest OTP per user
        self._open: dict[str, _Challenge] = {}  # latest challenge per user
        self._last_success: dict[str, Any] | None = None
        if demo_users:
            self._add_demo_users()

    # -- configuration -----------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        first_name: str = "Test",
        last_name: str = "User",
        password: str | None = None,
        first_factor: FirstFactor | None = "EXTERNAL",
        authenticators: Iterable[str] = ("OTP", "TOKEN", "TOKENPUSH"),
        otp_deliveries: Iterable[str] = ("SMS", "EMAIL", "VOICE"),
        kba: Mapping[str, str] | None = None,
        kba_question_count: int = 2,
        grid: Sequence[Sequence[str]] | None = None,
        token_code: str = DEMO_TOKEN_CODE,
        temp_access_code: str = DEMO_TEMP_ACCESS_CODE,
        risk_no_second_factor: bool = False,
        push_mutual_challenge: bool = False,
        access_denied: bool = False,
    ) -> EntrustUser:
        """Add (or replace) a user and return it.

        ``authenticators`` lists second factors, or first factors when
        ``first_factor`` is ``None``; each must be in
        :data:`SUPPORTED_AUTHENTICATORS`. ``grid`` is a list of rows of cell
        strings (default: a 5x10 card derived from ``user_id``).
        """
        names = tuple(authenticators)
        unsupported = set(names) - SUPPORTED_AUTHENTICATORS - UNDRIVABLE_AUTHENTICATORS
        if unsupported:
            raise ValueError(f"unsupported authenticators: {sorted(unsupported)}")
        if first_factor not in (None, "EXTERNAL", "PASSWORD_AND_SECONDFACTOR"):
            raise ValueError(f"unsupported first factor {first_factor!r}")
        if first_factor == "PASSWORD_AND_SECONDFACTOR" and password is None:
            raise ValueError("PASSWORD_AND_SECONDFACTOR users need a password")
        deliveries = tuple(otp_deliveries)
        if "OTP" in names and not deliveries:
            raise ValueError("OTP users need at least one OTP delivery type")
        if set(deliveries) - OTP_DELIVERIES:
            raise ValueError(f"OTP deliveries must be among {sorted(OTP_DELIVERIES)}")
        kba = dict(DEMO_KBA if kba is None else kba)
        if "KBA" in names and len(kba) < kba_question_count:
            raise ValueError("KBA users need at least kba_question_count questions")
        user = EntrustUser(
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            first_factor=first_factor,
            authenticators=names,
            password=password,
            otp_deliveries=deliveries,
            kba=kba,
            kba_question_count=kba_question_count,
            grid=_demo_grid(user_id) if grid is None else tuple(tuple(r) for r in grid),
            token_code=token_code,
            temp_access_code=temp_access_code,
            risk_no_second_factor=risk_no_second_factor,
            push_mutual_challenge=push_mutual_challenge,
            access_denied=access_denied,
        )
        with self.lock:
            self.users[user_id] = user
        return user

    def _add_demo_users(self) -> None:
        self.add_user(
            "jsmith",
            first_name="John",
            last_name="Smith",
            authenticators=("TOKENPUSH", "TOKEN", "OTP", "KBA", "GRID", "TEMP_ACCESS_CODE"),
        )
        self.add_user(
            "pwuser",
            first_name="Pat",
            last_name="Wong",
            password="Passw0rd!",  # noqa: S106 - demo fixture
            first_factor="PASSWORD_AND_SECONDFACTOR",
            authenticators=("TOKENPUSH", "TOKEN", "OTP"),
        )
        self.add_user(
            "lowrisk",
            first_name="Lou",
            last_name="Risk",
            authenticators=("OTP",),
            risk_no_second_factor=True,
        )
        self.add_user(
            "pushmc",
            first_name="Mia",
            last_name="Chen",
            authenticators=("TOKENPUSH", "SMARTCREDENTIALPUSH", "FACE"),
            push_mutual_challenge=True,
        )
        self.add_user(
            "otpuser",
            first_name="Olga",
            last_name="Petrova",
            first_factor=None,
            authenticators=("OTP", "TOKEN"),
        )
        self.add_user("blocked", first_name="Bo", last_name="Locked", access_denied=True)

    # -- helpers for tests (thread-safe) -------------------------------------

    def last_otp(self, user_id: str) -> str | None:
        """The most recent OTP generated for ``user_id``, if any."""
        with self.lock:
            return self._otps.get(user_id)

    def token_code(self, user_id: str) -> str:
        """The code the user's (soft) token currently shows."""
        with self.lock:
            return self._user(user_id).token_code

    def expected_response(self, user_id: str) -> str | None:
        """The correct ``response`` for the user's latest challenge.

        ``None`` for challenges answered without a ``response`` (push, KBA);
        use :meth:`kba_answers` for KBA.
        """
        with self.lock:
            challenge = self._open.get(user_id)
            if challenge is None:
                return None
            if challenge.authenticator == "TOKEN":
                return self._user(user_id).token_code
            return challenge.expected

    def kba_answers(self, user_id: str) -> dict[str, str]:
        """The user's KBA answers keyed by question text."""
        with self.lock:
            return dict(self._user(user_id).kba)

    def grid_value(self, user_id: str, row: int, column: int) -> str:
        """The value of one cell of the user's grid card."""
        with self.lock:
            return self._user(user_id).grid[row][column]

    def approve_push(self, user_id: str, *, number: str | None = None) -> None:
        """Approve the user's pending push, as if tapped on the phone.

        ``number`` is the mutual challenge the user tapped, for a push that shows one
        (Entrust's user guide, "Log in using mutual authentication": the user taps the
        challenge that matches the one on the login screen). Tapping another number refuses
        the push, as a denial does (status ``CANCEL`` on the next poll): the vendor documents
        do not say what the IdP answers then, so the emulator reads the wrong tap as the user
        saying "not me". Raises LookupError when no push is pending.
        """
        with self.lock:
            push = self._pending_push(user_id)
            if number is not None and push.mutual_challenge not in (None, number):
                push.state, push.deny_reply = "denied", "CANCEL"
            else:
                push.state = "approved"

    def deny_push(
        self, user_id: str, *, reply: Literal["no_transaction", "CANCEL"] = "CANCEL"
    ) -> None:
        """Deny the user's pending push.

        ``reply`` chooses how the next poll learns it: a 200 with ``status: "CANCEL"``
        (default: the spec's ``AuthenticatedResponse.status`` value for the user's explicit
        refusal) or the ``no_transaction`` ErrorInfo the vendor guide shows for a Cancel.
        ``no_transaction`` is also what a push past its lifetime answers, so a client cannot
        tell the two apart from it and (mfa_fsm) reports it as expired, not denied.
        """
        if reply not in ("no_transaction", "CANCEL"):
            raise ValueError("reply must be 'no_transaction' or 'CANCEL'")
        with self.lock:
            push = self._pending_push(user_id)
            push.state, push.deny_reply = "denied", reply

    def flag_push(self, user_id: str) -> None:
        """Flag the user's pending push as suspicious (``status: "CONCERN"``)."""
        with self.lock:
            self._pending_push(user_id).state = "flagged"

    def poll_count(self, user_id: str) -> int:
        """How many times the client polled the user's latest push."""
        with self.lock:
            push = self._pushes.get(user_id)
            return push.polls if push else 0

    def push_mutual_challenge(self, user_id: str) -> str | None:
        """The mutual challenge shown with the user's latest push, if any."""
        with self.lock:
            push = self._pushes.get(user_id)
            return push.mutual_challenge if push else None

    def push_pending(self, user_id: str) -> bool:
        """Whether the user has a push waiting for the phone (not answered, not expired);
        False for an unknown user."""
        with self.lock:
            try:
                self._pending_push(user_id)
            except LookupError:
                return False
            return True

    def pending_mutual_challenge(self, user_id: str) -> str | None:
        """The mutual challenge of the user's push while it waits for the phone, or None (no
        push pending, none shown, or no such user)."""
        with self.lock:
            try:
                return self._pending_push(user_id).mutual_challenge
            except LookupError:
                return None

    def remaining_attempts(self, user_id: str, authenticator: str) -> int:
        """Wrong answers the user may still give before ``authenticator`` locks."""
        with self.lock:
            user = self._user(user_id)
            return max(0, self.lockout_count - user.failures.get(authenticator, 0))

    def unlock(self, user_id: str, authenticator: str | None = None) -> None:
        """Clear lockouts (all, or one authenticator's), as an administrator would."""
        with self.lock:
            user = self._user(user_id)
            for name in [authenticator] if authenticator else list(user.failures):
                user.failures.pop(name, None)
                user.locked_at.pop(name, None)

    def _user(self, user_id: str) -> EntrustUser:
        try:
            return self.users[user_id]
        except KeyError:
            raise LookupError(f"no such user {user_id!r}") from None

    def _pending_push(self, user_id: str) -> _Push:
        self._user(user_id)
        push = self._pushes.get(user_id)
        if push is None or push.state != "pending" or self._push_expired(push):
            raise LookupError(f"no pending push for {user_id!r}")
        return push

    # -- time and tokens -------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _push_expired(self, push: _Push) -> bool:
        return self.clock() > push.created + self.push_lifetime

    def _issue(self, txn: _Txn, next_step: Literal["complete", "select", "session"]) -> str:
        """Rotate the transaction's token: the old one stops working at once."""
        if txn.token is not None:
            self._tokens.pop(txn.token, None)
        txn.token = _new_token()
        txn.next_step = next_step
        self._tokens[txn.token] = txn
        return txn.token

    def _close(self, txn: _Txn) -> None:
        if txn.token is not None:
            self._tokens.pop(txn.token, None)
        txn.token, txn.next_step = None, "closed"

    def _txn_for(self, token: str | None, step: str) -> _Txn:
        """Find the transaction whose live token is ``token``, usable for ``step``."""
        if not token:
            raise _ApiError(401, "invalid_token", "Authorization token is required")
        txn = self._tokens.get(token)
        if txn is None:
            raise _ApiError(401, "invalid_token", "Authorization token is invalid")
        if self.clock() > txn.expires_at:
            raise _ApiError(401, "token_expired", "Authorization token has expired")
        if txn.next_step != step:
            raise _ApiError(401, "invalid_token", f"Token cannot be used to {step}")
        return txn

    @staticmethod
    def _bearer(request: EmulatorRequest) -> str | None:
        # The vendor accepts the header "with or without a type value of Bearer".
        value = (request.header("Authorization") or "").strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        return value or None

    # -- request plumbing --------------------------------------------------

    def bad_request_reply(self, message: str) -> EmulatorReply:
        """Malformed requests answer ``invalid_request`` ErrorInfo (HTTP 400)."""
        return _error_reply(400, "invalid_request", message)

    def not_found_reply(self, request: EmulatorRequest) -> EmulatorReply:
        """Unknown paths answer ``not_found`` ErrorInfo (HTTP 404)."""
        return _error_reply(404, "not_found", f"No resource at {request.method} {request.path}")

    def handle(self, request: EmulatorRequest) -> EmulatorReply:
        """Route one API request; every failure becomes an ``ErrorInfo`` answer.

        Fields without a value are left out of every JSON answer: the vendor's response
        schemas (OpenAPI 5.46) mark no field nullable, so ``null`` would break them.
        """
        return _without_nulls(self._route(request))

    def _route(self, request: EmulatorRequest) -> EmulatorReply:
        try:
            if request.method == "POST":
                if request.path == QUERY_PATH:
                    return self._query(self._body(request))
                if request.path == LOGOUT_PATH:
                    return self._logout(request)
                if match := SELECT_RE.match(request.path):
                    return self._select(self._authenticator(match[1]), self._body(request))
                if match := COMPLETE_RE.match(request.path):
                    name = self._authenticator(match[1])
                    body = self._body(request)
                    reply = self._complete(name, body, self._bearer(request))
                    return self._web_session(body, reply)
            return self.not_found_reply(request)
        except _ApiError as exc:
            return _error_reply(exc.status, exc.code, exc.message)

    def _web_session(self, body: Mapping[str, Any], reply: EmulatorReply) -> EmulatorReply:
        # enableWebSession: true on the completing call makes the service set the
        # INTELLITRUST_SESSION_ID cookie, "returned in all subsequent requests using the
        # auth token" (Entrust IDaaS Authentication API, UserAuthenticateParameters).
        parsed = reply.parsed_json()
        completed = isinstance(parsed, dict) and parsed.get("authenticationCompleted") is True
        if body.get("enableWebSession") is not True or not completed:
            return reply
        secure = "; Secure" if self.tls else ""
        cookie = f"INTELLITRUST_SESSION_ID={secrets.token_urlsafe(32)}; Path=/; HttpOnly{secure}"
        return attrs.evolve(reply, set_cookies=(*reply.set_cookies, cookie))

    def _body(self, request: EmulatorRequest) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise _ApiError(400, "invalid_request", "Request body must be a JSON object")
        app_id = body.get("applicationId")
        if not app_id:
            raise _ApiError(400, "invalid_request", "Application id cannot be null")
        if app_id != self.application_id:
            raise _ApiError(404, "application_not_found", f"Application {app_id} not found")
        if self.require_client_ip and not body.get("clientIp"):
            raise _ApiError(400, "invalid_request", "Client IP address cannot be null")
        return body

    @staticmethod
    def _authenticator(name: str) -> str:
        if name not in AUTHENTICATORS:
            raise _ApiError(400, "invalid_authenticator", f"Unknown authenticator {name}")
        return name

    def _lookup_user(self, body: Mapping[str, Any]) -> EntrustUser:
        user_id = body.get("userId")
        if not user_id:
            raise _ApiError(400, "invalid_request", "User id cannot be null")
        user = self.users.get(str(user_id))
        if user is None:
            raise _ApiError(404, "user_not_found", f"User {user_id} not found")
        return user

    def _new_txn(self, user: EntrustUser) -> _Txn:
        return _Txn(user, self.clock() + self.session_lifetime, next_step="closed")

    # -- query ------------------------------------------------------------

    def _query(self, body: Mapping[str, Any]) -> EmulatorReply:
        user = self._lookup_user(body)
        if user.access_denied:
            raise _ApiError(403, "access_denied", "Access denied by the resource rule")
        token: str | None = None
        expires: int | None = None
        completed = False
        auth_token = body.get("authToken")
        session = self._tokens.get(auth_token) if isinstance(auth_token, str) else None
        if session and session.user is user and session.next_step == "session":
            # A still-valid authenticated token needs no new challenge.
            if self.clock() <= session.expires_at:
                completed, token = True, session.token
                expires = int(session.expires_at * 1000)
        elif user.first_factor == "EXTERNAL" and self.query_tokens:
            # EXTERNAL has no challenge to select, so the query hands out the
            # token that authorises EXTERNAL/complete.
            txn = self._new_txn(user)
            token = self._issue(txn, "complete")
            txn.challenge = _Challenge("EXTERNAL", "EXTERNAL")
            expires = int(txn.expires_at * 1000)
        return EmulatorReply.json(
            {
                "authenticationTypes": user.authentication_types,
                "availableSecondFactor": user.second_factors or None,
                "authenticationCompleted": completed,
                "authenticatorLockoutStatus": self._lockout_status(user),
                "otpDeliveryInfo": self._otp_info(user),
                "otpDeliveryType": None,
                "registrationRequired": False,
                "verificationRequired": False,
                "passwordResetAllowed": False,
                "deviceCertAuthDesired": False,
                "supportsSignature": False,
                "organizations": [],
                "machineAuthenticator": None,
                "userMachineSettings": _user_machine_settings(),
                "token": token,
                "expires": expires,
                "time": self._now_ms(),
            }
        )

    def _lockout_status(self, user: EntrustUser) -> list[dict[str, Any]]:
        statuses = []
        for name in user.lockable:
            locked_at = user.locked_at.get(name)
            statuses.append(
                {
                    "type": name,
                    "name": None,
                    "locked": locked_at is not None,
                    "lockoutDate": _iso(locked_at),
                    "lockoutExpiryDate": None,  # lockoutLifetime 0: until unlocked
                    "remainingAuthenticationAttempts": max(
                        0, self.lockout_count - user.failures.get(name, 0)
                    ),
                }
            )
        return statuses

    @staticmethod
    def _otp_info(user: EntrustUser) -> dict[str, Any] | None:
        if "OTP" not in user.authenticators:
            return None
        return {
            "otpDefaultDelivery": user.otp_deliveries[0],
            "availableOTPDelivery": list(user.otp_deliveries),
            "otpDeliveryAttribute": None,
            "otpContactValues": [
                {"name": kind.lower(), "type": kind, "value": MASKED_CONTACTS[kind]}
                for kind in user.otp_deliveries
            ],
        }

    # -- select -----------------------------------------------------------

    def _select(self, path: str, body: Mapping[str, Any]) -> EmulatorReply:
        txn, factor = self._select_target(path, body)
        challenge = self._challenge(txn.user, path, factor, body)
        txn.challenge = challenge
        self._open[txn.user.user_id] = challenge
        token = self._issue(txn, "complete")
        extra = self._challenge_fields(txn.user, challenge)
        return EmulatorReply.json(self._auth_response(txn, token=token, **extra))

    def _select_target(self, path: str, body: Mapping[str, Any]) -> tuple[_Txn, str]:
        """Check a select is allowed; return its transaction and the factor to challenge."""
        auth_token = body.get("authToken")
        if not auth_token:
            # A first step: the factor is the path; it starts a new transaction.
            user = self._lookup_user(body)
            allowed: list[str]
            if path in ("EXTERNAL", "PASSWORD_AND_SECONDFACTOR"):
                allowed = [user.first_factor] if user.first_factor else []
            else:
                # Without a token only single-factor users may go straight to a factor.
                allowed = [] if user.first_factor else user.authentication_types
            if path not in allowed:
                raise _ApiError(403, "authenticator_not_available", f"{path} is not available")
            return self._new_txn(user), path
        txn = self._txn_for(str(auth_token), self._select_step(str(auth_token)))
        self._check_same_user(txn, body)
        factor = path
        if txn.user.first_factor == "PASSWORD_AND_SECONDFACTOR":
            # The second factor stays on the PASSWORD_AND_SECONDFACTOR path and
            # is named in the body.
            if path != "PASSWORD_AND_SECONDFACTOR":
                raise _ApiError(403, "authenticator_not_available", f"{path} is not available")
            named = body.get("secondFactorAuthenticator")
            if not named:
                raise _ApiError(
                    400, "invalid_request", "Second factor authenticator cannot be null"
                )
            factor = self._authenticator(str(named))
        if factor not in txn.user.second_factors:
            raise _ApiError(403, "authenticator_not_available", f"{factor} is not available")
        return txn, factor

    def _select_step(self, token: str) -> str:
        """The step a select's ``authToken`` must be good for: ``select``, or, with
        :attr:`reselect`, the ``complete`` of a running second-factor challenge (a new
        select then resends it, or challenges another authenticator; the old challenge and
        its token end)."""
        txn = self._tokens.get(token)
        running = txn is not None and txn.stage == "second" and txn.challenge is not None
        if self.reselect and running and txn is not None and txn.next_step == "complete":
            return "complete"
        return "select"

    @staticmethod
    def _challenge_fields(user: EntrustUser, challenge: _Challenge) -> dict[str, Any]:
        """The ``AuthenticatedResponse`` fields that present ``challenge`` to the client."""
        factor = challenge.authenticator
        fields: dict[str, Any] = {"otpdeliveryType": challenge.otp_delivery}
        if factor == "KBA":
            questions = [
                {"id": qid, "question": question, "answer": None}
                for qid, question in challenge.kba.items()
            ]
            fields["kbaChallenge"] = {"id": challenge.kba_id, "userQuestions": questions}
        elif factor == "GRID":
            fields["gridChallenge"] = {
                "challenge": [{"row": r, "column": c} for r, c in challenge.cells],
                "cellAlphabets": GRID_ALPHABET,
                "numCharsPerCell": len(user.grid[0][0]),
                "gridInfo": [{"serialNumber": user.grid_serial, "expiryDate": None}],
            }
        elif factor == "TEMP_ACCESS_CODE":
            fields["tempAccessCodeChallenge"] = {"adminContact": None, "enableAdminContact": False}
        if factor in ("TOKEN", "TOKENPUSH"):
            fields["tokenDetails"] = [user.token_serial]
        if challenge.push is not None:
            # tokenPushMutualChallenge is the deprecated name; send both.
            fields["pushMutualChallenge"] = challenge.push.mutual_challenge
            fields["tokenPushMutualChallenge"] = challenge.push.mutual_challenge
        if factor == "FACE":
            run_id = str(uuid.uuid4())
            fields["faceChallenge"] = {
                "device": "MOBILE",
                "id": run_id,
                "qrCode": None,
                "sdkToken": None,
                "workflowRunId": run_id,
            }
        return fields

    def _challenge(
        self, user: EntrustUser, path: str, factor: str, body: Mapping[str, Any]
    ) -> _Challenge:
        """Create the challenge for ``factor``, as the service would on select."""
        self._check_not_locked(
            user, "PASSWORD" if factor == "PASSWORD_AND_SECONDFACTOR" else factor
        )
        if factor == "EXTERNAL":
            return _Challenge("EXTERNAL", path)
        if factor == "PASSWORD_AND_SECONDFACTOR":
            return _Challenge("PASSWORD", path, expected=user.password)
        if factor == "OTP":
            delivery = body.get("otpDeliveryType") or user.otp_deliveries[0]
            if delivery not in user.otp_deliveries:
                raise _ApiError(
                    400, "invalid_request", f"OTP delivery type {delivery} is not available"
                )
            code = f"{secrets.randbelow(10**8):08d}"  # otpLength default 8
            self._otps[user.user_id] = code
            return _Challenge("OTP", path, expected=code, otp_delivery=delivery)
        if factor == "TOKEN":
            return _Challenge("TOKEN", path)  # compared with the token's code at complete
        if factor == "TEMP_ACCESS_CODE":
            return _Challenge(factor, path, expected=user.temp_access_code)
        if factor == "KBA":
            picked = secrets.SystemRandom().sample(sorted(user.kba), user.kba_question_count)
            answers = {str(uuid.uuid4()): question for question in picked}
            return _Challenge(factor, path, kba_id=str(uuid.uuid4()), kba=answers)
        if factor == "GRID":
            cells = secrets.SystemRandom().sample(
                [(r, c) for r in range(len(user.grid)) for c in range(len(user.grid[0]))],
                GRID_CELLS_ASKED,
            )
            expected = "".join(user.grid[r][c] for r, c in cells)
            return _Challenge(factor, path, expected=expected, cells=cells)
        # Push: the device gets a notification; complete is polled.
        mutual = f"{secrets.randbelow(100):02d}" if user.push_mutual_challenge else None
        push = _Push(factor, self.clock(), mutual)
        self._pushes[user.user_id] = push
        return _Challenge(factor, path, push=push)

    def _auth_response(
        self,
        txn: _Txn | None,
        *,
        token: str | None,
        completed: bool = False,
        status: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """An ``AuthenticatedResponse`` with the fields of the vendor examples."""
        user = txn.user if completed and txn else None
        reply: dict[str, Any] = {
            "status": status,
            "firstName": user.first_name if user else None,
            "lastName": user.last_name if user else None,
            "authenticationCompleted": completed,
            "machineAuthenticator": None,
            # The vendor's final example carries no machine settings.
            "userMachineSettings": None if completed else _user_machine_settings(),
            "kbaChallenge": None,
            "gridChallenge": None,
            "tempAccessCodeChallenge": None,
            "passwordChallenge": None,
            "faceChallenge": None,
            "pushMutualChallenge": None,
            "tokenPushMutualChallenge": None,
            "tokenDetails": None,
            "token": token,
            # Pending/denied push answers carry no token and expires 0.
            "expires": int(txn.expires_at * 1000) if token and txn else 0,
            "otpdeliveryType": None,
            "time": self._now_ms(),
        }
        reply.update(extra)
        return reply

    # -- complete -----------------------------------------------------------

    def _complete(self, path: str, body: Mapping[str, Any], token: str | None) -> EmulatorReply:
        txn = self._txn_for(token, "complete")
        self._check_same_user(txn, body)
        challenge = txn.challenge
        if challenge is None or path != challenge.path:
            expected = challenge.path if challenge else "none"
            raise _ApiError(
                400, "invalid_authenticator", f"{path} does not match the challenge ({expected})"
            )
        second = body.get("secondFactorAuthenticator")
        if txn.stage == "second" and path == "PASSWORD_AND_SECONDFACTOR" and not second:
            raise _ApiError(400, "invalid_request", "Second factor authenticator cannot be null")
        if second and txn.stage == "second" and second != challenge.authenticator:
            raise _ApiError(
                400, "invalid_authenticator", f"{second} does not match {challenge.authenticator}"
            )
        if body.get("cancel") is True:
            return self._cancel(txn, challenge)
        if challenge.push is not None:
            return self._poll(txn, challenge, challenge.push)
        self._check_not_locked(txn.user, challenge.authenticator)
        if not self._answer_ok(txn.user, challenge, body):
            return self._wrong_answer(txn.user, challenge.authenticator)
        txn.user.failures.pop(challenge.authenticator, None)
        return self._factor_passed(txn, challenge)

    def _answer_ok(self, user: EntrustUser, challenge: _Challenge, body: Mapping[str, Any]) -> bool:
        kind = challenge.authenticator
        if kind == "EXTERNAL":
            return True  # the first factor was checked outside IDaaS
        if kind == "KBA":
            return self._kba_ok(user, challenge, body.get("kbaChallenge"))
        response = body.get("response")
        if not isinstance(response, str) or not response:
            raise _ApiError(400, "invalid_request", "Response cannot be null")
        if kind == "TOKEN":
            return secrets.compare_digest(response, user.token_code)
        expected = challenge.expected or ""
        if kind == "GRID":
            # Cells are shown upper-case; users type what they see, with spaces.
            response = "".join(response.split()).upper()
        return secrets.compare_digest(response.encode(), expected.encode())

    @staticmethod
    def _kba_ok(user: EntrustUser, challenge: _Challenge, echoed: Any) -> bool:
        if not isinstance(echoed, dict) or not isinstance(echoed.get("userQuestions"), list):
            raise _ApiError(400, "invalid_request", "KBA challenge cannot be null")
        if echoed.get("id") != challenge.kba_id:
            raise _ApiError(400, "invalid_request", "KBA challenge id does not match")
        given = {
            str(q.get("id")): str(q.get("answer") or "")
            for q in echoed["userQuestions"]
            if isinstance(q, dict)
        }
        # Answers are compared case-insensitively, ignoring outer spaces.
        return all(
            given.get(qid, "").strip().casefold() == user.kba[question].strip().casefold()
            for qid, question in challenge.kba.items()
        )

    @staticmethod
    def _check_same_user(txn: _Txn, body: Mapping[str, Any]) -> None:
        # Clients such as Entrust's JS SDK repeat userId on every call.
        user_id = body.get("userId")
        if user_id and user_id != txn.user.user_id:
            raise _ApiError(400, "invalid_request", "User id does not match the token")

    def _check_not_locked(self, user: EntrustUser, authenticator: str) -> None:
        if authenticator in user.locked_at:
            raise _ApiError(403, "authenticator_locked", f"{authenticator} is locked")

    def _wrong_answer(self, user: EntrustUser, authenticator: str) -> EmulatorReply:
        failures = user.failures.get(authenticator, 0) + 1
        user.failures[authenticator] = failures
        if failures >= self.lockout_count:
            user.locked_at[authenticator] = self.clock()
            raise _ApiError(403, "authenticator_locked", f"{authenticator} is locked")
        # The same token stays valid so the user can try again.
        raise _ApiError(400, "invalid_user_response", "")

    def _forget(self, user: EntrustUser, challenge: _Challenge) -> None:
        # Another transaction of the same user may have opened a newer challenge.
        if self._open.get(user.user_id) is challenge:
            del self._open[user.user_id]

    def _factor_passed(self, txn: _Txn, challenge: _Challenge) -> EmulatorReply:
        self._forget(txn.user, challenge)
        user = txn.user
        needs_second = (
            txn.stage == "first"
            and user.first_factor is not None
            and not user.risk_no_second_factor
            and bool(user.second_factors)
        )
        if needs_second:
            txn.stage, txn.challenge = "second", None
            token = self._issue(txn, "select")
            return EmulatorReply.json(self._auth_response(txn, token=token))
        txn.challenge = None
        token = self._issue(txn, "session")
        reply = self._auth_response(
            txn, token=token, completed=True, status="CONFIRM" if challenge.push else None
        )
        self._last_success = reply
        return EmulatorReply.json(reply)

    def _poll(self, txn: _Txn, challenge: _Challenge, push: _Push) -> EmulatorReply:
        push.polls += 1
        if push.state == "pending" and self._push_expired(push):
            push.state = "gone"
        if push.state == "approved":
            return self._factor_passed(txn, challenge)
        if push.state == "pending":
            return EmulatorReply.json(self._auth_response(txn, token=None, status="NO_RESPONSE"))
        if push.state == "flagged" or (push.state == "denied" and push.deny_reply == "CANCEL"):
            status = "CONCERN" if push.state == "flagged" else "CANCEL"
            push.state = "gone"
            return EmulatorReply.json(self._auth_response(txn, token=None, status=status))
        push.state = "gone"
        raise _ApiError(400, "no_transaction", "")

    def _cancel(self, txn: _Txn, challenge: _Challenge) -> EmulatorReply:
        if challenge.push is not None:
            # Later polls with this token learn the push is gone.
            challenge.push.state = "gone"
        else:
            self._close(txn)
        self._forget(txn.user, challenge)
        return EmulatorReply.json(self._auth_response(txn, token=None, status="CANCEL"))

    # -- logout -------------------------------------------------------------

    def _logout(self, request: EmulatorRequest) -> EmulatorReply:
        token = self._bearer(request)
        txn = self._tokens.get(token or "")
        if txn is None:
            raise _ApiError(401, "invalid_token", "Authorization token is invalid")
        self._close(txn)
        return EmulatorReply(200)

    # -- faults and control -------------------------------------------------------

    def mangle_enums(self, obj: Any) -> Any:
        """Replace ``status``/``otpdeliveryType`` and extend authenticator lists."""
        if not isinstance(obj, dict):
            return obj
        out = dict(obj)
        for key in ("status", "otpdeliveryType", "otpDeliveryType"):
            if isinstance(out.get(key), str):
                out[key] = UNKNOWN_ENUM_VALUE
        # New authenticators appear in the vendor enum over time; clients must
        # skip names they do not know rather than fail.
        for key in ("authenticationTypes", "availableSecondFactor"):
            if isinstance(out.get(key), list):
                out[key] = [*out[key], UNKNOWN_ENUM_VALUE]
        return out

    def apply_provider_fault(self, fault: Fault, request: EmulatorRequest) -> EmulatorReply:
        """``stale_success``: answer with an earlier transaction's success body.

        The body (old ``time``, another transaction's token) is replayed as is;
        with no earlier success, a synthetic one carries an unknown token that
        has already expired. Either way the request itself is not processed.
        """
        if self._last_success is not None:
            return _without_nulls(EmulatorReply.json(self._last_success))
        reply = self._auth_response(None, token=_new_token(), completed=True)
        reply["expires"] = self._now_ms() - 60_000
        return _without_nulls(EmulatorReply.json(reply))

    def handle_control(self, request: EmulatorRequest, route: str) -> EmulatorReply | None:
        """Entrust control routes: push actions, OTP, answers and users."""
        parts = route.split("/")
        try:
            if request.method == "POST" and len(parts) == 3 and parts[0] == "push":
                user_id, action = parts[1], parts[2]
                if action == "approve":
                    self.approve_push(user_id)
                elif action == "flag":
                    self.flag_push(user_id)
                elif action == "deny":
                    spec = request.json_or_none()
                    reply = spec.get("reply") if isinstance(spec, dict) else None
                    self.deny_push(user_id, reply=reply or "no_transaction")
                else:
                    return None
                return EmulatorReply.json({"userId": user_id, "action": action})
            if request.method == "GET" and len(parts) == 2 and parts[0] in ("otp", "answer"):
                user_id = parts[1]
                self._user(user_id)
                if parts[0] == "otp":
                    return EmulatorReply.json({"userId": user_id, "otp": self.last_otp(user_id)})
                answer = self.expected_response(user_id)
                return EmulatorReply.json({"userId": user_id, "response": answer})
            if request.method == "GET" and route == "users":
                return EmulatorReply.json([self._describe(u) for u in self.users.values()])
        except LookupError as exc:
            return EmulatorReply.json({"error": str(exc)}, status=409)
        except ValueError as exc:
            return EmulatorReply.json({"error": str(exc)}, status=400)
        return None

    def _describe(self, user: EntrustUser) -> dict[str, Any]:
        return {
            "userId": user.user_id,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "authenticationTypes": user.authentication_types,
            "availableSecondFactor": user.second_factors,
            "password": user.password,
            "tokenCode": user.token_code,
            "tempAccessCode": user.temp_access_code,
            "kba": dict(user.kba),
            "grid": ["".join(row) for row in user.grid],
            "riskNoSecondFactor": user.risk_no_second_factor,
            "pushMutualChallenge": user.push_mutual_challenge,
            "accessDenied": user.access_denied,
            "locked": sorted(user.locked_at),
        }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
