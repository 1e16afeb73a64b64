"""Emulator of the CyberArk Identity (Centrify / Idaptive) authentication API.

Speaks ``POST /Security/StartAuthentication``, ``POST
/Security/AdvanceAuthentication`` and ``POST /Security/Logout`` the way the
vendor documents describe them: every answer is the Centrify envelope
(``success``, ``Result``, ``Message``, ``MessageID``, ``Exception``,
``ErrorID``, ``ErrorCode``, ``IsSoftError``, ``InnerExceptions``), HTTP 200
even for failures, and the flow state is in ``Result.Summary``
(``NewPackage``, ``StartNextChallenge``, ``OobPending``, ``LoginSuccess``,
``NoncommitalSuccess``; ``Failure`` / ``Undefined`` when ``success`` is false).

A user owns a list of challenges; each challenge is a list of alternative
mechanisms (``UP``, ``SQ``, ``RESET`` are ``Text``; ``SMS``, ``EMAIL``,
``OATH``, ``OTP``, ``U2F`` are ``StartTextOob``; ``PF``, ``QR`` are
``StartOob``). Out-of-band mechanisms are started with ``StartOOB`` and then
polled; the code-bearing ones (SMS, EMAIL, OATH, OTP) get a fresh 6-digit code
at ``StartOOB`` that may be typed with ``Answer`` while the client also polls.
Tests play the user's phone with :meth:`CyberArkEmulator.approve` /
:meth:`CyberArkEmulator.deny` (push approved, link clicked, phone PIN typed,
QR scanned) and read codes with :meth:`CyberArkEmulator.last_code`.

Demo users (``demo_users=True``, the default), tenant ``ABC1234``:

========  ===============  ====================================================
user      password         challenges
========  ===============  ====================================================
alice     alice-password   UP, then one of OTP push / SMS / EMAIL / SQ
                           (``What is your pet's name?`` -> ``Smokey``);
                           ``ForgotPassword`` allowed (recovery by EMAIL)
bob       (none)           one challenge: OTP push with number matching
carol     carol-password   UP, then SQ with two questions (``First car?`` ->
                           ``Beetle``, ``Favourite colour?`` -> ``Teal``)
dave      dave-password    UP, then EMAIL / SMS; failures are deferred to the
                           end of the package
erin      erin-password    UP; passing it yields a ``NewPackage`` of EMAIL / SMS
frank     frank-password   lives on pod ``HOST:PORT/pod2`` of this emulator:
                           StartAuthentication elsewhere answers ``PodFqdn``;
                           then UP, then OTP push
grace     grace-password   UP, then PF call / QR / OATH / U2F (U2F answer
                           ``u2f-assertion``)
========  ===============  ====================================================

TLS. ``CyberArkEmulator(tls=True)`` serves HTTPS with a certificate from a
throwaway authority whose PEM file is :attr:`CyberArkEmulator.ca_file`; then
the vendor's bare-host ``PodFqdn`` (``127.0.0.1:PORT/pod2``) works as is for
clients that build ``https://{PodFqdn}``, the vendor SDK included.

LoginSuccess forms. By default ``Result`` carries ``Token`` (a JWT with the
claims the vendor SDK reads: ``tenant_id``, ``subdomain``, ``platform_domain``,
``unique_name``) and ``Auth``, and the reply sets ``.ASPXAUTH``. With
``oauth_tokens=True`` it is the platform form instead: the token only in
``Result.OAuthTokens`` (``access_token``, ``refresh_token``, ``id_token``,
``token_type``, ``expires_in``, ``session_expires_in``, ``scope``), no cookie.

Pod redirect. :meth:`CyberArkEmulator.redirect_user` makes StartAuthentication
answer only ``Result.PodFqdn`` for a user until the request arrives at that
pod. A pod is named ``host[:port][/path]`` (the vendor's ``PodFqdn`` may carry
a path, e.g. ``example.delinea.app/identity``); naming this emulator's own
``host:port`` with a path (``/pod2``) makes the emulator also serve the API
under that path, so one instance can play two pods. A second emulator instance
works too: ``emu.redirect_user("alice", other.base_url)``. Real clients build
``https://{PodFqdn}``, which a loopback emulator cannot serve; either give the
client a scheme override, run the emulator with ``tls=True``, or construct it
with ``pod_fqdn_as_url=True`` so every ``PodFqdn`` it sends is a full base URL
(``http://127.0.0.1:PORT/pod2``) instead of the vendor's bare host.

Extra control routes (besides the base ones): ``GET /_emulator/code/{user}``,
``POST /_emulator/oob/{user}/approve`` (optional body ``{"number": "42"}``),
``POST /_emulator/oob/{user}/deny``, ``GET /_emulator/polls/{user}``.

Faults: besides the base kinds (``unknown_enum`` replaces ``Result.Summary``),
``replay_success`` (CyberArk only) answers the next request with the last
``LoginSuccess`` this emulator sent, body and ``.ASPXAUTH`` cookie, as a broken
proxy or cache would: a valid reply that belongs to another, long-finished
session. The request itself is not processed.

Where the vendor documents are silent the emulator makes a documented choice;
see :class:`CyberArkEmulator`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, Self
from urllib.parse import unquote

import attrs

from mfa_fsm.testing._server import (
    BASE_FAULT_KINDS,
    UNKNOWN_ENUM_VALUE,
    BadRequest,
    EmulatorReply,
    EmulatorRequest,
    EmulatorServer,
    Fault,
)

__all__ = ["GENERIC_FAILURE", "CyberArkEmulator", "UserMechanism"]

#: The one message the service gives for every authentication failure, so a
#: caller cannot tell a wrong password from a dead session (vendor spec).
GENERIC_FAILURE: Final = (
    "Authentication (login or challenge) has failed. "
    "Please try again or contact your system administrator."
)

_TEXT: Final = "Text"
_START_TEXT_OOB: Final = "StartTextOob"
_START_OOB: Final = "StartOob"

_ANSWER_TYPES: Final[Mapping[str, str]] = {
    "UP": _TEXT,
    "SQ": _TEXT,
    "RESET": _TEXT,
    "SMS": _START_TEXT_OOB,
    "EMAIL": _START_TEXT_OOB,
    "OATH": _START_TEXT_OOB,
    "OTP": _START_TEXT_OOB,
    "U2F": _START_TEXT_OOB,
    "PF": _START_OOB,
    "QR": _START_OOB,
}
# Mechanisms whose StartOOB produces a code the user can type.
_CODE_MECHANISMS: Final = frozenset({"SMS", "EMAIL", "OATH", "OTP"})
_ACTIONS: Final = frozenset({"Answer", "StartOOB", "Poll", "RetryOOB", "ForgotPassword"})
_NATIVE_CLIENT_HEADERS: Final = ("x-idap-native-client", "x-centrify-native-client")
_DEFAULT_QUESTIONS: Final[Mapping[str, str]] = {"What is your pet's name?": "Smokey"}
# A 1x1 PNG: the QR mechanism's image only has to be a well-formed data URL.
_QR_PNG: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
_MIN_NEW_PASSWORD: Final = 8
_ROUTE: Final = re.compile(
    r"^(?P<pod>(?:/[^/]+)?)/Security/(?P<op>StartAuthentication|AdvanceAuthentication|Logout)$",
    re.IGNORECASE,
)


@attrs.frozen
class UserMechanism:
    """One way of answering a challenge, as configured for a user.

    Plain names (``"SMS"``) may be used instead wherever a mechanism is
    expected; they mean ``UserMechanism(name)`` with the defaults below.
    """

    #: ``UP``, ``SQ``, ``RESET``, ``SMS``, ``EMAIL``, ``OATH``, ``OTP``,
    #: ``U2F``, ``PF`` or ``QR``.
    name: str = attrs.field(validator=attrs.validators.in_(_ANSWER_TYPES))
    #: ``SQ`` only: question -> answer, in the order they are asked.
    questions: Mapping[str, str] = attrs.field(factory=lambda: dict(_DEFAULT_QUESTIONS))
    #: Send a ``GeneratedAuthValue`` with the StartOOB reply (push number matching).
    number_matching: bool = False
    #: ``Enrolled`` as advertised; an unenrolled mechanism fails when used.
    enrolled: bool = True
    #: ``U2F`` only: the answer accepted in place of a WebAuthn assertion.
    answer: str = "u2f-assertion"
    #: ``QR`` only: the PNG's base64 for the ``Image`` data URL (default: a 1x1 PNG). The
    #: vendor documents give no size; a real QR code's PNG is a few KiB, which is how a test
    #: shows what a large image does to state kept in a cookie.
    image: str | None = None

    @property
    def answer_type(self) -> str:
        """The vendor's ``AnswerType`` for this mechanism."""
        return _ANSWER_TYPES[self.name]


