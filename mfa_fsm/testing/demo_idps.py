"""The emulators as the demo and ``mfa-fsm login --emulator`` run them, one class per IdP.

A provider's flow class names its class here in ``emulator`` (``"module:Class"``), so the
web demo, the CLI's ``login --emulator`` and ``emulate`` find every emulated IdP through the
provider registry and spell no provider name themselves. A :class:`DemoIdp` wraps one running
emulator and says what a person needs: the configuration that points at it, its demo users,
the code last sent to a user, the approval of a push.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import attrs

from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.cyberark.client import CyberArkConfig
from mfa_fsm.duo.client import DuoConfig
from mfa_fsm.entrust.client import EntrustConfig
from mfa_fsm.testing._server import EmulatorServer
from mfa_fsm.testing.cyberark import CyberArkEmulator
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator, DuoEmulatorDevice
from mfa_fsm.testing.entrust import (
    DEMO_APP_PASSWORDS,
    DEMO_KBA,
    DEMO_TEMP_ACCESS_CODE,
    DEMO_TOKEN_CODE,
    EntrustEmulator,
)

#: How many numbers the demo's phone offers for number matching: the right one and decoys.
NUMBER_CHOICES = 3


@attrs.frozen
class GridCard:
    """A user's Entrust grid card as printed: ``rows[r][c]`` is the cell the login pages
    call column ``c`` (A, B, ...) of row ``r + 1`` (the A1 style of Entrust's grid)."""

    serial: str
    rows: tuple[tuple[str, ...], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The column letters, A first."""
        return tuple(chr(ord("A") + c) for c in range(len(self.rows[0]) if self.rows else 0))


@attrs.frozen
class DemoUser:
    """A demo user of one emulator, and what to type or do to sign in."""

    provider: str
    user: str
    how: str


class DemoIdp:
    """One emulated IdP for the demo and the CLI (subclass per provider).

    ``host``/``port``/``tls`` are the emulator's; ``standalone`` serves it as for any other
    client (``mfa-fsm emulate``) rather than for mfa_fsm's demo. Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    #: the flow class's ``provider``
    provider: ClassVar[str]
    #: how the emulator is named on a terminal ("Entrust IDaaS emulator")
    title: ClassVar[str]
    #: the demo users worth clicking through (the emulator's module docs list them all)
    users: ClassVar[tuple[DemoUser, ...]] = ()
    #: what a demo user types for the challenges that need no phone, for people
    answers: ClassVar[str] = ""
    #: users whose first factor the *application* checks (the IdP never sees it), with the
    #: demo application's password for each; empty when the IdP checks every first factor
    app_passwords: ClassVar[Mapping[str, str]] = {}
    #: the port ``mfa-fsm emulate`` serves it on unless told otherwise
    default_port: ClassVar[int] = 0

    emulator: EmulatorServer
    #: (user, number shown) -> the numbers offered, for the latest push with a number
    _choices: dict[tuple[str, str], tuple[str, ...]]

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False, standalone: bool = False
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} is abstract: use a provider's class")

    def config(self, **options: Any) -> object:
        """The provider's configuration pointing at the running emulator, with ``options``."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for a terminal: where the emulator listens, and what a client needs."""
        return self.emulator.base_url

    def hint(self, user: str, view: FlowView) -> str | None:
        """What the user's phone or token shows now for ``view``'s challenge, or ``None``."""
        return None

    def approve(self, user: str, *, number: str | None = None) -> None:
        """Approve the user's running push; LookupError when none is waiting.

        ``number`` is the number the user picked when the push asks for number matching;
        any other number than the one shown refuses the push (see :meth:`number_choices`).
        """
        raise LookupError(user)

    def deny(self, user: str) -> None:
        """Deny the user's running push; LookupError when none is waiting."""
        raise LookupError(user)

    def last_code(self, user: str) -> str | None:
        """The last code the emulator sent to ``user`` (SMS, e-mail, voice), if any."""
        return None

    def pending(self, user: str) -> bool:
        """Whether ``user`` has a request (a push, a call) waiting for :meth:`approve` or
        :meth:`deny`: the control page offers those buttons only then."""
        return False

    def approve_route(self, user: str) -> str | None:
        """The emulator's control route (HTTP POST) approving the user's push, if it has one."""
        return None

    def number_shown(self, user: str) -> str | None:
        """The number a running push asks the user to match, if any."""
        return None

    def number_choices(self, user: str) -> tuple[str, ...]:
        """The numbers the user's phone offers for a running push with number matching: the
        one the login page shows among ``NUMBER_CHOICES - 1`` decoys, in ascending order (so
        the position tells nothing), or ``()`` when no number is to be matched.

        Phones make the user pick the page's number among others, so that approving takes
        looking at the login page (Entrust's user guide, "Log in using mutual
        authentication": tap the challenge that matches); a wrong pick refuses the push.
        The decoys are drawn once per number shown, so a page that reloads offers the same.
        """
        number = self.number_shown(user)
        if number is None:
            return ()
        key = (user, number)
        offered: dict[tuple[str, str], tuple[str, ...]] = getattr(self, "_choices", {})
        if key not in offered:
            choices = {number}
            while len(choices) < NUMBER_CHOICES:
                choices.add(self._decoy(number))
            # Kept per user, for each user's latest push only.
            offered = {k: v for k, v in offered.items() if k[0] != user}
            offered[key] = tuple(sorted(choices))
            self._choices = offered
        return offered[key]

    def _decoy(self, number: str) -> str:
        """A number that looks like ``number``: as many digits, zero-padded."""
        return f"{secrets.randbelow(10 ** len(number)):0{len(number)}d}"

    def grid_card(self, user: str) -> GridCard | None:
        """The user's grid card (Entrust GRID), or None for a user or IdP without one."""
        return None

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    def start(self) -> Self:
        self.emulator.start()
        return self

    def stop(self) -> None:
        self.emulator.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EntrustDemo(DemoIdp):
    """The Entrust IDaaS emulator with its demo users."""

    provider = "entrust"
    title = "Entrust IDaaS emulator"
    default_port = 8701
    users = (
        DemoUser(
            "entrust",
            "jsmith",
            "demo sign-in password jsmith-app-password, then push, token, OTP by "
            "SMS/e-mail/voice, security questions, grid, temporary code",
        ),
        DemoUser(
            "entrust", "pwuser", "password Passw0rd! (checked by Entrust), then push, token or OTP"
        ),
        DemoUser(
            "entrust",
            "pushmc",
            "demo sign-in password pushmc-app-password, then a push with a number to match",
        ),
        DemoUser(
            "entrust",
            "lowrisk",
            "demo sign-in password lowrisk-app-password; no second factor needed",
        ),
        DemoUser(
            "entrust",
            "blocked",
            "demo sign-in password blocked-app-password; refused by the risk rules",
        ),
    )
    answers = (
        f"Entrust: token code {DEMO_TOKEN_CODE}, temporary access code {DEMO_TEMP_ACCESS_CODE}, "
        "security answers " + ", ".join(f"{q!r} → {a}" for q, a in DEMO_KBA.items())
    )
    app_passwords = DEMO_APP_PASSWORDS

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False, standalone: bool = False
    ) -> None:
        self.emulator: EntrustEmulator = EntrustEmulator(host=host, port=port, tls=tls)

    def config(self, **options: Any) -> EntrustConfig:
        return EntrustConfig(
            base_url=self.emulator.base_url,
            application_id=self.emulator.application_id,
            **options,
        )

    def describe(self) -> str:
        return f"{self.emulator.base_url}  application id {self.emulator.application_id}"

    def hint(self, user: str, view: FlowView) -> str | None:
        challenge = view.challenge
        kind = challenge.kind if challenge is not None else None
        if kind == "otp" and view.state in ("SecondFactorSelected", "OobPending"):
            sent = self.emulator.last_otp(user)
            return None if sent is None else f"the code sent is {sent}"
        if kind == "token" and view.state == "SecondFactorSelected":
            return f"the token shows {self.emulator.expected_response(user)}"
        return None

    def approve(self, user: str, *, number: str | None = None) -> None:
        self.emulator.approve_push(user, number=number)

    def approve_route(self, user: str) -> str:
        return f"{self.emulator.base_url}/_emulator/push/{user}/approve"

    def deny(self, user: str) -> None:
        self.emulator.deny_push(user)

    def pending(self, user: str) -> bool:
        return self.emulator.push_pending(user)

    def last_code(self, user: str) -> str | None:
        return self.emulator.last_otp(user)

    def number_shown(self, user: str) -> str | None:
        return self.emulator.pending_mutual_challenge(user)

    def grid_card(self, user: str) -> GridCard | None:
        entrust_user = self.emulator.users.get(user)
        if entrust_user is None or "GRID" not in entrust_user.authenticators:
            return None
        return GridCard(entrust_user.grid_serial, entrust_user.grid)


