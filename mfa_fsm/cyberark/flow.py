"""The CyberArk Identity flow: a package of challenges, each answered with one mechanism.

Theory of operation
-------------------
``CyberArkFlow.start`` sends StartAuthentication, following ``PodFqdn`` redirects (to
``{pod_scheme}://{PodFqdn}``, never to a pod already asked, at most ``max_redirects`` times;
every later call goes to the last pod), and lands in ``AwaitingFirstFactor`` at version 0
holding the package: a ``SessionId`` and one or more challenges, each a list of alternative
mechanisms. The state says which challenge is being answered and what it still needs:

======================================  ====================  ====================
the current challenge                   the first one         a later one
======================================  ====================  ====================
offers several mechanisms, none chosen  AwaitingFirstFactor   AwaitingSecondFactor
                                        (``choices``)         (``choices``)
a ``Text`` mechanism is chosen          AwaitingFirstFactor   SecondFactorSelected
(password UP, question SQ, RESET)       (``challenge``)       (``challenge``)
its only mechanism is out of band       AwaitingFirstFactor   (started at once)
an out-of-band mechanism is running     OobPending            OobPending
======================================  ====================  ====================

A challenge with one usable mechanism is chosen automatically (the vendor says so); ``choices``
list a challenge's mechanisms whenever it has several, so a page can offer "try another way".

Events
* ``select_second_factor(factor=<MechanismId>)`` picks one of ``choices`` (in any live state,
  the first challenge included); ``factor`` may also be a kind (``push``, ``sms``, ``email``,
  ``kba``, ...) when exactly one offered mechanism is of that kind. A ``Text`` mechanism
  becomes the challenge; an out-of-band one is started (``StartOOB``) in the same step, so a
  code is never asked for before it was sent.
* ``submit_first_factor(answer=...)`` answers the first challenge's ``Text`` mechanism
  (``answers=[...]`` for several security questions, in order);
  ``submit_first_factor()`` starts its only mechanism when that is out of band (passwordless).
* ``submit_response(answer=...)`` answers a later ``Text`` mechanism, or, in ``OobPending``,
  types the code of a ``StartTextOob`` mechanism (SMS, EMAIL, OATH, OTP) while it is polled.
  ``StartOob`` mechanisms (PF phone call, QR) take no code: they are only polled.
* ``resend()`` sends the running mechanism again (AdvanceAuthentication ``Action:
  RetryOOB``, one of the vendor spec's ``Action`` values): a new SMS or e-mail code, a new
  push, a new call. Offered (``Challenge.resend_at``) for mechanisms that reach the user's
  device, not ``resend_cooldown`` seconds before the last send (:class:`ResendTooSoon`); a
  throttle counts it as a ``send``. The answer is read as a StartOOB's.
* ``poll()`` asks whether the running mechanism was answered, never before ``next_poll_at``.
  A transient failure (HTTP 429/5xx, network) changes nothing and raises with ``retry_after``
  from :class:`~mfa_fsm.core.polling.PollSchedule`.
* ``cancel()`` ends ``Failed(cancelled)``. CyberArk's API documents no call that drops an
  unfinished package (``/Security/Logout`` ends a signed-in session only), so the package
  stays alive at CyberArk until it times out: a token or cookie saved before the cancel is
  refused by the store's compare-and-set or the sealed state's ledger, not by CyberArk.

Every AdvanceAuthentication reply is dispatched on ``Result.Summary`` to a shared outcome
(in [ ]; :mod:`mfa_fsm.core.outcomes`), and each outcome leads to the same state whichever
live state and event asked: that is the whole table, ``CyberArkMachine`` below.

* ``OobPending`` → ``OobPending`` [oob_pending], showing ``GeneratedAuthValue`` as the number
  to match; ``next_poll_at`` is one poll interval on.
* ``StartNextChallenge`` → the next challenge of the held package: several mechanisms
  [second_factor_due] → ``AwaitingSecondFactor``; one ``Text`` mechanism [response_due] →
  ``SecondFactorSelected``; one out-of-band mechanism is started at once [oob_pending].
  Should that StartOOB fail (network, HTTP 5xx, unreadable reply), the step still lands
  [second_factor_due], offering that one mechanism, because CyberArk has already accepted
  the answer before it.
* ``NewPackage`` → the package is replaced and the flow starts over at its first challenge
  [first_factor_due] → ``AwaitingFirstFactor``, from any live state (so does choosing a
  ``Text`` mechanism of the first challenge).
* ``LoginSuccess`` → ``Completed`` [completed]: ``Result.Token`` (else ``Auth``) and the
  ``.ASPXAUTH`` cookie, the user id and name; the pod is kept in the context. One whose
  ``User`` is not the user this flow started with (by login, login without its suffix, or
  e-mail) belongs to another session, replayed: an :class:`IdpReplyError`, nothing changes.
* ``success: false`` → ``Failed`` [failed]: the package is dead. CyberArk sends one generic
  failure for a wrong answer, a denied or expired out-of-band challenge and a dead session, and
  a tenant may defer a wrong answer to the last challenge, so the reason is ``rejected`` after
  an answer or a StartOOB and ``expired`` after a poll (never ``denied``: CyberArk does not
  say the user refused, and a timeout is not a denial), and the detail says what it may mean.
  With ``Result: null`` (the service refused the request itself) the reason is ``idp_error``.
* ``NoncommitalSuccess`` (the package ended without a session, as after a password reset) and
  any unknown ``Summary`` → ``Failed(idp_error)``, never a guess.

Deadlines: the package has ``flow_lifetime`` from the start; a running out-of-band challenge
has ``oob_lifetime`` from its StartOOB (capped by the package's). Past it, any event ends
``Failed(expired)`` without calling CyberArk. All transitions are in ``CyberArkMachine``.

Mechanisms that cannot be used here (``Enrolled: false``, or a FIDO2/U2F key, which needs
the browser's WebAuthn) are offered as choices with ``supported=False`` and the reason as
``detail``; a challenge with no usable mechanism at all ends the flow ``Failed(unavailable)``
with a detail that says why (at the start, on a ``NewPackage`` or on the next challenge), so
no page is left without a way forward.

A typed code of an ``OATH`` mechanism (an authenticator app's OTP) must be 6 to 8 digits
(RFC 4226 section 5.3, RFC 6238): anything else is refused locally (:class:`InvalidInput`)
and costs no attempt at CyberArk. The vendor documents give no format for SMS and e-mail
codes, so those are only checked for letters and digits.

Not driven: federated users (``IdpRedirectUrl``: ``start`` refuses them), FIDO2 keys (U2F),
``ForgotPassword``, and ``MultipleOperations`` batches
(each mechanism gets its own AdvanceAuthentication, as the vendor describes first).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import structlog

from mfa_fsm.core.errors import (
    IdpError,
    IdpReplyError,
    InvalidInput,
    TransportError,
    UsageError,
)
from mfa_fsm.core.exchange import Exchange, returned
from mfa_fsm.core.flow import (
    SEND_KINDS,
    Clock,
    Flow,
    FlowMachine,
    Outcome,
    on,
    resend_time,
    rows,
    states,
)
from mfa_fsm.core.http import AsyncTransport, Transport
from mfa_fsm.core.identity import VerifiedUser, client_address
from mfa_fsm.core.inputs import code, identifier, numeric_code, secret_text
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.outcomes import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FIRST_FACTOR_DUE,
    OOB_PENDING,
    RESPONSE_DUE,
    SECOND_FACTOR_DUE,
    OutcomeKind,
)
from mfa_fsm.core.registry import Setting
from mfa_fsm.core.snapshot import Challenge, Choice, Result, Snapshot
from mfa_fsm.cyberark.client import (
    ADVANCE_PATH,
    START_PATH,
    CyberArkClient,
    CyberArkConfig,
    pod_url,
    same_base,
)
from mfa_fsm.cyberark.replies import (
    ANSWER_TYPES,
    AUTH_COOKIE,
    LOGIN_SUCCESS,
    NEW_PACKAGE,
    NONCOMMITAL_SUCCESS,
    START_NEXT_CHALLENGE,
    START_OOB,
    START_TEXT_OOB,
    TEXT,
    Login,
    Mechanism,
    Reply,
)
from mfa_fsm.cyberark.replies import (
    OOB_PENDING as SUMMARY_OOB_PENDING,
)

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

log = structlog.get_logger("mfa_fsm")

#: Mechanism name -> provider-independent kind (see ``Choice.kind``).
KINDS = {
    "UP": "password",
    "SQ": "kba",
    "RESET": "new_password",
    "SMS": "otp",
    "EMAIL": "otp",
    "OATH": "token",
    "OTP": "push",
    "PF": "call",
    "QR": "qr",
    "U2F": "security_key",
}
#: Mechanisms that are one delivery channel: ``factor=`` may name them by it.
CHANNELS = {"SMS": "sms", "EMAIL": "email"}
#: Mechanisms mfa_fsm cannot drive: a FIDO2 key needs a WebAuthn assertion from the browser.
UNSUPPORTED = frozenset({"U2F"})
#: Typed codes with a documented format: an OATH OTP is 6 to 8 digits (RFC 4226 section
#: 5.3: "a 6-digit code at a minimum and possibly 7 and 8-digit code"; RFC 6238 TOTP).
OATH_LENGTHS = {"OATH": (6, 8)}
_RFC = "RFC 4226"
#: AdvanceAuthentication actions that send to the user's device; both answer OobPending.
_SENDS = frozenset({"StartOOB", "RetryOOB"})

_REJECTED = (
    "CyberArk refused the sign-in: a wrong answer to this or an earlier challenge, or the "
    "session ended. Start again."
)
#: A failed Poll: CyberArk's one generic failure (spec "Failures": a denied push, an OOB
#: timeout or an earlier wrong answer each invalidate the package) never says the user
#: refused, so it is ``expired`` (the package is gone), not ``denied``.
_OOB_ENDED = (
    "CyberArk ended the out-of-band challenge without saying why: declined on the device, "
    "timed out, or an earlier answer was wrong. Start again."
)


#: What an AdvanceAuthentication may answer, and the state each answer leads to whichever
#: live state and event asked (the module docstring says which reply is which).
ANSWERED = (
    FIRST_FACTOR_DUE,
    SECOND_FACTOR_DUE,
    RESPONSE_DUE,
    OOB_PENDING,
    COMPLETED,
    FAILED,
)
#: Choosing a mechanism answers nothing yet: a Text one is now due (in the first challenge,
#: still the first factor), an out-of-band one is started (StartOOB: pending, failed, or a
#: new package).
CHOSEN = (FIRST_FACTOR_DUE, RESPONSE_DUE, OOB_PENDING, FAILED)


class CyberArkMachine(FlowMachine):
    """The CyberArk flow's table, grouped by outcome: each outcome has one target.

    ``answer_leads_to`` is the whole rule: every event that reaches CyberArk, from every
    state that takes it, goes where its outcome says. The events differ only in the states
    that take them, and in what choosing a mechanism can lead to (``CHOSEN``; the first
    challenge's Text mechanism is still the first factor, so ``response_due`` never comes
    from ``AwaitingFirstFactor``).
    """

    (
        AwaitingFirstFactor,
        AwaitingSecondFactor,
        SecondFactorSelected,
        OobPending,
        Completed,
        Failed,
    ) = states()
    live = (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected, OobPending)

    answer_leads_to: ClassVar[Mapping[OutcomeKind, Any]] = {
        FIRST_FACTOR_DUE: AwaitingFirstFactor,
        SECOND_FACTOR_DUE: AwaitingSecondFactor,
        RESPONSE_DUE: SecondFactorSelected,
        OOB_PENDING: OobPending,
        COMPLETED: Completed,
        FAILED: Failed,
    }

    submit_first_factor = rows(AwaitingFirstFactor, answer_leads_to)
    select_second_factor = rows(
        live, {FIRST_FACTOR_DUE: AwaitingFirstFactor, OOB_PENDING: OobPending, FAILED: Failed}
    ) | rows(live[1:], {RESPONSE_DUE: SecondFactorSelected})
    submit_response = rows((SecondFactorSelected, OobPending), answer_leads_to)
    poll = rows(OobPending, answer_leads_to)
    resend = rows(
        OobPending, {OOB_PENDING: OobPending, FIRST_FACTOR_DUE: AwaitingFirstFactor, FAILED: Failed}
    )
    cancel = rows(live, {CANCELLED: Failed})
    expire = rows(live, {EXPIRED: Failed})


@attrs.frozen
class CyberArkContext:
    """CyberArk's private part of a snapshot: what the next request needs.

    ``base_url`` is the pod every call goes to (after redirects); ``package`` and ``index``
    the challenges and the one being answered; ``mechanism_id`` / ``answer_type`` the chosen
    mechanism; ``oob_started_at`` / ``last_answer_at`` time the running out-of-band challenge
    (the snapshot's ``deadline`` is its hard limit). The session id and the per-flow cookies
    are secrets: never in a repr, and dropped when the flow ends.
    """

    base_url: str
    tenant_id: str | None = None
    session_id: str | None = attrs.field(default=None, repr=False)
    package: tuple[tuple[Mechanism, ...], ...] = ()
    index: int = 0
    mechanism_id: str | None = None
    answer_type: str | None = None
    cookies: dict[str, str] = attrs.field(factory=dict, repr=False)
    oob_started_at: float | None = None
    last_answer_at: float | None = None
    polls: int = 0
    redirects: int = 0
    #: the pod LoginSuccess named (``Result.PodFqdn``), for the caller's later API calls
    pod_fqdn: str | None = None

    @property
    def current(self) -> tuple[Mechanism, ...]:
        """The mechanisms of the challenge being answered (empty once the flow has ended)."""
        return self.package[self.index] if self.index < len(self.package) else ()

    @property
    def chosen(self) -> Mechanism | None:
        """The chosen mechanism, if any."""
        return next((m for m in self.current if m.id == self.mechanism_id), None)


class CyberArkFlow(Flow):
    """A CyberArk Identity login; start with :meth:`start`, continue with :meth:`restore`.

    Configuration (``config=``, a :class:`CyberArkConfig`) is the application's, not the
    flow's, so it is passed on every restore and never stored in the snapshot.
    """

    provider: ClassVar[str] = "cyberark"
    label: ClassVar[str] = "CyberArk Identity"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting(
            "base_url",
            "--base-url",
            "tenant URL, e.g. https://abc1234.id.cyberark.cloud",
            env="MFA_FSM_CYBERARK_URL",
            required=True,
        ),
        Setting(
            "tenant_id", "--tenant-id", "tenant id, e.g. ABC1234", env="MFA_FSM_CYBERARK_TENANT"
        ),
    )
    emulator: ClassVar[str | None] = "mfa_fsm.testing.demo_idps:CyberArkDemo"
    machine = CyberArkMachine
    context_type = CyberArkContext
    config_type = CyberArkConfig
    client_type = CyberArkClient
    config: CyberArkConfig
    client: CyberArkClient

    @classmethod
    def opening(
        cls,
        *,
        config: CyberArkConfig,
        user: str | None = None,
        verified_user: VerifiedUser | None = None,
        flow_id: str | None = None,
        transport: Transport | AsyncTransport | None = None,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
        client_ip: str | None = None,
    ) -> Exchange[CyberArkFlow]:
        """StartAuthentication for ``user``; return a flow in ``AwaitingFirstFactor``.

        Run by ``CyberArkFlow.start(...)`` (blocking) or ``await
        CyberArkFlow.start_async(...)`` with these keywords.

        CyberArk checks every challenge of the package itself, the first (a password, or a
        passwordless push where the tenant allows it) included, so a typed ``user`` is
        safe here; ``verified_user=`` (a :class:`~mfa_fsm.core.identity.VerifiedUser`)
        names the user the same way for an application that has one. ``client_ip`` is
        validated and counted by ``throttle`` but not sent: CyberArk's Security API
        documents no client-address field (its risk engine sees the caller's connection).

        Follows ``PodFqdn`` redirects. Raises :class:`InvalidInput` for a malformed user
        name, address or ``flow_id``; :class:`Throttled`; :class:`IdpError` when CyberArk
        refuses to start (unknown tenant or user, lockout) or redirects in a loop;
        :class:`UsageError` for a federated user; :class:`IdpReplyError` /
        :class:`TransportError` as any call. No flow exists until this returns.
        """
        if verified_user is not None:
            if user is not None or not isinstance(verified_user, VerifiedUser):
                raise UsageError("pass either user= or verified_user=VerifiedUser(...), not both")
            user = verified_user.user_id
        if user is None:
            raise InvalidInput("user", "is required (or verified_user=VerifiedUser(...))")
        identifier("user", user)
        if flow_id is not None:
            identifier("flow_id", flow_id)  # it is logged and stored: no control characters
        client_ip = client_address(client_ip)
        yield from cls._count_start(throttle, user, client_ip)
        now = clock()
        placeholder = Snapshot(
            provider=cls.provider,
            flow_id=flow_id or uuid.uuid4().hex,
            user_id=user,
            state="AwaitingFirstFactor",
            version=0,
            created_at=now,
            deadline=now + config.flow_lifetime,
            context=CyberArkContext(base_url=config.base_url, tenant_id=config.tenant_id),
        )
        flow = cls(placeholder, config=config, transport=transport, clock=clock, throttle=throttle)
        flow._use_client_ip(client_ip)
        base_url, reply, redirects = yield from flow._start_following_redirects(
            placeholder.flow_id, user
        )
        if not reply.success:
            raise IdpError(
                "CyberArk refused to start authentication for this user (unknown tenant or "
                "user, locked out, or too many attempts); check the user name and tenant",
                path=START_PATH,
                status=200,
                error_code=reply.error_code,
            )
        if reply.federated:
            raise UsageError(
                "this user signs in at an external identity provider (federation), which "
                "mfa_fsm does not drive; send the user to CyberArk's own login page"
            )
        context = CyberArkContext(
            base_url=base_url,
            tenant_id=reply.tenant_id or config.tenant_id,
            session_id=reply.session_id,
            cookies=_merge_cookies({}, reply.cookies),
            redirects=redirects,
        )
        if reply.summary == LOGIN_SUCCESS and reply.login is not None:
            changes = flow._completed(placeholder, context, reply, now, path=START_PATH)
            state = "Completed"
        elif reply.summary == NEW_PACKAGE and reply.challenges and reply.session_id:
            unusable = _unusable(reply.challenges[0])
            if unusable is not None:
                # Nothing of the first challenge can be used here: the flow starts ended,
                # saying why, rather than on a page with no way forward.
                state, changes = "Failed", _ended(context, "unavailable", unusable)
            else:
                state, changes = (
                    "AwaitingFirstFactor",
                    flow._first_challenge(placeholder, context, reply),
                )
        else:
            raise IdpReplyError(
                "CyberArk's StartAuthentication reply holds neither a package nor a login",
                path=START_PATH,
                status=200,
            )
        flow._snapshot = attrs.evolve(placeholder, state=state, **changes)
        log.info(
            "mfa_fsm.flow_started",
            flow_ref=flow_ref(placeholder.flow_id),
            provider=cls.provider,
            target=state,
            redirects=redirects,
            version=0,
        )
        return flow

    @classmethod
    def throttle_user_key(cls, user_id: str) -> str:
        """The login name without any ``@suffix``, NFKC-normalised and casefolded: CyberArk
        matches users case-insensitively and with or without the tenant's login suffix
        (Security API StartAuthentication ``User``), so ``BOB``, ``bob@example.com`` and
        ``Bob@Other.test`` share one allowance. Two users who differ only by suffix share
        it too: over-throttling, the safe side."""
        return super().throttle_user_key(user_id).partition("@")[0].strip()

    def _start_following_redirects(
        self, flow_id: str, user: str
    ) -> Exchange[tuple[str, Reply, int]]:
        """StartAuthentication at the tenant, then at each pod named: (base, reply, redirects)."""
        visited = [self.config.base_url]
        while True:
            ask = functools.partial(
                self.client.start, visited[-1], user, tenant_id=self.config.tenant_id
            )
            reply = yield from self.config.retry.exchange(ask)
            if not reply.is_redirect or reply.pod_fqdn is None:
                return visited[-1], reply, len(visited) - 1
            target = pod_url(reply.pod_fqdn, self.config.pod_scheme)
            if any(same_base(target, seen) for seen in visited):
                raise IdpError(
                    "CyberArk redirected StartAuthentication to a pod already asked (a "
                    "redirect loop); check the tenant URL",
                    path=START_PATH,
                    status=200,
                )
            if len(visited) > self.config.max_redirects:
                raise IdpError(
                    f"CyberArk redirected StartAuthentication more than "
                    f"{self.config.max_redirects} times; check the tenant URL",
                    path=START_PATH,
                    status=200,
                )
            log.info(
                "mfa_fsm.pod_redirect",
                flow_ref=flow_ref(flow_id),
                provider=self.provider,
                pod=target,
            )
            visited.append(target)

    def factor_kinds(self, snapshot: Snapshot, choice: Choice) -> frozenset[str]:
        """A choice's kind and, for the SMS and e-mail mechanisms (both of kind ``otp``), the
        channel: ``factor="sms"`` picks the SMS mechanism."""
        kinds = super().factor_kinds(snapshot, choice)
        ctx: CyberArkContext = snapshot.context
        mechanism = next((m for m in ctx.current if m.id == choice.id), None)
        if mechanism is not None and mechanism.name in CHANNELS:
            return kinds | {CHANNELS[mechanism.name]}
        return kinds

    @property
    def qr_image(self) -> str | None:
        """The data URL of the QR code to show while a QR mechanism runs, else ``None``."""
        chosen = self._snapshot.context.chosen
        if self._snapshot.state != "OobPending" or chosen is None:
            return None
        image: str | None = chosen.image
        return image

    # -- handlers: one per event, each returns what CyberArk said ------------------------

    @on(
        CyberArkMachine.select_second_factor,
        outcomes={
            "AwaitingFirstFactor": (FIRST_FACTOR_DUE, OOB_PENDING, FAILED),
            "AwaitingSecondFactor": CHOSEN,
            "SecondFactorSelected": CHOSEN,
            "OobPending": CHOSEN,
        },
        calls=f"POST {ADVANCE_PATH} (StartOOB)",
    )
    def _on_select_second_factor(
        self, snapshot: Snapshot, now: float, factor: str, delivery: str | None = None
    ) -> Exchange[Outcome]:
        ctx: CyberArkContext = snapshot.context
        offered = {choice.id for choice in snapshot.choices if choice.supported}
        if not isinstance(factor, str) or factor not in offered:
            raise InvalidInput(
                "factor",
                f"is not one of the {len(offered)} mechanisms offered now; pick the id of "
                "one of the view's choices",
            )
        if delivery is not None:
            # Each CyberArk mechanism is one channel (SMS and e-mail are two mechanisms).
            raise InvalidInput("delivery", "is not taken: pick the mechanism of that channel")
        mechanism = next(m for m in ctx.current if m.id == factor)
        ctx = _choose(ctx, mechanism)
        if mechanism.answer_type == TEXT:
            kind = FIRST_FACTOR_DUE if ctx.index == 0 else RESPONSE_DUE
            return Outcome(kind, self._answer_due(snapshot, ctx, mechanism))
        return (yield from self._start_oob(snapshot, now, ctx, mechanism))

    @on(
        CyberArkMachine.submit_first_factor,
        outcomes=ANSWERED,
        calls=f"POST {ADVANCE_PATH} (Answer | StartOOB)",
    )
    def _on_submit_first_factor(
        self,
        snapshot: Snapshot,
        now: float,
        answer: str | None = None,
        answers: Sequence[str] | None = None,
    ) -> Exchange[Outcome]:
        ctx: CyberArkContext = snapshot.context
        mechanism = ctx.chosen
        if mechanism is None:
            raise UsageError(
                "the first challenge offers several mechanisms: pick one with "
                "select_second_factor(factor=...) first"
            )
        if mechanism.answer_type == TEXT:
            value = _text_answer(mechanism, "answer", answer, answers)
            return (yield from self._advance(snapshot, now, ctx, "Answer", value))
        if answer is not None or answers is not None:
            raise InvalidInput(
                "answer",
                f"is not taken: {mechanism.name} is out of band; submit_first_factor() with no "
                "answer starts it, then type any code with submit_response",
            )
        return (yield from self._start_oob(snapshot, now, ctx, mechanism))

    @on(CyberArkMachine.submit_response, outcomes=ANSWERED, calls=f"POST {ADVANCE_PATH} (Answer)")
    def _on_submit_response(
        self,
        snapshot: Snapshot,
        now: float,
        answer: str | None = None,
        answers: Sequence[str] | None = None,
    ) -> Exchange[Outcome]:
        ctx: CyberArkContext = snapshot.context
        mechanism = _held(ctx)
        value: str | dict[str, str]
        if mechanism.answer_type == TEXT:
            value = _text_answer(mechanism, "answer", answer, answers)
        elif mechanism.answer_type != START_TEXT_OOB:
            raise InvalidInput(
                "answer",
                f"is not taken: {mechanism.name} takes no code; keep polling until it is answered",
            )
        elif answers is not None:
            raise InvalidInput(
                "answers",
                f"is only for security questions; {mechanism.name} takes a code as answer",
            )
        elif mechanism.name in OATH_LENGTHS:
            lengths = OATH_LENGTHS[mechanism.name]
            value = numeric_code("answer", answer, lengths=lengths, source=_RFC)
        else:
            value = code("answer", answer)
        return (yield from self._advance(snapshot, now, ctx, "Answer", value))

    @on(
        CyberArkMachine.resend,
        outcomes=(OOB_PENDING, FIRST_FACTOR_DUE, FAILED),
        calls=f"POST {ADVANCE_PATH} (RetryOOB)",
    )
    def _on_resend(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        # The engine has checked that the challenge offers a resend and its cooldown is over.
        ctx: CyberArkContext = snapshot.context
        mechanism = _held(ctx)
        reply = yield from self._call(ctx, mechanism.id, "RetryOOB")
        return (yield from self._dispatch(snapshot, now, ctx, reply, "RetryOOB"))

    @on(CyberArkMachine.poll, outcomes=ANSWERED, calls=f"POST {ADVANCE_PATH} (Poll)")
    def _on_poll(self, snapshot: Snapshot, now: float) -> Exchange[Outcome | None]:
        if snapshot.next_poll_at is not None and now < snapshot.next_poll_at:
            return None  # too early: answer from the snapshot, spare the IdP
        ctx: CyberArkContext = snapshot.context
        mechanism = _held(ctx)
        outage = now - (ctx.last_answer_at or ctx.oob_started_at or now)
        schedule = self.config.poll_schedule
        try:
            # A poll is safe to repeat, so the configured in-step retries may apply.
            reply = yield from self.config.retry.exchange(
                lambda: self._call(ctx, mechanism.id, "Poll")
            )
        except IdpError as exc:
            if exc.transient:
                exc.retry_after = schedule.retry_after(outage=outage, retry_after=exc.retry_after)
            raise
        except TransportError as exc:
            exc.retry_after = schedule.retry_after(outage=outage)
            raise
        return (yield from self._dispatch(snapshot, now, ctx, reply, "Poll"))

    @on(CyberArkMachine.cancel, outcomes=[CANCELLED])
    def _on_cancel(self, snapshot: Snapshot, now: float) -> Outcome:
        return Outcome(CANCELLED, _ended(snapshot.context, "cancelled", "cancelled by the user"))

    def _expire(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        outcome = yield from returned(super()._expire(snapshot, now))
        return Outcome(outcome.kind, {**_ended(snapshot.context, "expired"), **outcome.changes})

    # -- calls and what their replies mean -----------------------------------------------

    def _call(
        self,
        ctx: CyberArkContext,
        mechanism_id: str,
        action: str,
        answer: str | dict[str, str] | None = None,
    ) -> Exchange[Reply]:
        if not ctx.session_id:
            raise UsageError("this flow holds no CyberArk session; start a new flow")
        return self.client.advance(
            ctx.base_url,
            session_id=ctx.session_id,
            mechanism_id=mechanism_id,
            action=action,
            tenant_id=ctx.tenant_id,
            answer=answer,
            cookies=ctx.cookies,
        )

    def _advance(
        self,
        snapshot: Snapshot,
        now: float,
        ctx: CyberArkContext,
        action: str,
        answer: str | dict[str, str] | None = None,
    ) -> Exchange[Outcome]:
        mechanism = _held(ctx)
        reply = yield from self._call(ctx, mechanism.id, action, answer)
        return (yield from self._dispatch(snapshot, now, ctx, reply, action))

    def _start_oob(
        self, snapshot: Snapshot, now: float, ctx: CyberArkContext, mechanism: Mechanism
    ) -> Exchange[Outcome]:
        reply = yield from self._call(ctx, mechanism.id, "StartOOB")
        return (yield from self._dispatch(snapshot, now, ctx, reply, "StartOOB"))

    def _dispatch(
        self, snapshot: Snapshot, now: float, ctx: CyberArkContext, reply: Reply, action: str
    ) -> Exchange[Outcome]:
        """Map one AdvanceAuthentication reply to an outcome (see the module docstring); a
        next challenge with one out-of-band mechanism starts it (an exchange)."""
        ctx = attrs.evolve(ctx, cookies=_merge_cookies(ctx.cookies, reply.cookies))
        summary = reply.summary
        if not reply.success:
            if reply.request_refused:
                detail = "CyberArk refused the request itself; start again"
                return Outcome(FAILED, _ended(ctx, "idp_error", detail))
            if action == "Poll":
                return Outcome(FAILED, _ended(ctx, "expired", _OOB_ENDED))
            return Outcome(FAILED, _ended(ctx, "rejected", _REJECTED))
        if summary == NEW_PACKAGE:
            return self._new_package(snapshot, ctx, reply)
        if summary == SUMMARY_OOB_PENDING and action in _SENDS:
            return Outcome(OOB_PENDING, self._oob_started(snapshot, now, ctx, reply))
        if action in _SENDS:
            # StartOOB is documented to answer OobPending, a failure, or (any time) a new
            # package; anything else would skip a challenge the user never saw.
            raise IdpReplyError(
                f"CyberArk answered {action} with an unexpected Summary ({_short(summary)})",
                path=ADVANCE_PATH,
                status=200,
            )
        if summary == SUMMARY_OOB_PENDING:
            if ctx.oob_started_at is None:
                raise IdpReplyError(
                    "CyberArk says an out-of-band challenge is pending, but none was started",
                    path=ADVANCE_PATH,
                    status=200,
                )
            ctx = attrs.evolve(ctx, last_answer_at=now, polls=ctx.polls + 1)
            return Outcome(
                OOB_PENDING,
                {"next_poll_at": self.config.poll_schedule.next_poll(now), "context": ctx},
            )
        if summary == START_NEXT_CHALLENGE:
            return (yield from self._next_challenge(snapshot, now, ctx))
        if summary == LOGIN_SUCCESS and reply.login is not None:
            return Outcome(COMPLETED, self._completed(snapshot, ctx, reply, now))
        if summary == NONCOMMITAL_SUCCESS:
            detail = reply.client_message or "CyberArk ended the sign-in without a session"
            return Outcome(FAILED, _ended(ctx, "idp_error", detail))
        detail = f"CyberArk answered an unknown Summary ({_short(summary)}); start again"
        return Outcome(FAILED, _ended(ctx, "idp_error", detail))

    def _new_package(self, snapshot: Snapshot, ctx: CyberArkContext, reply: Reply) -> Outcome:
        """A ``NewPackage``: its first challenge is due, unless nothing of it can be used."""
        if not reply.challenges:
            raise IdpReplyError("CyberArk sent a NewPackage without challenges", path=ADVANCE_PATH)
        ctx = attrs.evolve(ctx, session_id=reply.session_id or ctx.session_id)
        unusable = _unusable(reply.challenges[0])
        if unusable is not None:
            return Outcome(FAILED, _ended(ctx, "unavailable", unusable))
        return Outcome(FIRST_FACTOR_DUE, self._first_challenge(snapshot, ctx, reply))

    def _next_challenge(
        self, snapshot: Snapshot, now: float, ctx: CyberArkContext
    ) -> Exchange[Outcome]:
        if ctx.index + 1 >= len(ctx.package):
            raise IdpReplyError(
                "CyberArk moved past the last challenge of the package", path=ADVANCE_PATH
            )
        ctx = _choose(attrs.evolve(ctx, index=ctx.index + 1), None)
        mechanisms = ctx.current
        unusable = _unusable(mechanisms)
        if unusable is not None:
            return Outcome(FAILED, _ended(ctx, "unavailable", unusable))
        single = mechanisms[0] if len(mechanisms) == 1 and _supported(mechanisms[0]) else None
        if single is None:
            return Outcome(SECOND_FACTOR_DUE, self._choosing(snapshot, ctx, _choices(mechanisms)))
        ctx = _choose(ctx, single)
        if single.answer_type == TEXT:
            return Outcome(RESPONSE_DUE, self._answer_due(snapshot, ctx, single))
        try:
            return (yield from self._start_oob(snapshot, now, ctx, single))
        except (IdpError, TransportError) as exc:
            # CyberArk has taken the previous answer, so the step must not be undone: offer
            # the mechanism as a choice, and selecting it starts it again.
            log.warning(
                "mfa_fsm.oob_start_failed",
                flow_ref=flow_ref(snapshot.flow_id),
                provider=self.provider,
                error=type(exc).__name__,
            )
            unchosen = _choose(ctx, None)
            return Outcome(
                SECOND_FACTOR_DUE, self._choosing(snapshot, unchosen, (_choice(single),))
            )

    # -- snapshot changes ------------------------------------------------------------------

    def _flow_deadline(self, snapshot: Snapshot) -> float:
        return snapshot.created_at + self.config.flow_lifetime

    def _first_challenge(
        self, snapshot: Snapshot, ctx: CyberArkContext, reply: Reply
    ) -> dict[str, Any]:
        ctx = _choose(attrs.evolve(ctx, package=reply.challenges, index=0), None)
        mechanisms = ctx.current
        if len(mechanisms) == 1 and _supported(mechanisms[0]):
            return self._answer_due(snapshot, _choose(ctx, mechanisms[0]), mechanisms[0])
        return self._choosing(snapshot, ctx, _choices(mechanisms))

    def _choosing(
        self, snapshot: Snapshot, ctx: CyberArkContext, choices: tuple[Choice, ...]
    ) -> dict[str, Any]:
        return {
            "choices": choices,
            "challenge": None,
            "next_poll_at": None,
            "deadline": self._flow_deadline(snapshot),
            "context": ctx,
        }

    def _answer_due(
        self, snapshot: Snapshot, ctx: CyberArkContext, mechanism: Mechanism
    ) -> dict[str, Any]:
        return {
            "choices": _choices(ctx.current),
            "challenge": _challenge(mechanism),
            "next_poll_at": None,
            "deadline": self._flow_deadline(snapshot),
            "context": ctx,
        }

    def _oob_started(
        self, snapshot: Snapshot, now: float, ctx: CyberArkContext, reply: Reply
    ) -> dict[str, Any]:
        mechanism = _held(ctx)
        challenge = _challenge(mechanism, number=reply.generated_auth_value)
        if challenge.kind in SEND_KINDS:
            challenge = attrs.evolve(
                challenge, resend_at=resend_time(now, self.config.resend_cooldown)
            )
        return {
            "choices": _choices(ctx.current),
            "challenge": challenge,
            "next_poll_at": self.config.poll_schedule.next_poll(now),
            "deadline": min(self._flow_deadline(snapshot), now + self.config.oob_lifetime),
            "context": attrs.evolve(ctx, oob_started_at=now, last_answer_at=now, polls=0),
        }

    def _completed(
        self,
        snapshot: Snapshot,
        ctx: CyberArkContext,
        reply: Reply,
        now: float,
        *,
        path: str = ADVANCE_PATH,
    ) -> dict[str, Any]:
        login = reply.login
        assert login is not None  # noqa: S101 - callers check; narrows the type for mypy
        if not _for_user(login, snapshot.user_id):
            # A valid LoginSuccess of another user's session (a proxy or cache replaying an
            # old reply) must never become this user's login.
            raise IdpReplyError(
                "CyberArk's LoginSuccess names another user than this flow's, so it answers "
                "some other request and is not taken as this login; try again",
                path=path,
                status=200,
            )
        cookie = ctx.cookies.get(AUTH_COOKIE)
        token = login.token or login.auth or cookie
        if not token:
            raise IdpReplyError(
                "CyberArk reported LoginSuccess without a token or an .ASPXAUTH cookie",
                path=path,
                status=200,
            )
        result = Result(
            user_id=login.user_id or snapshot.user_id,
            display_name=login.display_name,
            token=token,
            # A lifetime of 0 is an expired token, not an unknown lifetime.
            expires_at=None if login.token_lifetime is None else now + login.token_lifetime,
            cookies={AUTH_COOKIE: cookie} if cookie else {},
        )
        ended = _ended(ctx, None)
        ended["context"] = attrs.evolve(ended["context"], pod_fqdn=login.pod_fqdn)
        return {**ended, "result": result}


# -- pure helpers ------------------------------------------------------------------------


def _supported(mechanism: Mechanism) -> bool:
    return (
        mechanism.answer_type in ANSWER_TYPES
        and mechanism.name not in UNSUPPORTED
        and mechanism.enrolled
    )


def _kind(mechanism: Mechanism) -> str:
    fallback = {TEXT: "text", START_TEXT_OOB: "otp", START_OOB: "push"}
    return KINDS.get(mechanism.name) or fallback.get(mechanism.answer_type, "unsupported")


def _why_unusable(mechanism: Mechanism) -> str | None:
    """Why ``mechanism`` cannot be used here, for the user; ``None`` when it can."""
    if not mechanism.enrolled:
        return "not set up for this account (not enrolled)"
    if mechanism.name in UNSUPPORTED:
        return "a security key (FIDO2/U2F), which this sign-in cannot use"
    if mechanism.answer_type not in ANSWER_TYPES:
        return "a kind of verification this sign-in cannot use"
    return None


def _unusable(mechanisms: Sequence[Mechanism]) -> str | None:
    """The failure detail when no mechanism of a challenge can be used, else ``None``."""
    reasons = [_why_unusable(m) for m in mechanisms]
    if any(reason is None for reason in reasons):
        return None
    listed = "; ".join(
        f"{m.label or m.name}: {reason}" for m, reason in zip(mechanisms, reasons, strict=True)
    )
    return (
        "CyberArk asks for a verification that cannot be completed here "
        f"({listed or 'no mechanism offered'}). Set up another method with your "
        "administrator, or sign in where that method is supported."
    )


def _choice(mechanism: Mechanism) -> Choice:
    return Choice(
        id=mechanism.id,
        kind=_kind(mechanism),
        label=mechanism.label,
        supported=_supported(mechanism),
        detail=_why_unusable(mechanism) or mechanism.detail,
    )


def _choices(mechanisms: tuple[Mechanism, ...]) -> tuple[Choice, ...]:
    """A challenge's mechanisms as choices; none when there is nothing to choose between."""
    return tuple(_choice(m) for m in mechanisms) if len(mechanisms) > 1 else ()


def _challenge(mechanism: Mechanism, *, number: str | None = None) -> Challenge:
    return Challenge(
        factor=mechanism.id,
        kind=_kind(mechanism),
        prompt=mechanism.prompt,
        delivery=mechanism.name if mechanism.name in ("SMS", "EMAIL") else None,
        questions=mechanism.questions if mechanism.name == "SQ" else (),
        number_to_match=number,
        accepts_code=mechanism.answer_type != START_OOB,
    )


def _choose(ctx: CyberArkContext, mechanism: Mechanism | None) -> CyberArkContext:
    return attrs.evolve(
        ctx,
        mechanism_id=mechanism.id if mechanism else None,
        answer_type=mechanism.answer_type if mechanism else None,
        oob_started_at=None,
        last_answer_at=None,
        polls=0,
    )


def _held(ctx: CyberArkContext) -> Mechanism:
    mechanism = ctx.chosen
    if mechanism is None:
        raise UsageError("no mechanism is chosen in this flow; pick one of its choices first")
    return mechanism


def _text_answer(
    mechanism: Mechanism, field: str, answer: str | None, answers: Sequence[str] | None
) -> str | dict[str, str]:
    """The ``Answer`` of a Text mechanism: a string, or one answer per security question."""
    count = len(mechanism.part_ids)
    if count > 1:
        if answer is not None or not isinstance(answers, list | tuple):
            raise InvalidInput("answers", f"{count} security questions take a list of answers")
        if len(answers) != count:
            raise InvalidInput("answers", f"expected {count} answers, one per question in order")
        return {
            uid: secret_text("answers", value)
            for uid, value in zip(mechanism.part_ids, answers, strict=True)
        }
    if answers is not None:
        # One security question may be answered as a list of one, as several are.
        one_question = mechanism.name == "SQ" and isinstance(answers, list | tuple)
        if answer is not None or not one_question or len(answers) != 1:
            raise InvalidInput("answers", f"is only for security questions; send {field}")
        return secret_text("answers", answers[0])
    return secret_text(field, answer)


def _for_user(login: Login, user: str) -> bool:
    """Whether a LoginSuccess is for ``user``, the name this flow started with.

    CyberArk names the login (``User``) and the e-mail address; the user may have typed
    either, and either name may leave out the tenant's default login suffix. A reply that
    names no user passes: there is nothing to compare.
    """
    if not login.user:
        return True
    typed, named = user.casefold(), login.user.casefold()
    if typed in (named, (login.email or "").casefold()):
        return True
    if "@" in typed and "@" in named:
        return False  # two full login names, and they differ
    return typed.partition("@")[0] == named.partition("@")[0]


def _merge_cookies(held: Mapping[str, str], received: Mapping[str, str]) -> dict[str, str]:
    # A cookie the reply deleted (Max-Age=0 or a past Expires: the transport reports it as
    # "", see core.transport.reply_cookies) or set to "" is removed; RFC 6265 section 3.1.
    merged = {**held, **received}
    return {name: value for name, value in merged.items() if value}


def _ended(ctx: CyberArkContext, reason: str | None, detail: str | None = None) -> dict[str, Any]:
    """The changes that end a flow: no working secrets are kept past the end."""
    changes: dict[str, Any] = {
        "choices": (),
        "challenge": None,
        "next_poll_at": None,
        "context": attrs.evolve(
            ctx, session_id=None, cookies={}, package=(), mechanism_id=None, answer_type=None
        ),
    }
    if reason is not None:
        changes |= {"failure": reason, "failure_detail": detail}
    return changes


def _short(summary: str | None) -> str:
    return repr(summary[:40]) if summary is not None else "none"


__all__ = ["CyberArkConfig", "CyberArkContext", "CyberArkFlow", "CyberArkMachine"]