MechanismLike = UserMechanism | str


def __getattr__(name: str) -> Any:
    """``Mechanism``: :class:`UserMechanism`'s name until this release, deprecated. The
    library's ``mfa_fsm.cyberark.replies.Mechanism`` (a mechanism as a reply offers it) keeps
    the name."""
    if name == "Mechanism":
        warnings.warn(
            "mfa_fsm.testing.cyberark.Mechanism is now UserMechanism; the old name will be "
            "removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return UserMechanism
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_package(
    challenges: Sequence[Sequence[MechanismLike]],
) -> tuple[tuple[UserMechanism, ...], ...]:
    package = tuple(
        tuple(m if isinstance(m, UserMechanism) else UserMechanism(m) for m in challenge)
        for challenge in challenges
    )
    if not package or not all(package):
        raise ValueError("a package needs at least one challenge, each with a mechanism")
    return package


@attrs.define
class _User:
    name: str
    password: str | None
    challenges: tuple[tuple[UserMechanism, ...], ...]
    email: str
    phone: str
    display_name: str
    defer_failure: bool = False
    new_package: tuple[tuple[UserMechanism, ...], ...] | None = None
    new_package_after: int = 1
    event_description: str | None = None
    allow_forgot_password: bool = False
    recovery: tuple[UserMechanism, ...] = ()
    user_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))


@attrs.define
class _Mech:
    """A mechanism as offered in one package: the spec plus its opaque ids."""

    spec: UserMechanism
    id: str = attrs.field(factory=lambda: secrets.token_urlsafe(33))
    #: ``SQ``: one ``Uuid`` per question, in question order.
    part_ids: tuple[str, ...] = ()


@attrs.define
class _Oob:
    mech_id: str
    started: float
    code: str | None
    number: str | None
    decision: str = "pending"  # "pending" | "approved" | "denied"


@attrs.define
class _Session:
    id: str
    user: _User
    challenges: list[list[_Mech]]
    pod: str
    expires: float
    purpose: str = "login"  # "login", or "reset" after ForgotPassword
    platform_token: bool = False
    index: int = 0
    completed: int = 0
    repackaged: bool = False
    #: First failure hidden by the user's deferred-failure policy.
    deferred: str | None = None
    oob: _Oob | None = None


@attrs.define
class _Login:
    user: _User
    auth: str
    token: str
    refresh: str
    expires: float


@attrs.frozen
class _Pod:
    scheme: str
    address: str  # host[:port][/path], lower case, no trailing slash
    loop: bool