class CyberArkDemo(DemoIdp):
    """The CyberArk Identity emulator with its demo users, redirects served over HTTP."""

    provider = "cyberark"
    title = "CyberArk Identity emulator"
    default_port = 8702
    users = (
        DemoUser(
            "cyberark", "alice", "password alice-password, then push, SMS, e-mail or question"
        ),
        DemoUser("cyberark", "bob", "push only, with a number to match"),
        DemoUser("cyberark", "carol", "password carol-password, then two security questions"),
        DemoUser("cyberark", "dave", "password dave-password, then e-mail or SMS"),
        DemoUser("cyberark", "erin", "password erin-password, then a new package: e-mail or SMS"),
        DemoUser("cyberark", "frank", "on another pod: password frank-password, then push"),
    )
    answers = "CyberArk: alice's pet: Smokey; carol: First car? Beetle, Favourite colour? Teal"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False, standalone: bool = False
    ) -> None:
        # PodFqdn as a URL lets the demo's client follow redirects over plain HTTP; a
        # standalone emulator (``mfa-fsm emulate``, for other clients) sends bare host names.
        self.emulator: CyberArkEmulator = CyberArkEmulator(
            host=host, port=port, tls=tls, pod_fqdn_as_url=not standalone
        )

    def config(self, **options: Any) -> CyberArkConfig:
        return CyberArkConfig(base_url=self.emulator.base_url, pod_scheme="http", **options)

    def hint(self, user: str, view: FlowView) -> str | None:
        challenge = view.challenge
        if (
            challenge is not None
            and challenge.kind == "otp"
            and view.state
            in (
                "SecondFactorSelected",
                "OobPending",
            )
        ):
            sent = self.emulator.last_code(user)
            return None if sent is None else f"the code sent is {sent}"
        return None

    def approve(self, user: str, *, number: str | None = None) -> None:
        self.emulator.approve(user, number=number)

    def number_shown(self, user: str) -> str | None:
        return self.emulator.number_shown(user)

    def _decoy(self, number: str) -> str:
        # CyberArk's GeneratedAuthValue has no leading zero (10-99 in the emulator).
        low = 10 ** (len(number) - 1)
        return str(low + secrets.randbelow(10 ** len(number) - low))

    def approve_route(self, user: str) -> str:
        return f"{self.emulator.base_url}/_emulator/oob/{user}/approve"

    def deny(self, user: str) -> None:
        self.emulator.deny(user)

    def pending(self, user: str) -> bool:
        return self.emulator.oob_pending(user)

    def last_code(self, user: str) -> str | None:
        return self.emulator.last_code(user)


