"""The Duo flow: Duo's Auth API v2 as the second factor behind the application's own first.

Theory of operation
-------------------
Duo never sees the first factor: the application checks it (password, SSO) and then asks Duo
for a second. ``DuoFlow.start`` therefore calls nothing and waits in ``AwaitingFirstFactor``,
the EXTERNAL stage, for the application to say the first factor passed.

* ``submit_first_factor()`` calls ``/preauth``. ``auth`` offers one choice per device and
  capability (``push:<device>``, ``phone:<device>``, ``sms:<device>``, and ``passcode`` for
  Duo Mobile or a token); ``allow`` completes (Duo's policy needs no second factor); ``deny``
  ends ``Failed(rejected)``; ``enroll`` ends ``Failed(rejected)`` with the enrolment link as
  a choice of kind ``enroll`` (its ``detail`` is the URL), so the page can send the user to
  enrol instead of showing a dead end.
* ``select_second_factor(factor=...)`` (a choice id, or a kind offered once: ``push``,
  ``call``, ``sms``, ``token`` for the passcode): a push or a phone call is ``/auth`` with
  ``async=1`` and runs in ``OobPending``; ``sms`` sends a batch of passcodes (``/auth`` answers
  ``deny``/``sent``) and ``passcode`` calls nothing: both wait in ``SecondFactorSelected``
  for a typed passcode.
  It is taken during a running challenge too ("try another way": Duo holds nothing between
  calls, so the choices stay offered).
* ``resend()`` sends the running challenge again where Duo can: a new SMS batch, or a new
  push or call (a new ``txid``; the Auth API cannot withdraw the first, which times out at
  Duo). Offered (``Challenge.resend_at``) ``resend_cooldown`` seconds after the last send
  (:class:`ResendTooSoon` before); a throttle counts it as a ``send``.
* ``submit_response(answer=...)`` checks the passcode (``/auth`` ``factor=passcode``):
  ``allow`` completes, ``deny`` stays for another try, ``locked_out`` ends ``Failed(locked)``.
* ``poll()`` calls ``/auth_status`` with the ``txid``, never before ``next_poll_at``:
  ``waiting`` stays (Duo's ``status_msg`` becomes the pending page's prompt), ``allow``
  completes, ``deny`` and ``fraud`` end ``Failed(denied)``, Duo's ``timeout`` and an unknown
  ``txid`` end ``Failed(expired)``, ``locked_out`` ends ``Failed(locked)``. A poll that fails
  transiently (429, 5xx, network) changes nothing and its error's ``retry_after`` backs off.
* ``cancel()`` ends the flow (the Auth API has no call that withdraws a push); after the
  state's deadline any event ends ``Failed(expired)``.

Because ``submit_first_factor()`` only says "the application checked the first factor",
a Duo flow starts only for a :class:`~mfa_fsm.core.identity.VerifiedUser` the application
vouches for (``first_factor_outside``): a typed ``user=`` is refused with
:class:`VerifiedUserRequired`, and the web blueprint mounts for Duo only with the
application's ``current_user``.

The end user's IP address (Duo's ``ipaddr``) is given per step, ``send(event,
client_ip=...)`` (and ``start(client_ip=...)``), and sent with every ``/preauth`` and
``/auth`` of that step; it is neither stored in the snapshot nor logged. A throttle counts
a push, a phone call and an SMS batch as ``send`` and a typed passcode as ``answer`` (the
choice kinds ``push``, ``call`` and ``otp`` are the base's ``SEND_KINDS``). Duo returns no
session token: a completed flow's ``Result.token`` is Duo's ``trusted_device_token`` when
Remembered Devices is on, else empty. All transitions are in ``DuoMachine`` below; every
guard is a :func:`~mfa_fsm.core.flow.said` guard, so the engine asks the machine once per
(state, event, outcome kind).

Sources (Duo Auth API v2 documentation, duo.com/docs/authapi): "/preauth" for the ``result``
values, the devices and their ``capabilities``, ``enroll_portal_url`` and the
``trusted_device_token``; "/auth" for the ``factor`` values, ``device``, ``passcode``,
``async`` and the ``allow``/``deny`` results with their ``status`` (``sent``,
``locked_out``, ...); "/auth_status" for ``waiting`` and ``status_msg`` and the ``fraud``
and ``timeout`` statuses; "/preauth" and "/auth" for ``ipaddr`` (without it IP-based
policies have no effect); "First Steps" for the three values the configuration holds. How the
parameters are sent follows ``duo_client/auth.py`` (``preauth``, ``auth``, ``auth_status``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import attrs
import structlog

from mfa_fsm.core.errors import (
    IdpError,
    InvalidInput,
    TransportError,
    UsageError,
    VerifiedUserRequired,
)
from mfa_fsm.core.exchange import Exchange, returned
from mfa_fsm.core.flow import Clock, Flow, FlowMachine, Outcome, on, resend_time, rows, states
from mfa_fsm.core.http import AsyncTransport, Transport
from mfa_fsm.core.identity import VerifiedUser, client_address
from mfa_fsm.core.inputs import identifier, numeric_code
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.outcomes import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    OOB_PENDING,
    REJECTED,
    RESPONSE_DUE,
    SECOND_FACTOR_DUE,
)
from mfa_fsm.core.registry import Setting
from mfa_fsm.core.snapshot import Challenge, Choice, Result, Snapshot
from mfa_fsm.duo.client import AUTH_PATH, AUTH_STATUS_PATH, PREAUTH_PATH, DuoClient, DuoConfig
from mfa_fsm.duo.replies import INVALID_PARAMETERS_CODE, DuoDevice, PreauthReply

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

log = structlog.get_logger("mfa_fsm")

#: The lengths (digits) of the passcodes Duo checks: 6 from Duo Mobile and most hardware
#: tokens, 7 in an SMS batch, 8 from an 8-digit OATH token (RFC 4226 section 5.3 allows 6 to
#: 8), 9 for a bypass code the Duo Admin Panel generates ("a random string of nine digits").
#: The Auth API documents ``passcode`` only as "Passcode entered by the user", so nothing
#: outside this range is a passcode Duo issues: such a typed code is refused before any call
#: (no attempt spent towards ``locked_out``). YubiKey passcodes (Yubico OTP, 44 letters)
#: are not taken.
PASSCODE_LENGTHS = (6, 9)

#: The choice id of a typed passcode (Duo Mobile, a hardware token, or SMS after ``sms``).
PASSCODE = "passcode"
#: Capabilities offered as choices, in the order a picker shows them: (kind, label prefix).
_OFFERED = {"push": ("push", "Duo Push to"), "phone": ("call", "Phone call to")}
_SMS = ("otp", "Text message passcodes to")
#: Duo's ``status_msg`` is shown to the user; a proxy's novel is cut to this.
_MAX_MESSAGE = 200


class DuoMachine(FlowMachine):
    """The Duo flow's table: (state, event, outcome) -> target, one row each; every failing
    answer is ``failed``, its reason in the snapshot."""

    (
        AwaitingFirstFactor,
        AwaitingSecondFactor,
        SecondFactorSelected,
        OobPending,
        Completed,
        Failed,
    ) = states()
    live = (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected, OobPending)

    submit_first_factor = rows(
        AwaitingFirstFactor,
        {SECOND_FACTOR_DUE: AwaitingSecondFactor, COMPLETED: Completed, FAILED: Failed},
    )
    # From a running challenge too: "try another way" (Duo holds no state between calls).
    select_second_factor = rows(
        (AwaitingSecondFactor, SecondFactorSelected, OobPending),
        {
            RESPONSE_DUE: SecondFactorSelected,
            OOB_PENDING: OobPending,
            COMPLETED: Completed,
            FAILED: Failed,
        },
    )
    submit_response = rows(
        SecondFactorSelected,
        {COMPLETED: Completed, REJECTED: SecondFactorSelected, FAILED: Failed},
    )
    poll = rows(OobPending, {OOB_PENDING: OobPending, COMPLETED: Completed, FAILED: Failed})
    resend = rows(
        SecondFactorSelected,
        {RESPONSE_DUE: SecondFactorSelected, COMPLETED: Completed, FAILED: Failed},
    ) | rows(OobPending, {OOB_PENDING: OobPending})
    cancel = rows(live, {CANCELLED: Failed})
    expire = rows(live, {EXPIRED: Failed})


@attrs.frozen
class DuoContext:
    """Duo's private part of a snapshot. The ``txid`` is a secret: never in a repr.

    The end user's IP address is not part of it: it comes with every step.
    """

    #: the chosen choice id (``push:<device>``, ``sms:<device>``, ``passcode``...)
    factor: str | None = None
    #: the running push or call
    txid: str | None = attrs.field(default=None, repr=False)
    polls: int = 0


class DuoFlow(Flow):
    """A Duo second-factor login; start with :meth:`start`, continue with :meth:`restore`.

    Configuration (``config=``, a :class:`DuoConfig`, which holds the secret key) is the
    application's, not the flow's: it is passed on every restore and never stored in the
    snapshot.
    """

    provider: ClassVar[str] = "duo"
    label: ClassVar[str] = "Duo"
    #: ``mfa-fsm login --provider duo``: the Auth API application's keys (Admin Panel,
    #: Applications > Auth API); the secret key from the environment or a hidden prompt only
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting(
            "integration_key",
            "--integration-key",
            "Auth API integration key (ikey), e.g. DIWJ8X6AEYOR5OMC6TQ1",
            env="MFA_FSM_DUO_IKEY",
            required=True,
        ),
        Setting(
            "secret_key",
            None,
            "Auth API secret key (skey)",
            env="MFA_FSM_DUO_SKEY",
            required=True,
            secret=True,
        ),
        Setting(
            "api_hostname",
            "--api-hostname",
            "API hostname, e.g. api-XXXXXXXX.duosecurity.com",
            env="MFA_FSM_DUO_HOST",
            required=True,
        ),
        Setting(
            "base_url",
            "--base-url",
            "where requests go instead of https://<api hostname> (a proxy); still signed "
            "for the API hostname",
            env="MFA_FSM_DUO_URL",
        ),
    )
    emulator: ClassVar[str | None] = "mfa_fsm.testing.demo_idps:DuoDemo"
    machine = DuoMachine
    context_type = DuoContext
    config_type = DuoConfig
    client_type = DuoClient
    config: DuoConfig
    client: DuoClient

    #: Duo never sees the first factor: ``submit_first_factor`` is the application's word
    first_factor_outside: ClassVar[bool] = True
    idp_checks_password: ClassVar[bool] = False  # the Auth API checks no password

    @classmethod
    def opening(
        cls,
        *,
        config: DuoConfig,
        verified_user: VerifiedUser | None = None,
        user: str | None = None,
        flow_id: str | None = None,
        transport: Transport | AsyncTransport | None = None,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
        client_ip: str | None = None,
    ) -> Exchange[DuoFlow]:
        """A flow for ``verified_user`` (its ``user_id`` is the Duo username), in
        ``AwaitingFirstFactor``.

        Run by ``DuoFlow.start(...)`` (blocking) or ``await DuoFlow.start_async(...)`` with
        these keywords; it asks Duo nothing, so it returns the flow as it is.

        ``verified_user=VerifiedUser(user_id, checked_by=...)`` is a user whose first factor
        the application has checked itself, from its own verified session: Duo checks only
        the second factor, so a typed ``user=`` is refused with
        :class:`VerifiedUserRequired` (and still counted by ``throttle`` as a start, so
        probing costs the same either way). No Duo call is made: the application's own
        first factor comes first, and ``submit_first_factor()`` says it passed.
        ``client_ip`` is the end user's address, validated and counted per address by
        ``throttle``; give it again with every ``send``, which passes it to Duo as
        ``ipaddr``. Raises :class:`InvalidInput` for a malformed user id, flow id or
        address, :class:`UsageError` for a ``verified_user`` that is not a
        :class:`VerifiedUser`, :class:`VerifiedUserRequired` and :class:`Throttled`; no flow
        exists until this returns.
        """
        if verified_user is not None and (
            user is not None or not isinstance(verified_user, VerifiedUser)
        ):
            raise UsageError(
                "pass verified_user=VerifiedUser(user_id, checked_by=...), built by your "
                "application after its own first-factor check, and no user="
            )
        if verified_user is None and user is None:
            raise InvalidInput(
                "verified_user",
                "is required: pass verified_user=VerifiedUser(user_id, checked_by=...) for the "
                "user your application has signed in",
            )
        user = identifier("user", verified_user.user_id if verified_user is not None else user)
        if flow_id is not None:
            identifier("flow_id", flow_id)  # it is stored, and digested into log lines
        client_ip = client_address(client_ip)
        yield from cls._count_start(throttle, user, client_ip)
        if verified_user is None:
            raise VerifiedUserRequired(
                "Duo checks only the second factor, so a Duo flow may only start for a user "
                "your application has checked: pass verified_user=VerifiedUser(user_id, "
                "checked_by=...) from your own verified session instead of user="
            )
        now = clock()
        snapshot = Snapshot(
            provider=cls.provider,
            flow_id=flow_id or uuid.uuid4().hex,
            user_id=user,
            state="AwaitingFirstFactor",
            version=0,
            created_at=now,
            deadline=now + config.flow_lifetime,
            challenge=Challenge(
                factor="EXTERNAL",
                kind="external",
                prompt=f"First factor checked by {verified_user.checked_by}",
                accepts_code=False,
            ),
            context=DuoContext(),
        )
        flow = cls(snapshot, config=config, transport=transport, clock=clock, throttle=throttle)
        log.info(
            "mfa_fsm.flow_started",
            flow_ref=flow_ref(snapshot.flow_id),
            provider=cls.provider,
            target="AwaitingFirstFactor",
            version=0,
        )
        return flow

    @classmethod
    def config_from_settings(cls, values: Mapping[str, Any]) -> DuoConfig:
        """:meth:`DuoConfig.from_settings`: the three keys are one :class:`DuoCredentials`."""
        return DuoConfig.from_settings(**values)

    # -- handlers: one per event, each returns what Duo said -----------------------------

    @on(
        DuoMachine.submit_first_factor,
        outcomes=[SECOND_FACTOR_DUE, COMPLETED, FAILED],
        calls=f"POST {PREAUTH_PATH}",
    )
    def _on_submit_first_factor(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        reply = yield from self.client.preauth(snapshot.user_id)
        if reply.result == "allow":
            return _completed(snapshot, None)
        if reply.result == "deny":
            return _rejected(f"Duo refused the login: {_said(reply.status_msg)}")
        if reply.result == "enroll":
            return _enroll(reply)
        choices = _choices(reply.devices)
        if not any(choice.supported for choice in choices):
            return _rejected("the user has no Duo device this application can use")
        return Outcome(SECOND_FACTOR_DUE, {"choices": choices, "challenge": None})

    @on(
        DuoMachine.select_second_factor,
        outcomes=[RESPONSE_DUE, OOB_PENDING, COMPLETED, FAILED],
        calls=f"POST {AUTH_PATH}",
    )
    def _on_select_second_factor(
        self, snapshot: Snapshot, now: float, factor: str, delivery: str | None = None
    ) -> Exchange[Outcome]:
        ctx: DuoContext = snapshot.context
        choice = _offered(snapshot, factor)
        if delivery is not None and delivery not in choice.deliveries:
            raise InvalidInput("delivery", f"must be one of {list(choice.deliveries)}")
        kind, _, device = factor.partition(":")
        context = attrs.evolve(ctx, factor=factor, txid=None, polls=0)
        if factor == PASSCODE:
            challenge = Challenge(factor=factor, kind=choice.kind, prompt=choice.label)
            return Outcome(RESPONSE_DUE, {"challenge": challenge, "context": context})
        user = snapshot.user_id
        if kind == "sms":
            reply = yield from self.client.auth("sms", user, device=device)
            if reply.result == "allow":
                return _completed(snapshot, reply.trusted_device_token)
            if reply.status != "sent":
                return _refused(reply.status, reply.status_msg, ctx)
            challenge = Challenge(
                factor=factor,
                kind=choice.kind,
                prompt=f"Type a passcode from the text message sent to {choice.detail}",
                delivery="SMS",
                resend_at=resend_time(now, self.config.resend_cooldown),
            )
            return Outcome(RESPONSE_DUE, {"challenge": challenge, "context": context})
        started = yield from self.client.auth_async(
            "push" if kind == "push" else "phone", user, device=device
        )
        return Outcome(
            OOB_PENDING,
            {
                "context": attrs.evolve(context, txid=started.txid),
                "challenge": Challenge(
                    factor=factor,
                    kind=choice.kind,
                    prompt=choice.label,
                    accepts_code=False,
                    resend_at=resend_time(now, self.config.resend_cooldown),
                ),
                "next_poll_at": self.config.poll_schedule.next_poll(now),
                "deadline": min(snapshot.deadline, now + self.config.push_lifetime),
            },
        )

    @on(
        DuoMachine.resend,
        outcomes={
            "SecondFactorSelected": [RESPONSE_DUE, COMPLETED, FAILED],
            "OobPending": [OOB_PENDING],
        },
        calls=f"POST {AUTH_PATH}",
    )
    def _on_resend(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        """A new SMS batch (``/auth`` ``factor=sms``), or a new push or call (``/auth``
        ``async=1``, a new ``txid``; the Auth API cannot withdraw the first, which times out
        at Duo). The engine has checked the cooldown."""
        ctx: DuoContext = snapshot.context
        return (yield from self._on_select_second_factor(snapshot, now, factor=ctx.factor or ""))

    @on(
        DuoMachine.submit_response,
        outcomes=[COMPLETED, REJECTED, FAILED],
        calls=f"POST {AUTH_PATH}",
    )
    def _on_submit_response(self, snapshot: Snapshot, now: float, answer: str) -> Exchange[Outcome]:
        ctx: DuoContext = snapshot.context
        passcode = numeric_code(
            "answer", answer, lengths=PASSCODE_LENGTHS, source="the length of Duo's passcodes"
        )
        reply = yield from self.client.auth("passcode", snapshot.user_id, passcode=passcode)
        if reply.result == "allow":
            return _completed(snapshot, reply.trusted_device_token)
        if reply.status == "deny":
            challenge = snapshot.challenge
            if challenge is not None:
                challenge = attrs.evolve(challenge, rejected=True)
            return Outcome(REJECTED, {"challenge": challenge})
        return _refused(reply.status, reply.status_msg, ctx)

    @on(
        DuoMachine.poll,
        outcomes=[OOB_PENDING, COMPLETED, FAILED],
        calls=f"GET {AUTH_STATUS_PATH}",
    )
    def _on_poll(self, snapshot: Snapshot, now: float) -> Exchange[Outcome | None]:
        ctx: DuoContext = snapshot.context
        if snapshot.next_poll_at is not None and now < snapshot.next_poll_at:
            return None  # too early: answer from the snapshot, spare Duo
        if ctx.txid is None:
            raise UsageError("this flow holds no Duo transaction; start a new flow")
        schedule = self.config.poll_schedule
        # Seconds since Duo last answered a poll: how long an outage has lasted.
        outage = now - ((snapshot.next_poll_at or now) - schedule.interval)
        try:
            reply = yield from self.client.auth_status(ctx.txid)
        except IdpError as exc:
            if exc.status == 400 and exc.error_code == str(INVALID_PARAMETERS_CODE):
                return _ended("expired", "Duo no longer knows this request; start again", ctx)
            if exc.transient:
                exc.retry_after = schedule.retry_after(outage=outage, retry_after=exc.retry_after)
            raise
        except TransportError as exc:
            exc.retry_after = schedule.retry_after(outage=outage)
            raise
        if reply.result == "allow":
            return _completed(snapshot, reply.trusted_device_token)
        if reply.result == "waiting":
            challenge = snapshot.challenge
            if challenge is not None and reply.status_msg:
                challenge = attrs.evolve(challenge, prompt=_said(reply.status_msg))
            return Outcome(
                OOB_PENDING,
                {
                    "challenge": challenge,
                    "next_poll_at": schedule.next_poll(now),
                    "context": attrs.evolve(ctx, polls=ctx.polls + 1),
                },
            )
        return _refused(reply.status, reply.status_msg, ctx)

    @on(DuoMachine.cancel, outcomes=[CANCELLED])
    def _on_cancel(self, snapshot: Snapshot, now: float) -> Outcome:
        # The Auth API has no call that withdraws a push: it times out on the device.
        return Outcome(
            CANCELLED,
            {"failure": "cancelled", "next_poll_at": None, "context": _forget(snapshot.context)},
        )

    def _expire(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        outcome = yield from returned(super()._expire(snapshot, now))
        return Outcome(outcome.kind, {**outcome.changes, "context": _forget(snapshot.context)})


def _said(message: str | None) -> str:
    return (message or "no reason given")[:_MAX_MESSAGE]


def _choices(devices: tuple[DuoDevice, ...]) -> tuple[Choice, ...]:
    """One choice per device and capability mfa_fsm drives, then one for a typed passcode."""
    choices: list[Choice] = []
    passcode = False
    for device in devices:
        label = device.label
        for capability, (kind, prefix) in _OFFERED.items():
            if capability in device.capabilities:
                choices.append(
                    Choice(id=f"{capability}:{device.device}", kind=kind, label=f"{prefix} {label}")
                )
        if "sms" in device.capabilities:
            kind, prefix = _SMS
            choices.append(
                Choice(
                    id=f"sms:{device.device}",
                    kind=kind,
                    label=f"{prefix} {label}",
                    deliveries=("SMS",),
                    default_delivery="SMS",
                    detail=device.number or label,
                )
            )
        passcode = passcode or "mobile_otp" in device.capabilities or device.kind == "token"
    if passcode:
        choices.append(
            Choice(id=PASSCODE, kind="token", label="Passcode from Duo Mobile or your token")
        )
    return tuple(choices)


def _offered(snapshot: Snapshot, factor: object) -> Choice:
    if isinstance(factor, str):
        for choice in snapshot.choices:
            if choice.id == factor and choice.supported:
                return choice
    offered = [c.id for c in snapshot.choices if c.supported]
    raise InvalidInput("factor", f"is not offered to this user; choose one of {offered}")


def _completed(snapshot: Snapshot, trusted_device_token: str | None) -> Outcome:
    return Outcome(
        COMPLETED,
        {
            "result": Result(user_id=snapshot.user_id, token=trusted_device_token or ""),
            "challenge": None,
            "next_poll_at": None,
            "context": _forget(snapshot.context),
        },
    )


def _ended(reason: str, detail: str, ctx: DuoContext | None = None) -> Outcome:
    """``Failed`` with ``reason`` (one of the snapshot's failure reasons) and ``detail``.

    Every failing answer is the one outcome ``failed``: the table has one edge to ``Failed``
    per event, and the reason travels in the snapshot, as in the CyberArk flow.
    """
    changes: dict[str, object] = {
        "failure": reason,
        "failure_detail": detail,
        "next_poll_at": None,
        "challenge": None,
    }
    if ctx is not None:
        changes["context"] = _forget(ctx)
    return Outcome(FAILED, changes)


def _rejected(detail: str) -> Outcome:
    return _ended("rejected", detail)


def _refused(status: str | None, status_msg: str | None, ctx: DuoContext) -> Outcome:
    """What a ``deny`` means, by Duo's ``status``; the ended flow keeps no txid."""
    if status == "locked_out":
        return _ended("locked", "Duo locked the user out after too many failed attempts", ctx)
    if status == "timeout":
        return _ended("expired", "nobody answered on the device in time", ctx)
    if status == "fraud":
        return _ended("denied", "the request was reported as fraudulent on the device", ctx)
    if status == "deny":
        return _ended("denied", "the request was declined on the device", ctx)
    return _ended("denied", f"Duo denied the login: {_said(status_msg)}", ctx)


def _enroll(reply: PreauthReply) -> Outcome:
    url = reply.enroll_portal_url
    # The link ends up in a page's href: only an https URL to a host is passed on.
    parts = urlsplit(url) if url else None
    if parts is None or parts.scheme != "https" or not parts.netloc:
        return _rejected("the user has not enrolled a device with Duo; ask the administrator")
    outcome = _rejected(
        "the user has not enrolled a device with Duo: follow the enrolment link, then log in again"
    )
    link = Choice(
        id="enroll", kind="enroll", label="Enrol a device with Duo", supported=False, detail=url
    )
    return Outcome(outcome.kind, {**outcome.changes, "choices": (link,)})


def _forget(ctx: DuoContext) -> DuoContext:
    # A finished flow keeps no transaction id.
    return attrs.evolve(ctx, txid=None)


__all__ = ["DuoConfig", "DuoContext", "DuoFlow", "DuoMachine"]
