"""A whole provider in one module: proof that a new IdP is one folder.

"Toy Verify" is an imaginary IdP with four calls; this module holds everything mfa_fsm needs
to drive it, in the order a reader meets it: the reply parser (pure), the client (request
builders over the injected transport), the table (``ToyMachine``), and the flow (one
``@on`` handler per event). ``mfa-fsm verify tests.toy_provider:ToyFlow`` passes, and
``tests/test_toy_provider.py`` logs in through it against :class:`ToyIdp`, the IdP itself as
an in-process transport.

The protocol (JSON bodies; every reply is ``{"result": ..., ...}``):

==========================  =====================================================
``POST /v1/password``       ``{user, password}`` -> ``ok`` + ``factors``, ``wrong``,
                            ``locked``
``POST /v1/challenge``      ``{user, factor}`` -> ``sent`` (a code is due) or
                            ``pushed`` (approve on the phone), with ``txn``
``POST /v1/verify``         ``{txn, code}`` -> ``ok`` + ``token``, ``wrong``, ``locked``
``POST /v1/status``         ``{txn}`` -> ``waiting``, ``ok`` + ``token``, ``denied``
==========================  =====================================================
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any, ClassVar

import attrs

from mfa_fsm.core.errors import IdpReplyError, InvalidInput
from mfa_fsm.core.exchange import Exchange, send
from mfa_fsm.core.flow import Clock, Flow, FlowMachine, Outcome, on, rows, states
from mfa_fsm.core.http import HttpRequest, HttpResponse, Transport
from mfa_fsm.core.identity import client_address
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
from mfa_fsm.core.replies import json_body
from mfa_fsm.core.snapshot import Challenge, Choice, Result, Snapshot
from mfa_fsm.core.throttle import Throttle

PASSWORD_PATH = "/v1/password"
CHALLENGE_PATH = "/v1/challenge"
VERIFY_PATH = "/v1/verify"
STATUS_PATH = "/v1/status"

# -- replies: pure functions of the HTTP response ------------------------------------------

RESULTS = frozenset({"ok", "wrong", "locked", "sent", "pushed", "waiting", "denied"})


@attrs.frozen
class ToyReply:
    """One reply of Toy Verify; ``txn`` and ``token`` are secrets."""

    result: str
    factors: tuple[str, ...] = ()
    txn: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)


def parse_reply(response: HttpResponse, path: str) -> ToyReply:
    """The reply to a call of ``path``; :class:`IdpReplyError` for anything else."""
    body = json_body(response, path)
    result = body.get("result") if isinstance(body, dict) else None
    if result not in RESULTS:
        raise IdpReplyError("Toy Verify sent a reply without a known result", path=path)
    factors = body.get("factors", [])
    if not (isinstance(factors, list) and all(isinstance(f, str) for f in factors)):
        raise IdpReplyError("Toy Verify sent malformed factors", path=path)
    return ToyReply(result, tuple(factors), body.get("txn"), body.get("token"))


# -- client: builds the requests; a driver sends them (sync or async) ---------------------


@attrs.frozen
class ToyConfig:
    base_url: str = "https://toy.invalid"
    flow_lifetime: float = 300.0


class ToyClient:
    def __init__(self, config: ToyConfig) -> None:
        self.config = config

    def call(self, path: str, body: dict[str, str | None]) -> Exchange[ToyReply]:
        request = HttpRequest("POST", self.config.base_url + path, path, json=body)
        return parse_reply((yield from send(request)), path)


# -- the table ---------------------------------------------------------------------------


class ToyMachine(FlowMachine):
    """Toy Verify's table: (state, event, outcome) -> target."""

    (
        AwaitingFirstFactor,
        AwaitingSecondFactor,
        SecondFactorSelected,
        OobPending,
        Completed,
        Failed,
    ) = states()

    submit_first_factor = rows(
        AwaitingFirstFactor,
        {SECOND_FACTOR_DUE: AwaitingSecondFactor, REJECTED: AwaitingFirstFactor, FAILED: Failed},
    )
    select_second_factor = rows(
        AwaitingSecondFactor, {RESPONSE_DUE: SecondFactorSelected, OOB_PENDING: OobPending}
    )
    submit_response = rows(
        SecondFactorSelected,
        {COMPLETED: Completed, REJECTED: SecondFactorSelected, FAILED: Failed},
    )
    poll = rows(OobPending, {OOB_PENDING: OobPending, COMPLETED: Completed, FAILED: Failed})
    cancel = rows(
        (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected, OobPending),
        {CANCELLED: Failed},
    )
    expire = rows(
        (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected, OobPending),
        {EXPIRED: Failed},
    )


# -- the flow: one handler per event -----------------------------------------------------


@attrs.frozen
class ToyContext:
    txn: str | None = attrs.field(default=None, repr=False)