#: The Duo demo users' devices (ids as Duo writes them: 20 upper-case letters and digits).
_DUO_PHONE = DuoEmulatorDevice(
    "DPDEMO0PHONE00000001",
    "phone",
    ("auto", "push", "sms", "phone", "mobile_otp"),
    number="XXX-XXX-0142",
    display_name="iOS (XXX-XXX-0142)",
)
_DUO_TOKEN = DuoEmulatorDevice("DHDEMO0TOKEN00000001", "token", (), name="0")
_DUO_LANDLINE = DuoEmulatorDevice(
    "DPDEMO0LANDLINE00001",
    "phone",
    ("auto", "phone"),
    number="XXX-XXX-0199",
    display_name="Landline (XXX-XXX-0199)",
)


class DuoDemo(DemoIdp):
    """The Duo Auth API emulator with demo users of its own.

    Duo checks only a second factor, so every Duo demo user is an EXTERNAL one: the demo
    application's sign-in page checks the application password (``app_passwords``) and
    begins Duo for the user it vouches for. The user ids differ from the other emulators'
    (the demo's sign-in page finds a user's IdP by user id). The emulator's own demo users
    (``jsmith``, ``callme``, ...) are there too, for tests and other clients.
    """

    provider = "duo"
    title = "Duo Auth API emulator"
    default_port = 8703
    users = (
        DemoUser(
            "duo",
            "dsmith",
            "demo sign-in password dsmith-app-password, then Duo Push, a phone call, SMS "
            "passcodes or a passcode",
        ),
        DemoUser("duo", "dcall", "demo sign-in password dcall-app-password, then a phone call"),
        DemoUser(
            "duo",
            "dtrusted",
            "demo sign-in password dtrusted-app-password; Duo's policy needs no second factor",
        ),
        DemoUser(
            "duo", "dblocked", "demo sign-in password dblocked-app-password; Duo's policy denies"
        ),
        DemoUser(
            "duo",
            "dnew",
            "demo sign-in password dnew-app-password; not enrolled: Duo gives an enrolment link",
        ),
    )
    answers = f"Duo: Duo Mobile and the token show passcode {DEMO_PASSCODE}"
    app_passwords: ClassVar[Mapping[str, str]] = {
        demo.user: f"{demo.user}-app-password" for demo in users
    }

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False, standalone: bool = False
    ) -> None:
        self.emulator: DuoEmulator = DuoEmulator(host=host, port=port, tls=tls)
        self.emulator.add_user("dsmith", devices=(_DUO_PHONE, _DUO_TOKEN))
        self.emulator.add_user("dcall", devices=(_DUO_LANDLINE,))
        self.emulator.add_user("dtrusted", preauth="allow", devices=())
        self.emulator.add_user("dblocked", preauth="deny", devices=())
        self.emulator.add_user("dnew", preauth="enroll", devices=())

    def config(self, **options: Any) -> DuoConfig:
        return DuoConfig(self.emulator.credentials, base_url=self.emulator.base_url, **options)

    def describe(self) -> str:
        # The secret key is this run's throwaway one; a client of the emulator needs it.
        credentials = self.emulator.credentials
        return (
            f"{self.emulator.base_url}  integration key {credentials.integration_key}, "
            f"secret key {credentials.secret_key}, signed for API hostname "
            f"{credentials.api_hostname}"
        )

    def hint(self, user: str, view: FlowView) -> str | None:
        challenge = view.challenge
        if challenge is None or view.state != "SecondFactorSelected":
            return None
        if challenge.kind == "otp":
            sent = self.last_code(user)
            return None if sent is None else f"the text message holds passcode {sent}"
        if challenge.kind == "token":
            return f"Duo Mobile and the token show {self.emulator.passcode(user)}"
        return None

    def approve(self, user: str, *, number: str | None = None) -> None:
        self.emulator.answer(user, "approve")  # Duo's Auth API shows no number to match

    def approve_route(self, user: str) -> str:
        return f"{self.emulator.base_url}/_emulator/push/{user}/approve"

    def deny(self, user: str) -> None:
        self.emulator.answer(user, "deny")

    def pending(self, user: str) -> bool:
        return self.emulator.waiting(user)

    def last_code(self, user: str) -> str | None:
        try:
            unused = self.emulator.sms_passcodes(user)
        except LookupError:
            return None
        return unused[0] if unused else None


__all__ = ["CyberArkDemo", "DemoIdp", "DemoUser", "DuoDemo", "EntrustDemo", "GridCard"]