class _Failed(Exception):
    """An authentication failure; ``reason`` is for the test log, never the wire."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _envelope(
    result: Any, *, success: bool = True, message: str | None = None, error: bool = False
) -> dict[str, Any]:
    # ErrorID shape "<guid>:<hex>" as seen in recorded failures; ErrorCode stays null.
    error_id = f"{uuid.uuid4()}:{secrets.token_hex(8)}" if error else None
    return {
        "success": success,
        "Result": result,
        "Message": message,
        "MessageID": None,
        "Exception": None,
        "ErrorID": error_id,
        "ErrorCode": None,
        "IsSoftError": False,
        "InnerExceptions": None,
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parse_pod(pod: str, *, loop: bool) -> _Pod:
    scheme, sep, rest = pod.partition("://")
    if not sep:
        scheme, rest = "https", pod
    address = rest.strip().rstrip("/").lower()
    if not address or address.startswith("/"):
        raise ValueError(f"not a pod address: {pod!r}")
    return _Pod(scheme.lower(), address, loop)


def _cookie(request: EmulatorRequest, name: str) -> str | None:
    for part in (request.header("cookie") or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class CyberArkEmulator(EmulatorServer):
    """Loopback CyberArk Identity emulator; see the module docstring for the API.

    Choices where the vendor documents are silent:

    * Malformed requests (no native-client header, non-JSON content type, body
      not a JSON object, missing ``Version``/``SessionId``/``Action``/
      ``MechanismId``, ``Version`` other than ``"1.0"``) get HTTP 200 with
      ``success: false``, ``Result: null`` and a ``Message`` naming the
      problem. An empty ``User`` gets the recorded ``Summary: "Undefined"``
      failure. Non-POST methods get 405, unknown paths an HTML 404.
    * Either ``X-IDAP-NATIVE-CLIENT`` or ``X-CENTRIFY-NATIVE-CLIENT`` is
      accepted, with value ``true`` or ``1``.
    * Unknown users get a decoy ``UP`` package that always fails, as the real
      service seems to accept any user at StartAuthentication;
      ``reveal_unknown_users=True`` answers ``Undefined`` instead.
    * A ``TenantId`` other than the emulator's is refused at
      StartAuthentication but ignored at AdvanceAuthentication (the vendor's
      own OOB example changes it between StartOOB and Poll).
    * Every failure (wrong answer, denied or expired OOB, unknown or
      out-of-turn ``MechanismId``, unknown ``Action``, Answer before StartOOB,
      Poll on a ``U2F`` key) kills the package; the reason is kept for tests in
      :meth:`last_failure`, never sent.
    * Package lifetime is ``session_lifetime`` (no source gives one), OOB
      lifetime ``oob_lifetime`` (the 5-minute SMS validity by default).
    * ``RetryOOB`` re-sends: a new code, the OOB clock restarts, the old code
      stops working. ``ForgotPassword`` answers a ``NewPackage`` with a new
      ``SessionId`` (recovery mechanisms, then ``RESET``); completing it gives
      ``NoncommitalSuccess``. A ``RESET`` answer shorter than 8 characters or
      equal to the old password fails the package.
    * In a ``MultipleOperations`` batch the operations run in order and the
      reply is that of the last one, with ``ResultAppliesTo`` naming its
      mechanism.
    * The ``.ASPXAUTH`` cookie (and the ``sessdata`` cookie every reply re-sets) is
      ``Secure`` only with ``tls=True``; with ``PersistentLogin`` (default true)
      ``.ASPXAUTH`` gets a Max-Age. ``sessdata`` gets a fresh opaque value each time.
    * ``replay_success`` with no ``LoginSuccess`` sent yet replays a made-up
      one for a user no flow signs in (``replayed@<login suffix>``).
    """

    fault_kinds: ClassVar[frozenset[str]] = BASE_FAULT_KINDS | {"replay_success"}

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tenant_id: str = "ABC1234",
        login_suffix: str = "example.com",
        demo_users: bool = True,
        require_native_client: bool = True,
        reveal_unknown_users: bool = False,
        pod_fqdn_as_url: bool = False,
        session_lifetime: float = 600.0,
        oob_lifetime: float = 300.0,
        token_lifetime: int = 3600,
        tls: bool = False,
        oauth_tokens: bool = False,
        subdomain: str | None = None,
        platform_domain: str = "cyberark.cloud",
    ) -> None:
        """Configure the emulator; call :meth:`start` (or use ``with``) to serve.

        Lifetimes are in seconds of :attr:`clock` (replace it in tests
        instead of sleeping). ``tls`` serves HTTPS (see :attr:`ca_file`);
        ``oauth_tokens`` sends ``LoginSuccess`` in the CyberArk/Delinea platform
        form, the token only in ``Result.OAuthTokens`` (no ``Token``, ``Auth``
        or ``.ASPXAUTH``). ``subdomain`` (default: the tenant id in lower case)
        and ``platform_domain`` go into the token's claims, where the vendor
        SDK reads them to build its service URLs.
        """
        super().__init__(host, port, tls=tls)
        self.oauth_tokens = oauth_tokens
        self.subdomain = subdomain or tenant_id.lower()
        self.platform_domain = platform_domain
        self.tenant_id = tenant_id
        self.login_suffix = login_suffix
        self.require_native_client = require_native_client
        self.reveal_unknown_users = reveal_unknown_users
        self.pod_fqdn_as_url = pod_fqdn_as_url
        self.session_lifetime = session_lifetime
        #: set by :meth:`delete_session_cookie`: the next reply deletes ``sessdata``
        self._delete_session_cookie = False
        self.oob_lifetime = oob_lifetime
        self.token_lifetime = token_lifetime
        self._users: dict[str, _User] = {}
        self._sessions: dict[str, _Session] = {}
        self._logins: dict[str, _Login] = {}
        self._redirects: dict[str, _Pod] = {}
        self._local_pods: set[str] = set()
        self._codes: dict[str, str] = {}
        self._polls: dict[str, int] = {}
        self._failures: dict[str, str] = {}
        self._demo_users = demo_users
        self._signing_key = secrets.token_bytes(32)
        #: the last LoginSuccess sent (envelope, headers), for the ``replay_success`` fault
        self._last_success: tuple[dict[str, Any], dict[str, str]] | None = None
        if demo_users:
            self._add_demo_users()

    # -- configuration ------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        password: str | None = None,
        challenges: Sequence[Sequence[MechanismLike]] = (("UP",),),
        email: str | None = None,
        phone: str = "+1 555 010 6789",
        display_name: str | None = None,
        defer_failure: bool = False,
        new_package: Sequence[Sequence[MechanismLike]] | None = None,
        new_package_after: int = 1,
        event_description: str | None = None,
        allow_forgot_password: bool = False,
        recovery: Sequence[MechanismLike] = ("EMAIL",),
    ) -> None:
        """Add (or replace) a user.

        Args:
            name: login name, matched case-insensitively, with or without
                ``@login_suffix``.
            password: what the ``UP`` mechanism accepts.
            challenges: the package, in order; each challenge lists
                alternative mechanisms (names or :class:`UserMechanism`).
            defer_failure: the tenant policy "continue with additional
                challenges after failed challenge": a failed challenge that is
                not the package's last is reported only when the package ends.
            new_package: after ``new_package_after`` challenges are passed, the
                service answers ``NewPackage`` with these challenges instead
                (same ``SessionId``), once per session.
            event_description: ``EventDescription`` sent with that package.
            allow_forgot_password: advertise and accept ``ForgotPassword``;
                ``recovery`` lists the mechanisms of the recovery challenge.
        """
        package = _as_package(challenges)
        needs_password = any(m.name == "UP" for c in package for m in c)
        if needs_password and password is None:
            raise ValueError(f"user {name!r} has a UP mechanism but no password")
        user = _User(
            name=name,
            password=password,
            challenges=package,
            email=email or f"{name}@{self.login_suffix}",
            phone=phone,
            display_name=display_name or name.title(),
            defer_failure=defer_failure,
            new_package=_as_package(new_package) if new_package is not None else None,
            new_package_after=new_package_after,
            event_description=event_description,
            allow_forgot_password=allow_forgot_password,
            recovery=_as_package([recovery])[0],
        )
        with self.lock:
            self._users[name.lower()] = user

    def redirect_user(self, user: str, pod: str, *, loop: bool = False) -> None:
        """Make StartAuthentication answer ``PodFqdn`` for ``user``.

        ``pod`` is ``host[:port][/path]`` or a base URL (``http://...``). The
        redirect is answered until a request arrives at that pod; with
        ``loop=True`` it is answered there too (a pod redirecting to itself).
        Naming this running emulator's own ``host:port`` with a path makes it
        serve the API under that path as well.
        """
        target = _parse_pod(pod, loop=loop)
        with self.lock:
            self._redirects[user.lower()] = target
            own, _, path = target.address.partition("/")
            if path and own == f"{self.host}:{self.port}":
                self._local_pods.add("/" + path)

    def start(self) -> Self:
        """Start serving; also places the demo user ``frank`` on pod ``/pod2``."""
        super().start()
        if self._demo_users:
            self.redirect_user("frank", f"{self.scheme}://{self.host}:{self.port}/pod2")
        return self

    def _add_demo_users(self) -> None:
        def add(name: str, challenges: Sequence[Sequence[MechanismLike]], **options: Any) -> None:
            # Demo passwords follow one pattern so the docstring table stays true.
            self.add_user(name, password=f"{name}-password", challenges=challenges, **options)

        add("alice", [["UP"], ["OTP", "SMS", "EMAIL", "SQ"]], allow_forgot_password=True)
        self.add_user("bob", challenges=[[UserMechanism("OTP", number_matching=True)]])
        two_questions = {"First car?": "Beetle", "Favourite colour?": "Teal"}
        add("carol", [["UP"], [UserMechanism("SQ", questions=two_questions)]])
        add("dave", [["UP"], ["EMAIL", "SMS"]], defer_failure=True)
        add(
            "erin",
            [["UP"]],
            new_package=[["EMAIL", "SMS"]],
            event_description="Additional verification is required for this sign-in.",
        )
        add("frank", [["UP"], ["OTP"]])
        add("grace", [["UP"], ["PF", "QR", "OATH", "U2F"]])

    # -- test helpers (the user's phone, the operator's view) ----------------

    def approve(self, user: str, *, number: str | None = None) -> None:
        """Approve the user's running OOB challenge (push, link, call, QR scan).

        With number matching, a ``number`` other than the one shown counts as
        a denial. Raises :class:`LookupError` when nothing is pending.
        """
        with self.lock:
            oob = self._pending_oob(user)
            wrong_number = number is not None and oob.number is not None and number != oob.number
            oob.decision = "denied" if wrong_number else "approved"

    def delete_session_cookie(self) -> None:
        """The next reply deletes the ``sessdata`` cookie (``Max-Age=0``, RFC 6265 section
        5.2.2) instead of re-setting it; a client must then stop sending it."""
        with self.lock:
            self._delete_session_cookie = True

    def deny(self, user: str) -> None:
        """Deny the user's running OOB challenge; the next poll fails the package.

        Raises :class:`LookupError` when nothing is pending.
        """
        with self.lock:
            self._pending_oob(user).decision = "denied"

    def oob_pending(self, user: str) -> bool:
        """Whether the user's latest out-of-band challenge (push, link, call) still waits
        for an answer (:meth:`approve` or :meth:`deny` would act on it)."""
        with self.lock:
            try:
                return self._pending_oob(user).decision == "pending"
            except LookupError:
                return False

    def number_shown(self, user: str) -> str | None:
        """The number the user's running OOB challenge asks to match (the StartOOB reply's
        ``GeneratedAuthValue``), or None: no number matching, or nothing pending."""
        with self.lock:
            try:
                return self._pending_oob(user).number
            except LookupError:
                return None

    def last_code(self, user: str) -> str | None:
        """The code most recently generated for ``user`` at StartOOB/RetryOOB."""
        with self.lock:
            return self._codes.get(user.lower())

    def poll_count(self, user: str) -> int:
        """How many ``Poll`` actions ``user``'s sessions have received."""
        with self.lock:
            return self._polls.get(user.lower(), 0)

    def last_failure(self, user: str) -> str | None:
        """Why ``user``'s last package failed (the wire only says "failed")."""
        with self.lock:
            return self._failures.get(user.lower())

    def token_valid(self, token: str) -> bool:
        """Whether ``token`` (``Result.Token`` or ``.ASPXAUTH``) is live."""
        with self.lock:
            login = self._logins.get(token)
            return login is not None and login.expires > self.clock()

    def _pending_oob(self, user: str) -> _Oob:
        running = [
            s.oob
            for s in self._sessions.values()
            if s.user.name.lower() == user.lower() and s.oob is not None
        ]
        if not running:
            raise LookupError(f"no out-of-band challenge is running for {user!r}")
        return max(running, key=lambda oob: oob.started)

    # -- HTTP ---------------------------------------------------------------

    def handle(self, request: EmulatorRequest) -> EmulatorReply:
        """Route one API request (runs with :attr:`lock` held)."""
        match = _ROUTE.match(request.path)
        if match is None or (match["pod"] and match["pod"].lower() not in self._local_pods):
            return self.not_found_reply(request)
        if request.method != "POST":
            reply = _envelope(None, success=False, message="Method not allowed.", error=True)
            return self._reply(reply, status=405, headers={"Allow": "POST"})
        self._check_headers(request)
        pod = (request.header("host") or f"{self.host}:{self.port}").lower() + match["pod"].lower()
        operation = match["op"].lower()
        if operation == "logout":
            return self._logout(request)
        body = request.json()
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        if operation == "startauthentication":
            return self._start(request, body, pod)
        return self._advance(body)

    def _check_headers(self, request: EmulatorRequest) -> None:
        if self.require_native_client and not any(
            (request.header(name) or "").strip().lower() in ("true", "1")
            for name in _NATIVE_CLIENT_HEADERS
        ):
            raise BadRequest("Missing header X-IDAP-NATIVE-CLIENT: true.")
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if request.body and content_type != "application/json":
            raise BadRequest("Content-Type must be application/json.")

    def _reply(
        self, obj: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> EmulatorReply:
        # The service echoes the native-client header (browser trace).
        merged = {"X-Centrify-Native-Client": "true", **(headers or {})}
        result = obj.get("Result") if isinstance(obj, dict) else None
        if isinstance(result, dict) and result.get("Summary") == "LoginSuccess":
            self._last_success = (obj, merged)
        return attrs.evolve(
            EmulatorReply.json(obj, status=status, headers=merged),
            set_cookies=(self._session_cookie(),),
        )

    def _session_cookie(self) -> str:
        # The service re-sets an HttpOnly session cookie on every reply, before login
        # too (browser trace: "sessdata"); clients keep one cookie jar per flow.
        secure = "; Secure" if self.tls else ""
        if self._delete_session_cookie:
            self._delete_session_cookie = False
            return f"sessdata=deleted; path=/; Max-Age=0; HttpOnly{secure}"
        return f"sessdata={secrets.token_urlsafe(24)}; path=/; HttpOnly{secure}"

    def bad_request_reply(self, message: str) -> EmulatorReply:
        """Malformed requests: HTTP 200, ``success: false``, ``Result: null``."""
        return self._reply(_envelope(None, success=False, message=message, error=True))

    def not_found_reply(self, request: EmulatorRequest) -> EmulatorReply:
        """Unknown paths get an HTML page, as the real service's web front end sends."""
        return EmulatorReply.html(
            "<!DOCTYPE html><html><head><title>404 - Not Found</title></head>"
            "<body><h1>The page you requested was not found.</h1></body></html>",
            status=404,
        )

    def mangle_enums(self, obj: Any) -> Any:
        """``unknown_enum`` fault: replace ``Result.Summary`` with an unknown value."""
        result = obj.get("Result") if isinstance(obj, dict) else None
        if isinstance(result, dict) and "Summary" in result:
            return {**obj, "Result": {**result, "Summary": UNKNOWN_ENUM_VALUE}}
        return super().mangle_enums(obj)

    def apply_provider_fault(self, fault: Fault, request: EmulatorRequest) -> EmulatorReply:
        """``replay_success``: answer with the last ``LoginSuccess`` sent, as it was sent.

        A valid reply of another, finished session (a broken proxy or cache replaying it);
        with none sent yet, a made-up one for ``replayed@<login suffix>``. The request
        itself is not processed.
        """
        if fault.kind != "replay_success":
            return super().apply_provider_fault(fault, request)
        if self._last_success is None:
            user = _User("replayed", None, (), email="", phone="", display_name="Replayed")
            login = self._issue_login(user)
            result = self._success_result(login, f"{self.host}:{self.port}", platform_token=False)
            return self._reply(_envelope(result), headers=self._set_cookie(login, persistent=True))
        body, headers = self._last_success
        return EmulatorReply.json(body, headers=headers)

    def handle_control(self, request: EmulatorRequest, route: str) -> EmulatorReply | None:
        """``code/{user}``, ``polls/{user}``, ``oob/{user}/approve|deny``."""
        parts = [unquote(p) for p in route.split("/")]
        try:
            if len(parts) == 2 and parts[0] == "code" and request.method == "GET":
                code = self.last_code(parts[1])
                if code is None:
                    return EmulatorReply.json({"error": "no code", "user": parts[1]}, 404)
                return EmulatorReply.json({"user": parts[1], "code": code})
            if len(parts) == 2 and parts[0] == "polls" and request.method == "GET":
                return EmulatorReply.json({"user": parts[1], "polls": self.poll_count(parts[1])})
            if len(parts) == 3 and parts[0] == "oob" and request.method == "POST":
                if parts[2] == "approve":
                    spec = request.json_or_none()
                    number = spec.get("number") if isinstance(spec, dict) else None
                    self.approve(parts[1], number=None if number is None else str(number))
                elif parts[2] == "deny":
                    self.deny(parts[1])
                else:
                    return None
                return EmulatorReply.json({"user": parts[1], "decision": parts[2]})
        except LookupError as exc:
            return EmulatorReply.json({"error": str(exc), "user": parts[1]}, 404)
        return None

    # -- StartAuthentication ------------------------------------------------

    def _start(self, request: EmulatorRequest, body: Mapping[str, Any], pod: str) -> EmulatorReply:
        if "Version" not in body:
            raise BadRequest("Missing required parameter: Version.")
        if body["Version"] != "1.0":
            raise BadRequest("Unsupported Version; 1.0 is the only supported version.")
        name = body.get("User")
        tenant = body.get("TenantId")
        bad_tenant = tenant is not None and str(tenant).lower() != self.tenant_id.lower()
        if not isinstance(name, str) or not name.strip() or bad_tenant:
            return self._start_failure()
        key = name.strip().lower().removesuffix("@" + self.login_suffix.lower())
        target = self._redirects.get(key)
        if target is not None and (target.loop or target.address != pod):
            return self._reply(_envelope({"PodFqdn": self._pod_fqdn(target)}))
        user = self._users.get(key)
        if user is None:
            if self.reveal_unknown_users:
                return self._start_failure()
            # No password: the decoy package can never succeed.
            decoy = _as_package([["UP"]])
            user = _User(name, None, decoy, email="", phone="", display_name=name)
        login = self._logins.get(_cookie(request, ".ASPXAUTH") or "")
        if login is not None and login.user is user and login.expires > self.clock():
            result = self._success_result(login, pod, platform_token=False)
            return self._reply(_envelope(result), headers=self._set_cookie(login, persistent=True))
        self._purge_expired()
        session = _Session(
            id=secrets.token_urlsafe(33),
            user=user,
            challenges=self._instantiate(user.challenges),
            pod=pod,
            expires=self.clock() + self.session_lifetime,
            platform_token=body.get("PlatformTokenResponse") is True,
        )
        self._sessions[session.id] = session
        return self._reply(_envelope(self._package_result(session)))

    def _purge_expired(self) -> None:
        # Abandoned flows would otherwise pile up in a long-running demo server.
        now = self.clock()
        for session in [s for s in self._sessions.values() if s.expires <= now]:
            self._kill(session, "session expired")
        for key in [k for k, login in self._logins.items() if login.expires <= now]:
            del self._logins[key]

    def _start_failure(self) -> EmulatorReply:
        return self._reply(
            _envelope({"Summary": "Undefined"}, success=False, message=GENERIC_FAILURE, error=True)
        )

    def _pod_fqdn(self, pod: _Pod) -> str:
        return f"{pod.scheme}://{pod.address}" if self.pod_fqdn_as_url else pod.address

    @staticmethod
    def _instantiate(package: Sequence[Sequence[UserMechanism]]) -> list[list[_Mech]]:
        return [
            [
                _Mech(m, part_ids=tuple(f"u_{uuid.uuid4()}" for _ in m.questions))
                if m.name == "SQ"
                else _Mech(m)
                for m in challenge
            ]
            for challenge in package
        ]

    def _package_result(self, session: _Session) -> dict[str, Any]:
        user = session.user
        event = user.event_description if session.repackaged else None
        return {
            "ClientHints": {
                "PersistDefault": False,
                "AllowPersist": True,
                "AllowForgotPassword": user.allow_forgot_password,
                "EndpointAuthenticationEnabled": False,
            },
            "Version": "1.0",
            "SessionId": session.id,
            "EventDescription": event,
            "RetryWaitingTime": 0,
            "SecurityImageName": None,
            "AllowLoginMfaCache": False,
            "Challenges": [
                {"Mechanisms": [self._describe(m, user) for m in challenge]}
                for challenge in session.challenges
            ],
            "Summary": "NewPackage",
            "TenantId": self.tenant_id,
        }

    @staticmethod
    def _describe(mech: _Mech, user: _User) -> dict[str, Any]:
        spec = mech.spec
        digits = re.sub(r"\D", "", user.phone)[-4:]
        domain = user.email.partition("@")[2]
        out: dict[str, Any] = {"AnswerType": spec.answer_type, "Name": spec.name}
        if spec.name == "UP":
            out |= {"PromptMechChosen": "Enter Password", "PromptSelectMech": "Password"}
        elif spec.name == "RESET":
            out |= {
                "PromptMechChosen": "Enter a new password",
                "PromptSelectMech": "Reset Password",
                "PasswordComplexityHint": "At least 8 characters, different from the old one.",
            }
        elif spec.name == "SQ":
            questions = list(spec.questions)
            chosen = (
                f"Answer security question '{questions[0]}':"
                if len(questions) == 1
                else "Answer the security questions"
            )
            parts = [
                {
                    "Uuid": uid,
                    "QuestionText": q,
                    "PromptMechChosen": f"Answer security question '{q}':",
                }
                for uid, q in zip(mech.part_ids, questions, strict=True)
            ]
            out |= {
                "MultipartMechanism": {
                    "PromptSelectMech": "Security Question",
                    "MechanismParts": parts,
                },
                "Question": questions[0],
                "PromptMechChosen": chosen,
                "PromptSelectMech": "Security Question",
            }
        elif spec.name == "SMS":
            out |= {
                "PartialDeviceAddress": digits,
                "PromptMechChosen": f"Sending a text to mobile phone ending... {digits}. "
                "Enter the code or click the link in the message to proceed with authentication.",
                "PromptSelectMech": f"SMS... XXX-{digits}",
            }
        elif spec.name == "EMAIL":
            out |= {
                "MaskedEmailAddress": f"***@{domain}",
                "PromptMechChosen": f"Email sent to xxxx@{domain}. "
                "Click the link or manually enter the code to authenticate.",
                "PromptSelectMech": f"Email... @{domain}",
                "PartialAddress": domain,
            }
        elif spec.name == "OATH":
            out |= {
                "PromptMechChosen": "Enter Verification Code",
                "UiPrompt": "OATH OTP Client",
                "PromptSelectMech": "OATH OTP Client",
            }
        elif spec.name == "OTP":
            out |= {
                "PromptMechChosen": "Sent Mobile Authenticator request to your device. Please "
                "follow the instructions to proceed with authentication or enter verification "
                "code here.",
                "PromptSelectMech": "Mobile Authenticator",
            }
        elif spec.name == "U2F":
            out |= {
                "PromptMechChosen": "Insert security key and press its button",
                "UiPrompt": "FIDO2 Security Key",
                "PromptSelectMech": "FIDO2 Security Key",
                "Type": "SECURITYKEY",
            }
        elif spec.name == "PF":
            out |= {
                "PartialPhoneNumber": digits,
                "PromptMechChosen": f"We will now attempt to call your phone ({digits}). "
                "Please follow the instructions to proceed with authentication.",
                "PromptSelectMech": f"Phone Call... XXX-{digits}",
            }
        else:  # QR
            out |= {
                "PromptMechChosen": "Scan QR Code with the CyberArk Identity app on an "
                "enrolled device.",
                "PromptSelectMech": "QR Code",
                "Image": "data:image/png;base64," + (spec.image or _QR_PNG),
            }
        return out | {"MechanismId": mech.id, "Enrolled": spec.enrolled}

    # -- AdvanceAuthentication ----------------------------------------------

    def _advance(self, body: Mapping[str, Any]) -> EmulatorReply:
        session_id = body.get("SessionId")
        if not isinstance(session_id, str) or not session_id:
            raise BadRequest("Missing required parameter: SessionId.")
        operations = self._operations(body)
        session = self._sessions.get(session_id)
        if session is None:
            return self._failure_reply()
        try:
            if self.clock() >= session.expires:
                raise _Failed("session expired")
            if operations[0].get("Action") == "ForgotPassword":
                return self._reply(_envelope(self._forgot_password(session)))
            result: dict[str, Any] = {}
            for operation in operations:
                result = self._apply(session, operation)
        except _Failed as failure:
            self._kill(session, failure.reason)
            return self._failure_reply()
        if "MultipleOperations" in body:
            result = {"ResultAppliesTo": operations[-1]["MechanismId"], **result}
        headers: dict[str, str] = {}
        if result.get("Summary") == "LoginSuccess":
            tokens = result.get("OAuthTokens") or {}
            login = self._logins[result.get("Auth") or tokens["access_token"]]
            headers = self._set_cookie(login, persistent=body.get("PersistentLogin", True) is True)
        return self._reply(_envelope(result), headers=headers)

    @staticmethod
    def _operations(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        if "MultipleOperations" in body:
            batch = body["MultipleOperations"]
            if not isinstance(batch, list) or not batch:
                raise BadRequest("MultipleOperations must be a non-empty list.")
            operations: list[Mapping[str, Any]] = []
            for operation in batch:
                if not isinstance(operation, dict):
                    raise BadRequest("Each of MultipleOperations must be a JSON object.")
                if operation.get("Action") == "ForgotPassword":
                    raise BadRequest("ForgotPassword cannot be batched.")
                operations.append(operation)
        else:
            operations = [body]
        for operation in operations:
            if not isinstance(operation.get("Action"), str):
                raise BadRequest("Missing required parameter: Action.")
            mechanism_id = operation.get("MechanismId")
            needs_mechanism = operation["Action"] != "ForgotPassword"
            if needs_mechanism and (not isinstance(mechanism_id, str) or not mechanism_id):
                raise BadRequest("Missing required parameter: MechanismId.")
        return operations

    def _failure_reply(self) -> EmulatorReply:
        return self._reply(
            _envelope({"Summary": "Failure"}, success=False, message=GENERIC_FAILURE, error=True)
        )

    def _kill(self, session: _Session, reason: str) -> None:
        self._sessions.pop(session.id, None)
        session.oob = None
        self._failures[session.user.name.lower()] = reason

    def _apply(self, session: _Session, operation: Mapping[str, Any]) -> dict[str, Any]:
        action = operation["Action"]
        if action not in _ACTIONS or action == "ForgotPassword":
            raise _Failed(f"unsupported action {action!r}")
        mech = self._current_mechanism(session, operation["MechanismId"])
        if not mech.spec.enrolled:
            raise _Failed(f"{mech.spec.name} is not enrolled")
        if action == "Answer":
            return self._answer(session, mech, operation.get("Answer"))
        if action == "Poll":
            return self._poll(session, mech)
        if action == "RetryOOB" and (session.oob is None or session.oob.mech_id != mech.id):
            raise _Failed("RetryOOB without a running StartOOB")
        return self._start_oob(session, mech)

    @staticmethod
    def _current_mechanism(session: _Session, mechanism_id: str) -> _Mech:
        if session.index >= len(session.challenges):  # a batch ran past the package's end
            raise _Failed("the package is already complete")
        for mech in session.challenges[session.index]:
            if mech.id == mechanism_id:
                return mech
        raise _Failed("MechanismId is not in the current challenge")

    def _start_oob(self, session: _Session, mech: _Mech) -> dict[str, Any]:
        name = mech.spec.name
        if mech.spec.answer_type == _TEXT:
            raise _Failed(f"StartOOB on the in-band mechanism {name}")
        code = f"{secrets.randbelow(10**6):06d}" if name in _CODE_MECHANISMS else None
        number = f"{secrets.randbelow(90) + 10}" if mech.spec.number_matching else None
        session.oob = _Oob(mech.id, self.clock(), code, number)
        if code is not None:
            self._codes[session.user.name.lower()] = code
        result: dict[str, Any] = {"Summary": "OobPending"}
        if number is not None:
            result["GeneratedAuthValue"] = number
        return result

    def _running_oob(self, session: _Session, mech: _Mech) -> _Oob:
        oob = session.oob
        if oob is None or oob.mech_id != mech.id:
            raise _Failed(f"{mech.spec.name} was not started with StartOOB")
        return oob

    def _poll(self, session: _Session, mech: _Mech) -> dict[str, Any]:
        key = session.user.name.lower()
        self._polls[key] = self._polls.get(key, 0) + 1
        oob = self._running_oob(session, mech)
        if mech.spec.name == "U2F":
            raise _Failed("U2F cannot be polled")
        if self.clock() - oob.started >= self.oob_lifetime:
            return self._mechanism_failed(session, "out-of-band challenge expired")
        if oob.decision == "approved":
            return self._challenge_passed(session)
        if oob.decision == "denied":
            return self._mechanism_failed(session, "out-of-band challenge denied")
        return {"Summary": "OobPending"}

    def _answer(self, session: _Session, mech: _Mech, answer: Any) -> dict[str, Any]:
        spec, user = mech.spec, session.user
        if spec.answer_type == _START_OOB:
            raise _Failed(f"{spec.name} cannot be answered, only polled")
        if spec.answer_type == _START_TEXT_OOB:
            oob = self._running_oob(session, mech)
            if self.clock() - oob.started >= self.oob_lifetime:
                return self._mechanism_failed(session, "out-of-band challenge expired")
            expected = spec.answer if spec.name == "U2F" else oob.code
            right = isinstance(answer, str) and answer.strip() == expected
        elif spec.name == "UP":
            right = user.password is not None and answer == user.password
        elif spec.name == "SQ":
            right = self._check_questions(mech, answer)
        else:  # RESET
            right = (
                isinstance(answer, str)
                and len(answer) >= _MIN_NEW_PASSWORD
                and answer != user.password
            )
            if right:
                user.password = answer
        if not right:
            return self._mechanism_failed(session, f"wrong answer to {spec.name}")
        return self._challenge_passed(session)

    @staticmethod
    def _check_questions(mech: _Mech, answer: Any) -> bool:
        expected = list(mech.spec.questions.values())
        if isinstance(answer, str) and len(expected) == 1:
            answer = {mech.part_ids[0]: answer}
        if not isinstance(answer, dict) or set(answer) != set(mech.part_ids):
            return False
        # Security answers compare without case or surrounding space (emulator choice).
        return all(
            isinstance(answer[uid], str) and answer[uid].strip().casefold() == want.casefold()
            for uid, want in zip(mech.part_ids, expected, strict=True)
        )

    def _mechanism_failed(self, session: _Session, reason: str) -> dict[str, Any]:
        last = session.index == len(session.challenges) - 1
        if not session.user.defer_failure or last:
            raise _Failed(reason)
        session.deferred = session.deferred or reason
        return self._challenge_passed(session)

    def _challenge_passed(self, session: _Session) -> dict[str, Any]:
        user = session.user
        session.oob = None
        session.completed += 1
        if (
            session.purpose == "login"
            and user.new_package is not None
            and not session.repackaged
            and session.completed == user.new_package_after
        ):
            session.repackaged = True
            session.challenges = self._instantiate(user.new_package)
            session.index = 0
            return self._package_result(session)
        session.index += 1
        if session.index < len(session.challenges):
            return {"Summary": "StartNextChallenge"}
        if session.deferred is not None:
            raise _Failed(session.deferred)
        del self._sessions[session.id]
        if session.purpose == "reset":
            return {
                "Summary": "NoncommitalSuccess",
                "ClientMessage": "Your password has been reset. Sign in with the new password.",
            }
        login = self._issue_login(user)
        return self._success_result(login, session.pod, platform_token=session.platform_token)

    def _forgot_password(self, session: _Session) -> dict[str, Any]:
        user = session.user
        if not user.allow_forgot_password or session.purpose != "login":
            raise _Failed("ForgotPassword is not allowed")
        del self._sessions[session.id]
        reset = _Session(
            id=secrets.token_urlsafe(33),
            user=user,
            challenges=self._instantiate([user.recovery, (UserMechanism("RESET"),)]),
            pod=session.pod,
            expires=self.clock() + self.session_lifetime,
            purpose="reset",
        )
        self._sessions[reset.id] = reset
        return self._package_result(reset)

    # -- tokens and logout ----------------------------------------------------

    def _issue_login(self, user: _User) -> _Login:
        now = self.clock()
        # The claims of a CyberArk platform token that clients read: ark-sdk-python takes
        # tenant_id, subdomain, platform_domain and unique_name from it (without verifying
        # the signature) to name the tenant and build its service URLs.
        claims = {
            "sub": user.user_id,
            "unique_name": f"{user.name}@{self.login_suffix}",
            "tenant_id": self.tenant_id,
            "subdomain": self.subdomain,
            "platform_domain": self.platform_domain,
            "aud": self.tenant_id,
            "iss": self.tenant_id,
            "iat": int(now),
            "exp": int(now) + self.token_lifetime,
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode())
            for part in ({"alg": "HS256", "typ": "JWT"}, claims)
        )
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        login = _Login(
            user=user,
            auth=secrets.token_hex(96).upper(),
            token=f"{signing_input}.{_b64url(signature)}",
            refresh=secrets.token_urlsafe(32),
            expires=now + self.token_lifetime,
        )
        self._logins[login.auth] = self._logins[login.token] = login
        return login

    def _success_result(self, login: _Login, pod: str, *, platform_token: bool) -> dict[str, Any]:
        user = login.user
        own_pod = f"{self.scheme}://{pod}" if self.pod_fqdn_as_url else pod
        result: dict[str, Any] = {
            "AuthLevel": "Normal",
            "DisplayName": user.display_name,
            "Token": login.token,
            "Auth": login.auth,
            "UserId": user.user_id,
            "EmailAddress": user.email,
            "UserDirectory": "CDS",
            "PodFqdn": own_pod,
            "User": f"{user.name}@{self.login_suffix}",
            "CustomerID": self.tenant_id,
            "SystemID": self.tenant_id,
            "SourceDsType": "CDS",
            "Summary": "LoginSuccess",
        }
        if platform_token:
            result |= {"RefreshToken": login.refresh, "TokenLifetime": self.token_lifetime}
        if self.oauth_tokens:
            # The platform form (browser trace of a Delinea/CyberArk platform login): the
            # tokens only in OAuthTokens, with OAuth 2.0 names (RFC 6749 section 5.1).
            for key in ("Token", "Auth", "RefreshToken", "TokenLifetime"):
                result.pop(key, None)
            result["OAuthTokens"] = {
                "access_token": login.token,
                "refresh_token": login.refresh,
                "id_token": login.token,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "session_expires_in": int(self.session_lifetime),
                "scope": "xpmInteractive",
            }
        return result

    def _set_cookie(self, login: _Login, *, persistent: bool) -> dict[str, str]:
        if self.oauth_tokens:
            return {}  # the platform form sets no .ASPXAUTH
        lifetime = f"; Max-Age={self.token_lifetime}" if persistent else ""
        secure = "; Secure" if self.tls else ""
        return {"Set-Cookie": f".ASPXAUTH={login.auth}; path=/; HttpOnly{secure}{lifetime}"}

    def _logout(self, request: EmulatorRequest) -> EmulatorReply:
        if request.body and not isinstance(request.json(), dict):
            raise BadRequest("The request body must be a JSON object.")
        bearer = (request.header("authorization") or "").removeprefix("Bearer ").strip()
        for credential in (bearer, _cookie(request, ".ASPXAUTH") or ""):
            login = self._logins.get(credential)
            if login is not None:
                self._logins.pop(login.auth, None)
                self._logins.pop(login.token, None)
        # "Any user can access this API": an unknown token still logs out fine.
        expired = ".ASPXAUTH=; path=/; HttpOnly; Max-Age=0" + ("; Secure" if self.tls else "")
        # The spec's SecurityLogout gives Result as an object ("Return object for a
        # successful API call") with the call's own success flag.
        done = {"success": True, "IsSoftError": False}
        return self._reply(_envelope(done), headers={"Set-Cookie": expired})
