"""The Entrust IDaaS flow: a first factor (EXTERNAL or password), then a second factor.

Theory of operation
-------------------
``EntrustFlow.start`` queries the user's authenticators and lands in ``AwaitingFirstFactor``.

* ``submit_first_factor()`` completes EXTERNAL (the first factor was checked outside IDaaS,
  by the application that started the flow with a ``VerifiedUser``) with the query's
  token; ``submit_first_factor(answer=<password>)`` runs the
  PASSWORD_AND_SECONDFACTOR first half (select, then complete with the password). IDaaS
  either finishes (risk rules need no second factor) or hands back a token for the second.
* ``select_second_factor(factor=..., delivery=...)`` challenges the chosen authenticator:
  a code is now due (OTP, TOKEN, TOKENCR, KBA, GRID, TEMP_ACCESS_CODE) or a push runs
  (TOKENPUSH, SMARTCREDENTIALPUSH, FACE, MAGICLINK). It is taken during a running challenge
  too ("try another way": the choices stay in the view): IDaaS rotates the token at every
  step, so that select carries the current token, and a refusal raises :class:`IdpError`
  saying so with the flow unchanged (the running challenge still works).
* ``submit_response(answer=...)`` (``answers=[...]`` for KBA) completes it; a wrong answer
  (``invalid_user_response``) stays for another try until IDaaS locks the authenticator.
* ``resend()`` (a code sent by SMS, e-mail or voice, or a push) re-issues the select of the
  same authenticator with the current token, as other Entrust integrations offer "resend
  authentication request": a new code or push, a new token. Offered
  (``Challenge.resend_at``) ``resend_cooldown`` seconds after the last send
  (:class:`ResendTooSoon` before; a throttle counts it as a ``send``). If IDaaS refuses it,
  the step raises :class:`IdpError` saying so and the flow is unchanged: the code or push
  already sent still works.
* ``poll()`` asks whether the push was answered, never before ``next_poll_at``: NO_RESPONSE
  stays, CONFIRM completes, CANCEL / CONCERN (the user's explicit refusal) end
  ``Failed(denied)``.
* Any event that IDaaS answers with a token or transaction that is gone (``invalid_token``,
  ``token_expired``, ``no_transaction``: ``replies.GONE_CODES``) ends ``Failed(expired)``
  with "start again", in every state: no retry of a dead token can succeed.
* ``cancel()`` ends the flow and the IDaaS transaction in every state (complete with
  ``cancel: true`` for a running challenge, logout between challenges); after the state's
  deadline (the token's ``expires``, or the push lifetime) any event ends ``Failed(expired)``.

Every select and complete returns a new token and the next call uses it; a reply without a
token never replaces the held one. All transitions are in ``EntrustMachine`` below.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, ClassVar

import attrs

from mfa_fsm.core.errors import (
    IdpError,
    IdpReplyError,
    InvalidInput,
    MfaError,
    TransportError,
    UsageError,
    VerifiedUserRequired,
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
from mfa_fsm.core.logref import LazyLogger, flow_ref
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
from mfa_fsm.entrust.client import (
    COMPLETE_PATH,
    LOGOUT_PATH,
    SELECT_PATH,
    EntrustClient,
    EntrustConfig,
    check_authenticator,
)
from mfa_fsm.entrust.replies import AuthReply

if TYPE_CHECKING:
    from mfa_fsm.core.throttle import Throttle

log = LazyLogger("mfa_fsm")

EXTERNAL = "EXTERNAL"
PASSWORD_AND_SECONDFACTOR = "PASSWORD_AND_SECONDFACTOR"  # noqa: S105 (a name, not a secret)
FIRST_FACTORS = (EXTERNAL, PASSWORD_AND_SECONDFACTOR)

#: Second factors mfa_fsm drives: name -> (kind, label). Others are shown as unsupported.
SECOND_FACTORS = {
    "OTP": ("otp", "One-time code sent to you"),
    "TOKEN": ("token", "Code from your token or authenticator app"),
    "TOKENCR": ("token", "Response from your token to a challenge"),
    "TOKENPUSH": ("push", "Approve on the Entrust mobile app"),
    "SMARTCREDENTIALPUSH": ("push", "Approve with your mobile smart credential"),
    "FACE": ("push", "Face biometric on your phone"),
    "MAGICLINK": ("push", "Open the link sent to you"),
    "KBA": ("kba", "Answer your security questions"),
    "GRID": ("grid", "Cells from your grid card"),
    "TEMP_ACCESS_CODE": ("code", "Temporary access code"),
}
PUSH_FACTORS = frozenset(name for name, (kind, _) in SECOND_FACTORS.items() if kind == "push")


class EntrustMachine(FlowMachine):
    """The Entrust flow's table: (state, event, outcome) -> target, one row each.

    IDaaS rotates its token at every step, so no state is ever revisited except to retry a
    wrong answer (``rejected``); ``failed`` carries ``locked`` or ``denied`` as the reason.
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

    submit_first_factor = rows(
        AwaitingFirstFactor,
        {
            SECOND_FACTOR_DUE: AwaitingSecondFactor,
            COMPLETED: Completed,
            REJECTED: AwaitingFirstFactor,
            FAILED: Failed,
        },
    )
    # From a running challenge too: "try another way" (a new select with the current token).
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
        SecondFactorSelected, {RESPONSE_DUE: SecondFactorSelected, FAILED: Failed}
    ) | rows(OobPending, {OOB_PENDING: OobPending, FAILED: Failed})
    cancel = rows(live, {CANCELLED: Failed})
    expire = rows(live, {EXPIRED: Failed})