class ToyFlow(Flow):
    provider: ClassVar[str] = "toyidp"
    machine = ToyMachine
    context_type = ToyContext
    config_type = ToyConfig
    client_type = ToyClient
    client: ToyClient

    @classmethod
    def opening(
        cls,
        *,
        config: ToyConfig,
        user: str,
        transport: Transport | None = None,
        clock: Clock = time.time,
        throttle: Throttle | None = None,
        client_ip: str | None = None,
    ) -> ToyFlow:
        """Toy Verify needs no call to open a flow: the password is its first step."""
        cls._check_start(throttle, user, client_address(client_ip))
        now = clock()
        snapshot = Snapshot(
            provider=cls.provider,
            flow_id=uuid.uuid4().hex,
            user_id=user,
            state="AwaitingFirstFactor",
            version=0,
            created_at=now,
            deadline=now + config.flow_lifetime,
            challenge=Challenge(factor="password", kind="password", prompt="Password"),
            context=ToyContext(),
        )
        return cls(snapshot, config=config, transport=transport, clock=clock)

    @on(
        ToyMachine.submit_first_factor,
        outcomes=[SECOND_FACTOR_DUE, REJECTED, FAILED],
        calls=f"POST {PASSWORD_PATH}",
    )
    def _password(self, snapshot: Snapshot, now: float, answer: str) -> Exchange[Outcome]:
        reply = yield from self.client.call(
            PASSWORD_PATH, {"user": snapshot.user_id, "password": answer}
        )
        if reply.result == "ok":
            choices = tuple(Choice(id=f, kind=f, label=f.title()) for f in reply.factors)
            return Outcome(SECOND_FACTOR_DUE, {"choices": choices, "challenge": None})
        return _refused(snapshot, reply)

    @on(
        ToyMachine.select_second_factor,
        outcomes=[RESPONSE_DUE, OOB_PENDING],
        calls=f"POST {CHALLENGE_PATH}",
    )
    def _choose(self, snapshot: Snapshot, now: float, factor: str) -> Exchange[Outcome]:
        if factor not in {choice.id for choice in snapshot.choices}:
            raise InvalidInput("factor", "is not offered; pick one of the view's choices")
        reply = yield from self.client.call(
            CHALLENGE_PATH, {"user": snapshot.user_id, "factor": factor}
        )
        context = ToyContext(txn=reply.txn)
        if reply.result == "pushed":
            challenge = Challenge(factor=factor, kind="push", prompt="Approve", accepts_code=False)
            return Outcome(
                OOB_PENDING,
                {"challenge": challenge, "context": context, "next_poll_at": now + 1.0},
            )
        challenge = Challenge(factor=factor, kind="otp", prompt="Type the code")
        return Outcome(RESPONSE_DUE, {"challenge": challenge, "context": context})

    @on(
        ToyMachine.submit_response,
        outcomes=[COMPLETED, REJECTED, FAILED],
        calls=f"POST {VERIFY_PATH}",
    )
    def _verify(self, snapshot: Snapshot, now: float, answer: str) -> Exchange[Outcome]:
        reply = yield from self.client.call(
            VERIFY_PATH, {"txn": snapshot.context.txn, "code": answer}
        )
        return _completed(snapshot, reply) if reply.result == "ok" else _refused(snapshot, reply)

    @on(ToyMachine.poll, outcomes=[OOB_PENDING, COMPLETED, FAILED], calls=f"POST {STATUS_PATH}")
    def _status(self, snapshot: Snapshot, now: float) -> Exchange[Outcome | None]:
        if snapshot.next_poll_at is not None and now < snapshot.next_poll_at:
            return None
        reply = yield from self.client.call(STATUS_PATH, {"txn": snapshot.context.txn})
        if reply.result == "waiting":
            return Outcome(OOB_PENDING, {"next_poll_at": now + 1.0})
        if reply.result == "ok":
            return _completed(snapshot, reply)
        return _failed("denied", "declined on the phone")

    @on(ToyMachine.cancel, outcomes=[CANCELLED])
    def _cancel(self, snapshot: Snapshot, now: float) -> Outcome:
        return Outcome(CANCELLED, {"failure": "cancelled", "context": ToyContext()})


def _completed(snapshot: Snapshot, reply: ToyReply) -> Outcome:
    result = Result(user_id=snapshot.user_id, token=reply.token or "")
    changes = {"result": result, "challenge": None, "next_poll_at": None, "context": ToyContext()}
    return Outcome(COMPLETED, changes)


def _refused(snapshot: Snapshot, reply: ToyReply) -> Outcome:
    if reply.result == "wrong":
        challenge = snapshot.challenge and attrs.evolve(snapshot.challenge, rejected=True)
        return Outcome(REJECTED, {"challenge": challenge})
    return _failed("locked", "too many wrong answers")


def _failed(reason: str, detail: str) -> Outcome:
    changes = {"failure": reason, "failure_detail": detail, "challenge": None}
    return Outcome(FAILED, {**changes, "next_poll_at": None, "context": ToyContext()})


# -- the IdP itself, as an in-process transport (no sockets: the toy has no emulator) -----


class ToyIdp:
    """Toy Verify: one user ``pat`` with password ``hunter2``, a code factor and a push."""

    def __init__(self) -> None:
        self.code = f"{secrets.randbelow(10**6):06d}"
        self.pushes: dict[str, str] = {}  # txn -> waiting / ok / denied
        self.wrong = 0
        self.calls: list[str] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        self.calls.append(request.path)
        body: dict[str, Any] = request.json
        reply = self._answer(request.path, body)
        return HttpResponse(200, {"Content-Type": "application/json"}, json.dumps(reply).encode())

    async def send_async(self, request: HttpRequest) -> HttpResponse:
        """The same IdP for the async driver (an AsyncTransport)."""
        return self.send(request)

    def _answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == PASSWORD_PATH:
            if body["password"] == "hunter2":
                return {"result": "ok", "factors": ["code", "push"]}
            return self._wrong()
        if path == CHALLENGE_PATH:
            txn = secrets.token_hex(8)
            if body["factor"] == "push":
                self.pushes[txn] = "waiting"
                return {"result": "pushed", "txn": txn}
            return {"result": "sent", "txn": txn}
        if path == VERIFY_PATH:
            if body["code"] == self.code:
                return {"result": "ok", "token": "toy-token"}
            return self._wrong()
        if path == STATUS_PATH:
            state = self.pushes[body["txn"]]
            return {"result": state, **({"token": "toy-token"} if state == "ok" else {})}
        return {"result": "nonsense"}

    def _wrong(self) -> dict[str, Any]:
        self.wrong += 1
        return {"result": "locked" if self.wrong >= 3 else "wrong"}