@attrs.frozen
class EntrustContext:
    """Entrust's private part of a snapshot. Tokens are secrets: never in a repr."""

    first_factor: str
    #: the token the next call uses (query, then select/complete replies)
    token: str | None = attrs.field(default=None, repr=False)
    #: the token after the first factor: second-factor selects send it as ``authToken``
    first_factor_token: str | None = attrs.field(default=None, repr=False)
    token_expires_at: float | None = None
    factor: str | None = None
    kba_id: str | None = None
    kba_question_ids: tuple[str, ...] = ()
    remaining_attempts: dict[str, int] = attrs.field(factory=dict)
    polls: int = 0
    #: the newest ``time`` IDaaS stamped on a reply; an older one is a replay
    idp_time: float | None = None


class EntrustFlow(Flow):
    """An Entrust IDaaS login; start with :meth:`start`, continue with :meth:`restore`.

    Configuration (``config=``, an :class:`EntrustConfig`) is the application's, not the
    flow's, so it is passed on every restore and never stored in the snapshot.
    """

    provider: ClassVar[str] = "entrust"
    label: ClassVar[str] = "Entrust Identity as a Service"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting(
            "base_url",
            "--base-url",
            "tenant URL, e.g. https://acme.us.trustedauth.com",
            env="MFA_FSM_ENTRUST_URL",
            required=True,
        ),
        Setting(
            "application_id",
            "--application-id",
            "Authentication API application id",
            env="MFA_FSM_ENTRUST_APP_ID",
            required=True,
        ),
    )
    emulator: ClassVar[str | None] = "mfa_fsm.testing.demo_idps:EntrustDemo"
    first_factor_outside: ClassVar[bool] = True  # EXTERNAL
    machine = EntrustMachine
    context_type = EntrustContext
    config_type = EntrustConfig
    client_type = EntrustClient
    config: EntrustConfig
    client: EntrustClient

    @classmethod
    def opening(
        cls,
        *,
        config: EntrustConfig,
        user: str | None = None,
        verified_user: VerifiedUser | None = None,
        first_factor: str | None = None,
        flow_id: str | None = None,
        transport: Transport | AsyncTransport | None = None,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
        client_ip: str | None = None,
    ) -> Exchange[EntrustFlow]:
        """Query the user's authenticators and return a flow in ``AwaitingFirstFactor``.

        Run by ``EntrustFlow.start(...)`` (blocking) or ``await EntrustFlow.start_async(...)``
        with these keywords.

        Name the user in one of two ways:

        * ``verified_user=VerifiedUser(id, checked_by=...)``: a user whose first factor the
          application has checked itself. Only this may run ``EXTERNAL`` (IDaaS then asks
          for the second factor alone), and ``EXTERNAL`` is the default when offered.
        * ``user=``: an id someone typed. The flow runs ``PASSWORD_AND_SECONDFACTOR``, so
          IDaaS checks the password; ``first_factor="EXTERNAL"``, or a user IDaaS offers
          only ``EXTERNAL``, raises :class:`VerifiedUserRequired`.

        ``first_factor`` is ``"EXTERNAL"`` or ``"PASSWORD_AND_SECONDFACTOR"``.
        ``client_ip`` is the end user's address, sent as ``clientIp``; ``throttle`` counts
        the start per user and address. Raises :class:`InvalidInput` for a malformed user
        id, address or first factor, :class:`VerifiedUserRequired` (see above),
        :class:`Throttled`, :class:`UsageError` when the IdP offers neither first factor,
        and the IdP and transport errors of the query; no flow exists until this returns.
        """
        user_id, vouched = _named_user(user, verified_user)
        if flow_id is not None:
            identifier("flow_id", flow_id)
        if first_factor is not None and first_factor not in FIRST_FACTORS:
            raise InvalidInput("first_factor", f"must be one of {list(FIRST_FACTORS)}")
        if first_factor == EXTERNAL and vouched is None:
            raise _external_needs_verified_user()
        client_ip = client_address(client_ip)
        yield from cls._count_start(throttle, user_id, client_ip)
        now = clock()
        placeholder = Snapshot(
            provider=cls.provider,
            flow_id=flow_id or uuid.uuid4().hex,
            user_id=user_id,
            state="AwaitingFirstFactor",
            version=0,
            created_at=now,
            deadline=now + config.flow_lifetime,
            context=EntrustContext(first_factor=first_factor or EXTERNAL),
        )
        flow = cls(placeholder, config=config, transport=transport, clock=clock, throttle=throttle)
        flow._use_client_ip(client_ip)
        reply = yield from flow.client.query(user_id)
        offered = [f for f in FIRST_FACTORS if f in reply.authentication_types]
        if vouched is None:
            if offered == [EXTERNAL]:
                raise _external_needs_verified_user()
            offered = [f for f in offered if f != EXTERNAL]
        chosen = first_factor or (offered[0] if offered else None)
        if chosen is None or chosen not in offered:
            raise UsageError(
                f"IDaaS offers {list(reply.authentication_types)} as first factors for this "
                f"user and application, not {chosen or ' or '.join(FIRST_FACTORS)}; change "
                "the application's resource rule or the first_factor argument"
            )
        deliveries = reply.otp_deliveries
        choices = tuple(
            _choice(name, deliveries, reply.otp_default_delivery, name in reply.locked)
            for name in reply.second_factors
        )
        attempts = dict(reply.remaining_attempts)
        flow._snapshot = attrs.evolve(
            placeholder,
            deadline=_deadline(now + config.flow_lifetime, reply.expires_at),
            choices=choices,
            challenge=_first_factor_challenge(chosen, attempts, vouched),
            context=EntrustContext(
                first_factor=chosen,
                token=reply.token,
                token_expires_at=reply.expires_at,
                remaining_attempts=attempts,
                idp_time=reply.time,
            ),
        )
        log.info(
            "mfa_fsm.flow_started",
            flow_ref=flow_ref(placeholder.flow_id),
            provider=cls.provider,
            target="AwaitingFirstFactor",
            first_factor=chosen,
            version=0,
        )
        return flow

    # -- handlers: one per event, each returns what IDaaS said ---------------------------

    @on(
        EntrustMachine.submit_first_factor,
        outcomes=[SECOND_FACTOR_DUE, COMPLETED, REJECTED, FAILED],
        calls=[f"POST {SELECT_PATH}", f"POST {COMPLETE_PATH}"],
    )
    def _on_submit_first_factor(
        self, snapshot: Snapshot, now: float, answer: str | None = None
    ) -> Exchange[Outcome]:
        ctx: EntrustContext = snapshot.context
        if ctx.first_factor == EXTERNAL:
            if answer is not None:
                raise InvalidInput(
                    "answer", "is not taken: with EXTERNAL the first factor was checked outside"
                )
            # A query reply without a token (the seed's example has none) is followed by a
            # select of EXTERNAL, which must name the user: v5.46 UserChallengeParameters
            # ``userId``, "required for non-passwordless authenticators".
            token = ctx.token or self._required_token(
                (yield from self.client.select(EXTERNAL, user_id=snapshot.user_id))
            )
            reply = yield from self.client.complete(EXTERNAL, token)
        else:
            password = secret_text("answer", answer)
            token = self._required_token(
                (yield from self.client.select(PASSWORD_AND_SECONDFACTOR, user_id=snapshot.user_id))
            )
            try:
                reply = yield from self.client.complete(
                    PASSWORD_AND_SECONDFACTOR, token, response=password
                )
            except IdpError as exc:
                return self._answer_refused(exc, snapshot, "PASSWORD")
        ctx = _seen(ctx, reply)
        if reply.completed:
            return self._completed(snapshot, reply, now)
        dead_end = _no_usable_factor(snapshot.choices)
        if dead_end is not None:
            # Nothing the picker could offer: end here, saying why, not on an empty page.
            # Between challenges: the new token's session is removed (logout).
            between = attrs.evolve(
                snapshot, state="AwaitingSecondFactor", context=attrs.evolve(ctx, token=reply.token)
            )
            yield from self._cancel_quietly(between, "no usable second factor", every_state=True)
            return dead_end
        token = self._required_token(reply)
        return Outcome(
            SECOND_FACTOR_DUE,
            {
                "challenge": None,
                "deadline": _deadline(snapshot.deadline, reply.expires_at),
                "context": attrs.evolve(
                    ctx,
                    token=token,
                    first_factor_token=token,
                    token_expires_at=reply.expires_at or ctx.token_expires_at,
                ),
            },
        )

    @on(
        EntrustMachine.select_second_factor,
        outcomes=[RESPONSE_DUE, OOB_PENDING, COMPLETED, FAILED],
        calls=f"POST {SELECT_PATH}",
    )
    def _on_select_second_factor(
        self, snapshot: Snapshot, now: float, factor: str, delivery: str | None = None
    ) -> Exchange[Outcome]:
        ctx: EntrustContext = snapshot.context
        choice = _offered(snapshot, check_authenticator(factor))
        if delivery is not None and delivery not in choice.deliveries:
            raise InvalidInput("delivery", f"must be one of {list(choice.deliveries)}")
        if snapshot.state == "AwaitingSecondFactor":
            reply = yield from self._select(ctx, factor, delivery, ctx.first_factor_token)
        else:
            # "Try another way" from a running challenge: IDaaS rotated the first factor's
            # token at the last select, so the new select carries the current one.
            reply = yield from self._reselect(ctx, factor, delivery, "switch to another method")
        if reply is None:
            return _locked()
        return self._challenged(
            snapshot, now, ctx, choice=choice, factor=factor, delivery=delivery, reply=reply
        )

    def _select(
        self, ctx: EntrustContext, factor: str, delivery: str | None, auth_token: str | None
    ) -> Exchange[AuthReply | None]:
        """The select of ``factor``; ``None`` when IDaaS says the authenticator is locked."""
        path, second = self._paths(ctx, factor)
        try:
            reply: AuthReply = yield from self.client.select(
                path, auth_token=auth_token, second_factor=second, delivery=delivery
            )
        except IdpError as exc:
            if exc.error_code in self.config.lockout_codes:
                return None
            raise
        return reply

    def _reselect(
        self, ctx: EntrustContext, factor: str, delivery: str | None, what: str
    ) -> Exchange[AuthReply | None]:
        """A select during a running challenge, with its token (a resend, or another
        authenticator). Whatever IDaaS says against it, even that this token cannot select,
        the running challenge is untouched: raise an IdpError that says IDaaS refused, never
        one that would end the flow as gone."""
        try:
            reply = yield from self._select(ctx, factor, delivery, self._held_token(ctx))
        except IdpError as exc:
            if exc.transient:
                raise
            raise IdpError(
                f"IDaaS refused to {what} for this challenge; use the one already sent, or "
                "cancel and start again",
                path=exc.path,
                status=exc.status,
                error_code=exc.error_code,
            ) from exc
        return reply

    def _challenged(
        self,
        snapshot: Snapshot,
        now: float,
        ctx: EntrustContext,
        *,
        choice: Choice,
        factor: str,
        delivery: str | None,
        reply: AuthReply,
    ) -> Outcome:
        """What a select's reply means: completed, a push running, or a code due."""
        ctx = _seen(ctx, reply)
        if reply.completed:
            return self._completed(snapshot, reply, now)
        context = attrs.evolve(
            ctx,
            token=self._required_token(reply),
            token_expires_at=reply.expires_at or ctx.token_expires_at,
            factor=factor,
            kba_id=reply.kba_id,
            kba_question_ids=tuple(qid for qid, _ in reply.kba_questions),
            polls=0,
        )
        resend_at = (
            resend_time(now, self.config.resend_cooldown) if choice.kind in SEND_KINDS else None
        )
        if factor in PUSH_FACTORS:
            return Outcome(
                OOB_PENDING,
                {
                    "context": context,
                    "challenge": Challenge(
                        factor=factor,
                        kind="push",
                        prompt=choice.label,
                        number_to_match=reply.mutual_challenge,
                        accepts_code=False,
                        resend_at=resend_at,
                    ),
                    "next_poll_at": now + self.config.poll_interval,
                    "deadline": _deadline(now + self.config.push_lifetime, ctx.token_expires_at),
                },
            )
        return Outcome(
            RESPONSE_DUE,
            {
                "context": context,
                "challenge": Challenge(
                    factor=factor,
                    kind=choice.kind,
                    prompt=_prompt(choice, reply),
                    delivery=reply.delivery or delivery,
                    questions=tuple(question for _, question in reply.kba_questions),
                    cells=reply.grid_cells,
                    attempts_left=ctx.remaining_attempts.get(factor),
                    resend_at=resend_at,
                ),
                "next_poll_at": None,
                "deadline": _deadline(snapshot.deadline, reply.expires_at),
            },
        )

    @on(
        EntrustMachine.resend,
        outcomes={
            "SecondFactorSelected": [RESPONSE_DUE, FAILED],
            "OobPending": [OOB_PENDING, FAILED],
        },
        calls=f"POST {SELECT_PATH}",
    )
    def _on_resend(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        # The engine has checked that the challenge offers a resend and its cooldown is over.
        ctx: EntrustContext = snapshot.context
        challenge = snapshot.challenge
        factor = ctx.factor or ""
        choice = _offered(snapshot, factor)
        delivery = challenge.delivery if challenge is not None else None
        reply = yield from self._reselect(ctx, factor, delivery, "send a new code or push")
        if reply is None:
            return _locked()
        return self._challenged(
            snapshot, now, ctx, choice=choice, factor=factor, delivery=delivery, reply=reply
        )

    @on(
        EntrustMachine.submit_response,
        outcomes=[COMPLETED, REJECTED, FAILED],
        calls=f"POST {COMPLETE_PATH}",
    )
    def _on_submit_response(
        self,
        snapshot: Snapshot,
        now: float,
        answer: str | None = None,
        answers: list[str] | tuple[str, ...] | None = None,
    ) -> Exchange[Outcome]:
        ctx: EntrustContext = snapshot.context
        factor = ctx.factor or ""
        kba = None
        response = None
        if factor == "KBA":
            if answer is not None or not isinstance(answers, list | tuple):
                raise InvalidInput("answers", "KBA takes a list of answers, one per question")
            if len(answers) != len(ctx.kba_question_ids):
                raise InvalidInput("answers", f"expected {len(ctx.kba_question_ids)} answers")
            questions = [
                {"id": qid, "answer": secret_text("answers", answer)}
                for qid, answer in zip(ctx.kba_question_ids, answers, strict=True)
            ]
            kba = {"id": ctx.kba_id, "userQuestions": questions}
        else:
            if answers is not None:
                raise InvalidInput("answers", f"is only for KBA; {factor} takes an answer")
            response = self._typed_code(factor, answer)
        path, second = self._paths(ctx, factor)
        try:
            reply = yield from self.client.complete(
                path,
                self._held_token(ctx),
                response=response,
                second_factor=second,
                kba_challenge=kba,
            )
        except IdpError as exc:
            return self._answer_refused(exc, snapshot, factor)
        if not reply.completed:
            raise IdpReplyError(
                "IDaaS neither accepted nor refused the answer", path=path, status=200
            )
        return self._completed(snapshot, reply, now)

    @on(
        EntrustMachine.poll,
        outcomes=[OOB_PENDING, COMPLETED, FAILED],
        calls=f"POST {COMPLETE_PATH}",
    )
    def _on_poll(self, snapshot: Snapshot, now: float) -> Exchange[Outcome | None]:
        ctx: EntrustContext = snapshot.context
        if snapshot.next_poll_at is not None and now < snapshot.next_poll_at:
            return None  # too early: answer from the snapshot, spare the IdP
        path, second = self._paths(ctx, ctx.factor or "")
        # Seconds since IDaaS last answered a poll: how long an outage has lasted.
        outage = now - ((snapshot.next_poll_at or now) - self.config.poll_interval)
        schedule = self.config.poll_schedule
        try:
            reply = yield from self.client.poll(path, self._held_token(ctx), second_factor=second)
        except IdpError as exc:
            # ``no_transaction`` (push ended on the device or past IDaaS's lifetime) is
            # ``gone``: the flow ends Failed(expired), never "denied" (IDaaS does not say
            # the user refused; its explicit refusal is status CANCEL below).
            if exc.transient:
                exc.retry_after = schedule.retry_after(outage=outage, retry_after=exc.retry_after)
            raise
        except TransportError as exc:
            exc.retry_after = schedule.retry_after(outage=outage)
            raise
        if reply.completed:
            return self._completed(snapshot, reply, now)
        if reply.status == "NO_RESPONSE":
            return Outcome(
                OOB_PENDING,
                {
                    "next_poll_at": now + self.config.poll_interval,
                    "context": attrs.evolve(_seen(ctx, reply), polls=ctx.polls + 1),
                },
            )
        if reply.status == "CANCEL":
            return _denied("the request was declined on the device")
        if reply.status == "CONCERN":
            return _denied("the request was reported as suspicious on the device")
        raise IdpReplyError(
            f"IDaaS answered a push poll with an unknown status {reply.status!r}",
            path=path,
            status=200,
        )

    @on(
        EntrustMachine.cancel,
        outcomes=[CANCELLED],
        calls=[f"POST {COMPLETE_PATH}", f"POST {LOGOUT_PATH}"],
    )
    def _on_cancel(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        yield from self._cancel_quietly(snapshot, "cancelled by the user", every_state=True)
        return Outcome(
            CANCELLED,
            {"failure": "cancelled", "next_poll_at": None, "context": _forget(snapshot.context)},
        )

    def _gone(self, snapshot: Snapshot, now: float, error: IdpError) -> Outcome:
        outcome = super()._gone(snapshot, now, error)
        detail = (
            "IDaaS no longer holds this login: its token or transaction expired or was "
            "ended (a push not answered in time, or ended on the device); start again"
        )
        return Outcome(
            outcome.kind,
            {**outcome.changes, "failure_detail": detail, "context": _forget(snapshot.context)},
        )

    def _expire(self, snapshot: Snapshot, now: float) -> Exchange[Outcome]:
        yield from self._cancel_quietly(snapshot, "deadline passed", every_state=False)
        outcome = yield from returned(super()._expire(snapshot, now))
        return Outcome(outcome.kind, {**outcome.changes, "context": _forget(snapshot.context)})

    # -- helpers ------------------------------------------------------------------------

    def _paths(self, ctx: EntrustContext, factor: str) -> tuple[str, str | None]:
        # After PASSWORD_AND_SECONDFACTOR the path stays that authenticator and the second
        # factor travels in the body; after EXTERNAL the second factor has its own path.
        if ctx.first_factor == PASSWORD_AND_SECONDFACTOR:
            return PASSWORD_AND_SECONDFACTOR, factor
        return factor, None

    def _typed_code(self, factor: str, answer: object) -> str:
        """A typed code, checked locally where its format is documented, so a mistyped one
        costs no IDaaS attempt (nor a step towards the authenticator's lockout)."""
        if factor == "TOKEN":
            # A soft or hard token's OTP: 6 to 8 digits (RFC 4226 section 5.3, RFC 6238).
            return numeric_code("answer", answer, lengths=(6, 8), source="RFC 4226")
        if factor == "OTP":
            # Digits, ``otpLength`` of them (admin OTPAuthenticatorSettings, default 8) when
            # the application says its tenant's length; any sensible length otherwise.
            length = self.config.otp_length
            lengths = (length, length) if length else (4, 16)
            return numeric_code("answer", answer, lengths=lengths, source="the tenant's otpLength")
        return code("answer", answer)

    def _held_token(self, ctx: EntrustContext) -> str:
        if ctx.token is None:
            raise UsageError("this flow holds no IDaaS token; start a new flow")
        return ctx.token

    def _required_token(self, reply: AuthReply) -> str:
        if not reply.token:
            raise IdpReplyError("IDaaS sent no token where the flow needs one", path="")
        return reply.token

    def _completed(self, snapshot: Snapshot, reply: AuthReply, now: float) -> Outcome:
        ctx: EntrustContext = snapshot.context
        stale = (reply.expires_at is not None and reply.expires_at <= now) or (
            reply.time is not None and ctx.idp_time is not None and reply.time < ctx.idp_time
        )
        if stale:
            # A success stamped before this flow's last reply, or with a token that has
            # already expired, answers some other request: never take it as this login.
            raise IdpReplyError("IDaaS sent a stale success reply; try again", path="")
        result = Result(
            user_id=reply.user_id or snapshot.user_id,
            display_name=reply.display_name,
            token=self._required_token(reply),
            expires_at=reply.expires_at,
        )
        return Outcome(
            COMPLETED,
            {
                "result": result,
                "challenge": None,
                "next_poll_at": None,
                "context": _forget(snapshot.context),
            },
        )

    def _answer_refused(self, exc: IdpError, snapshot: Snapshot, factor: str) -> Outcome:
        """A wrong answer stays for another try; a lockout ends the flow; else re-raise."""
        if exc.error_code in self.config.lockout_codes:
            return _locked()
        if exc.error_code != "invalid_user_response":
            raise exc
        ctx: EntrustContext = snapshot.context
        remaining = dict(ctx.remaining_attempts)
        if factor in remaining:
            remaining[factor] = max(remaining[factor] - 1, 0)
        challenge = snapshot.challenge
        if challenge is not None:
            challenge = attrs.evolve(challenge, rejected=True, attempts_left=remaining.get(factor))
        return Outcome(
            REJECTED,
            {
                "challenge": challenge,
                "context": attrs.evolve(ctx, remaining_attempts=remaining),
            },
        )

    def _cancel_quietly(self, snapshot: Snapshot, why: str, *, every_state: bool) -> Exchange[None]:
        """End the IDaaS transaction; the flow ends regardless.

        With ``every_state`` (a user's cancel) in any state; without (a passed deadline)
        only a running code or push challenge, since the deadline is mostly the token's own
        expiry and a call with a dead token would only delay the page.

        A running challenge (EXTERNAL before its complete, a code or a push) is cancelled
        the documented way: complete with ``cancel: true`` and the current token (spec
        ``UserAuthenticateParameters.cancel``, "Cancel Identity as a Service authentication";
        Entrust's JS SDK ``cancelAuthChallenge``). Between challenges (the factor picker) no
        challenge is open to cancel, so the held token's session is removed with logout
        (``logoutUsingPOST``, "Remove User Session"). Either way a token saved before the
        cancel can no longer complete the login at IDaaS.
        """
        ctx: EntrustContext = snapshot.context
        running = snapshot.state in ("SecondFactorSelected", "OobPending")
        if not ctx.token or not (running or every_state):
            return  # no token: IDaaS holds no transaction for this flow
        try:
            if running:
                path, second = self._paths(ctx, ctx.factor or "")
                yield from self.client.complete(path, ctx.token, second_factor=second, cancel=True)
            elif snapshot.state == "AwaitingFirstFactor" and ctx.first_factor == EXTERNAL:
                yield from self.client.complete(EXTERNAL, ctx.token, cancel=True)
            else:
                yield from self.client.logout(ctx.token)
        except MfaError as exc:
            # The transaction dies with its token anyway; the user must not be kept waiting.
            log.warning(
                "mfa_fsm.cancel_failed",
                flow_ref=flow_ref(snapshot.flow_id),
                provider=self.provider,
                reason=why,
                error=type(exc).__name__,
            )


def _choice(name: str, deliveries: tuple[str, ...], default: str | None, locked: bool) -> Choice:
    kind, label = SECOND_FACTORS.get(name, ("unsupported", name.replace("_", " ").title()))
    is_otp = name == "OTP"
    detail = "locked" if locked else None
    if name not in SECOND_FACTORS:
        detail = (
            "a security key or passkey, which this sign-in cannot use"
            if name in ("FIDO", "PASSKEY")
            else "a method this sign-in cannot use"
        )
    return Choice(
        id=name,
        kind=kind,
        label=label,
        supported=name in SECOND_FACTORS and not locked,
        deliveries=deliveries if is_otp else (),
        default_delivery=default if is_otp else None,
        detail=detail,
    )


def _no_usable_factor(choices: tuple[Choice, ...]) -> Outcome | None:
    """``Failed`` saying why when no second factor can be picked (all locked: ``locked``;
    else ``unavailable``, naming each), or ``None`` when one can."""
    if any(choice.supported for choice in choices):
        return None
    if choices and all(choice.detail == "locked" for choice in choices):
        return _locked()
    listed = "; ".join(f"{c.label}: {c.detail or 'not offered'}" for c in choices)
    detail = (
        "IDaaS asks for a second factor that cannot be used here "
        f"({listed or 'none offered'}). Set up another method with your administrator."
    )
    return Outcome(
        FAILED, {"failure": "unavailable", "failure_detail": detail, "next_poll_at": None}
    )


def _named_user(
    user_id: str | None, verified_user: VerifiedUser | None
) -> tuple[str, VerifiedUser | None]:
    """The user id to query, and the VerifiedUser if the application vouched for it."""
    if verified_user is not None:
        if user_id is not None:
            raise UsageError(
                "pass either verified_user= (checked by your application) or user= "
                "(typed; IDaaS checks the password), not both"
            )
        if not isinstance(verified_user, VerifiedUser):
            raise UsageError(
                "verified_user must be a mfa_fsm.VerifiedUser built by your application "
                "after its own first-factor check, not a plain string"
            )
        return verified_user.user_id, verified_user
    if user_id is None:
        raise InvalidInput(
            "user",
            "is required: name the user with verified_user=VerifiedUser(id, checked_by=...) "
            "for a user your application has checked, or user= for a typed id",
        )
    return identifier("user", user_id), None


def _external_needs_verified_user() -> VerifiedUserRequired:
    return VerifiedUserRequired(
        "EXTERNAL means the first factor was checked outside IDaaS, so it may only start for "
        "a user your application has checked: pass verified_user=VerifiedUser(user_id, "
        "checked_by=...) from your own verified session instead of user=, or use an "
        "IDaaS application whose resource rule offers PASSWORD_AND_SECONDFACTOR"
    )


def _first_factor_challenge(
    first_factor: str, attempts: dict[str, int], vouched: VerifiedUser | None
) -> Challenge:
    if first_factor == EXTERNAL:
        checked_by = vouched.checked_by if vouched is not None else "the application"
        return Challenge(
            factor=EXTERNAL,
            kind="external",
            prompt=f"First factor checked by {checked_by}",
            accepts_code=False,
        )
    return Challenge(
        factor="PASSWORD",
        kind="password",
        prompt="Password",
        attempts_left=attempts.get("PASSWORD"),
    )


def _prompt(choice: Choice, reply: AuthReply) -> str:
    if reply.token_challenge:
        return f"Enter challenge {reply.token_challenge} into your token and type its response"
    if reply.grid_cells:
        return "Type the values of cells " + ", ".join(reply.grid_cells) + " from your grid card"
    if choice.id == "OTP" and reply.delivery:
        return f"Type the code sent by {reply.delivery}"
    return choice.label


def _offered(snapshot: Snapshot, factor: str) -> Choice:
    for choice in snapshot.choices:
        if choice.id == factor and choice.supported:
            return choice
    offered = [c.id for c in snapshot.choices if c.supported]
    raise InvalidInput("factor", f"is not offered to this user; choose one of {offered}")


def _deadline(current: float, token_expires_at: float | None) -> float:
    return min(current, token_expires_at) if token_expires_at else current


def _seen(ctx: EntrustContext, reply: AuthReply) -> EntrustContext:
    if reply.time is None or (ctx.idp_time is not None and reply.time < ctx.idp_time):
        return ctx
    return attrs.evolve(ctx, idp_time=reply.time)


def _forget(ctx: EntrustContext) -> EntrustContext:
    # A finished flow keeps no working token: the result holds the only one that matters.
    return attrs.evolve(ctx, token=None, first_factor_token=None)


def _locked() -> Outcome:
    return Outcome(
        FAILED,
        {
            "failure": "locked",
            "failure_detail": "too many wrong answers: the authenticator is locked",
            "next_poll_at": None,
        },
    )


def _denied(detail: str) -> Outcome:
    return Outcome(FAILED, {"failure": "denied", "failure_detail": detail, "next_poll_at": None})


__all__ = ["EntrustConfig", "EntrustContext", "EntrustFlow", "EntrustMachine"]
