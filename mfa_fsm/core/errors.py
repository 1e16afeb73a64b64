"""Every error mfa_fsm raises, in one tree.

::

    MfaError                      root: catch this to catch everything mfa_fsm raises
    ├── UsageError                the caller used the library wrongly; fix the call
    │   ├── EventNotAllowed       the flow's current state does not take this event
    │   ├── InvalidInput          a field of an event (code, factor, id) is malformed
    │   ├── SnapshotError         a snapshot does not parse, or names an unknown state/provider
    │   └── VerifiedUserRequired  a first factor the IdP does not check needs a VerifiedUser
    ├── StoreError                the flow's store refused or failed; not a misuse of the API
    │   ├── FlowNotFound          no flow with that id (never created, deleted or expired)
    │   ├── FlowConflict          another request saved this flow first (compare-and-set)
    │   │   └── FlowBusy          another request is advancing this flow right now (claim)
    │   ├── ResultUnavailable     no result to hand off: not completed, or already handed off
    │   ├── SealedStateError      a sealed client-side token is forged, tampered or expired
    │   │   ├── SealedStateStale  a sealed token another request has already replaced
    │   │   └── SealedStateTooLarge  the flow's state would not fit in a browser cookie
    │   └── StoreUnavailable      the store's database or Redis failed or did not answer
    │       ├── StepNotSaved      ... after the IdP accepted the step, for longer than save_retry
    │       └── ThrottleUnavailable  the throttle's storage failed (nothing was done)
    ├── Throttled                 too many starts, sends or answers: wait ``retry_after`` s
    │   └── ResendTooSoon         a resend inside the challenge's cooldown: wait ``retry_after`` s
    ├── UnmodelledOutcome         a provider's handler returned an outcome its table has no
    │                             row for: a bug in that provider, not the IdP's doing
    ├── IdpError                  the IdP answered, but refused or misbehaved
    │   └── IdpReplyError         the reply could not be understood (HTML, empty, wrong shape)
    └── TransportError            the network failed before the IdP could answer

An IdP's *answer* about the user ("wrong code", "push denied") is never an exception: it moves
the flow (see the provider flows). Whatever is raised, the flow and its snapshot are exactly as
they were before the event, so the caller may retry the same event once the cause is gone.

No message ever contains a secret: codes, passwords, tokens, session ids and cookies are never
formatted into an error. Nor is a flow id, which is a bearer handle for ``Engine.send``: a
message names a flow by its log reference (``mfa_fsm.core.logref.flow_ref``), and the error's
``flow_id`` attribute holds the id for the caller's own use.
"""

from __future__ import annotations

from collections.abc import Iterable


def _ref(flow_id: str) -> str:
    """How a message names a flow: ``ref <flow_ref>``, never the id itself."""
    from mfa_fsm.core.logref import flow_ref  # noqa: PLC0415 - logref imports this module

    return f"ref {flow_ref(flow_id)}"


class MfaError(Exception):
    """Root of every error raised by mfa_fsm."""


class UsageError(MfaError):
    """The library was called in a way it does not support; the message says what to change."""


class EventNotAllowed(UsageError):
    """The event is not accepted in the flow's current state; nothing was sent to the IdP."""

    def __init__(self, event: str, state: str, allowed: Iterable[str]) -> None:
        self.event = event
        self.state = state
        self.allowed = tuple(sorted(allowed))
        hint = ", ".join(self.allowed) if self.allowed else "none: the flow has ended"
        super().__init__(
            f"event {event!r} is not allowed in state {state!r}; events allowed now: {hint}"
        )


class InvalidInput(UsageError):
    """A field of an event is missing, of the wrong type or out of range.

    ``field`` names the offending field; the message never repeats its value.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class SnapshotError(UsageError):
    """A snapshot could not be restored: it does not parse, was tampered with, or is unknown."""


class VerifiedUserRequired(UsageError):
    """A flow whose first factor the IdP does not check (Entrust ``EXTERNAL``) was asked for a
    user the application has not vouched for.

    Such a flow is a login with the second factor alone, so it may only start for a user
    whose first factor the application itself has checked: pass
    ``verified_user=VerifiedUser(user_id, checked_by=...)`` (``mfa_fsm.VerifiedUser``) from
    the application's own verified session, never ``user_id=`` from a form. Raised before
    the flow exists; nothing is stored.
    """


class StoreError(MfaError):
    """The flow's store refused an operation, or failed.

    Its own branch, apart from :class:`UsageError`: a missing, contested, sealed or
    unreachable flow is what the store found, not a mistake in the call. (A store called
    wrongly, e.g. with a negative ``ttl``, raises UsageError.)
    """


class FlowNotFound(StoreError):
    """No flow is stored under this id: it was never created, was deleted, or has expired."""

    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        super().__init__(
            f"no flow {_ref(flow_id)} in the store (finished, expired or never started)"
        )


class FlowConflict(StoreError):
    """Another request advanced the flow first; reload it and decide again."""

    def __init__(self, flow_id: str, expected: int, actual: int | None) -> None:
        self.flow_id = flow_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"flow {_ref(flow_id)} is at version {actual}, not {expected}: another request "
            "advanced it first; reload the flow and render its current state"
        )


class FlowBusy(FlowConflict):
    """Another request holds the flow's claim: it is advancing the flow right now.

    Raised before any IdP call, so the step was not sent; ``expected == actual`` is the version
    both requests loaded. Like any conflict: reload the flow and render its current state.
    """

    def __init__(self, flow_id: str, version: int) -> None:
        self.flow_id = flow_id
        self.expected = self.actual = version
        StoreError.__init__(
            self,
            f"flow {_ref(flow_id)} (version {version}) is being advanced by another request right "
            "now, so this request sent nothing to the IdP; reload the flow in a moment and "
            "render its current state",
        )


class ResultUnavailable(StoreError):
    """``hand_off`` found no result to hand over: the flow has not completed, or its result
    was already handed to the application (and erased from the store).

    ``state`` is the flow's state; ``handed_off`` says which case it is. Nothing was changed.
    """

    def __init__(self, flow_id: str, state: str, *, handed_off: bool) -> None:
        self.flow_id = flow_id
        self.state = state
        self.handed_off = handed_off
        if handed_off:
            why = "its result was already handed to the application and erased"
        else:
            why = f"it is in state {state!r}, not Completed; hand off after the final step"
        super().__init__(f"flow {_ref(flow_id)} has no result to hand off: {why}")


class SealedStateError(StoreError):
    """A sealed client-side state token is forged, tampered with, foreign, stale or expired."""


class SealedStateStale(SealedStateError):
    """An authentic, unexpired sealed token that is no longer the flow's newest (the replay
    ledger holds a later version): another request (a double click, a second tab) advanced
    the flow first. The flow itself is fine: reload it with the client's current token."""


class SealedStateTooLarge(SealedStateError):
    """A flow's sealed state would be larger than the client can carry: ``size`` characters
    (or bytes of a whole ``Set-Cookie`` header) against a ``limit`` of the same unit.

    A browser keeps a cookie of at most about 4,096 bytes, name, value and attributes
    together (RFC 6265 section 6.1; werkzeug warns above 4,093) and silently drops a larger
    one, which would leave the user on a flow whose state is lost. So the step that would
    produce such a state fails instead: :meth:`SealedState.seal` raises this before the
    replay ledger records anything, so the client's token is still the flow's newest and
    the stored flow is as it was; but the IdP has taken the step, so the way forward is a
    new start. An IdP whose content is this large (a CyberArk QR image, many long prompts)
    needs a server-side store (``Engine`` with ``RedisStore`` or ``SqlStore``).
    """

    def __init__(self, flow_id: str, size: int, limit: int) -> None:
        self.flow_id = flow_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"the sealed state of flow {_ref(flow_id)} would be {size} characters, over the "
            f"{limit} a browser cookie can carry; this step was not recorded: start the flow "
            "again, and keep this provider's flows in a server-side store (Engine with "
            "RedisStore or SqlStore) if its content is this large"
        )


class StoreUnavailable(StoreError):
    """The flow store's backend (SQL database, Redis) failed or did not answer.

    ``backend`` names the store ("SqlStore", "RedisStore"), ``operation`` what it was doing
    ("load", "save", ...), ``error`` the backend exception's class name. The backend's own
    message is never repeated, and the error is raised ``from None``: drivers quote bound
    parameters (flow ids, snapshot bytes) in their messages. Each store operation is one
    atomic statement or script, so the stored flow is either as it was or, if the connection
    broke after the server applied the write, already changed: reload it before retrying.
    """

    def __init__(self, backend: str, operation: str, error: str) -> None:
        self.backend = backend
        self.operation = operation
        self.error = error
        super().__init__(
            f"the flow store ({backend}) failed during {operation} ({error}); check that its "
            "database or Redis server is up and reachable, then reload the flow and retry"
        )


class ThrottleUnavailable(StoreUnavailable):
    """The throttle's ``limits`` storage (``redis://``, ``async+redis://``) failed or did not
    answer while counting a step (:meth:`mfa_fsm.core.throttle.Throttle.counting`).

    Raised before the IdP is called, so the flow is exactly as it was and nothing was sent:
    retry the step once the storage is back. ``backend`` names the storage class,
    ``operation`` is ``"count"``, ``error`` the storage exception's class name (its message is
    never repeated). The login pages answer it, as any StoreUnavailable, with 503 and
    ``Retry-After``.
    """

    def __init__(self, backend: str, error: str) -> None:
        super().__init__(backend, "count", error)
        self.args = (
            f"the throttle's storage ({backend}) failed while counting ({error}); check that "
            "its Redis server is up and reachable, then retry the step (nothing was done)",
        )


class StepNotSaved(StoreUnavailable):
    """The IdP accepted a step, but the flow store stayed unavailable for the whole of the
    engine's ``save_retry`` window (``retried_for`` seconds), so the step was not recorded.

    The stored flow is exactly as it was before the step (version, state, tokens), and its
    claim is released (or, while the store is still down, ends ``claim_ttl`` after it was
    taken), but the IdP has moved on: it may have rotated the token or spent the
    transaction the stored flow still names. That is safe to recover from, not a dead end:
    sending the event again once the store is back makes the IdP answer for the old token,
    which ends the flow ``Failed(expired)`` ("start again") or refuses the step, so the user
    starts a new flow. ``operation`` is ``"save"`` (or ``"create"`` for a start).
    """

    def __init__(self, backend: str, operation: str, error: str, *, retried_for: float) -> None:
        self.backend = backend
        self.operation = operation
        self.error = error
        self.retried_for = retried_for
        StoreError.__init__(
            self,
            f"the identity provider accepted this step, but the flow store ({backend}) failed "
            f"during {operation} ({error}) for {retried_for:.1f} s of retries, so the step was "
            "not recorded; once the store is back, send the event again or start a new flow "
            "(the stored flow may refer to a transaction the identity provider has ended)",
        )


class Throttled(MfaError):
    """A start, an out-of-band send or an answer was refused by an anti-automation throttle.

    Raised before any IdP call; the flow is unchanged. ``retry_after`` is how many seconds to
    wait before the same step can succeed, ``action`` is ``"start"``, ``"send"`` or
    ``"answer"`` and ``scope`` is ``"user"`` or ``"client"`` (the end user's address). The
    message names neither the user nor the address.
    """

    def __init__(self, action: str, scope: str, retry_after: float) -> None:
        self.action = action
        self.scope = scope
        self.retry_after = retry_after
        super().__init__(
            f"too many {action} steps for this {scope} in a short time; nothing was sent to "
            f"the IdP: try again in {retry_after:.0f} s"
        )


class ResendTooSoon(Throttled):
    """``resend`` was sent before the challenge's cooldown ended (``Challenge.resend_at``).

    Raised before any IdP call; the flow is unchanged. ``retry_after`` is the seconds left
    of the cooldown. A :class:`Throttled`, so a page that answers throttling (HTTP 429 with
    ``Retry-After``) answers this the same way.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__("resend", "flow", retry_after)
        self.args = (
            "a new code or push was sent a moment ago; nothing was sent to the IdP: wait "
            f"{max(retry_after, 1):.0f} s before asking for another",
        )


class UnmodelledOutcome(MfaError):
    """A handler returned an outcome that its flow's table has no row for (or that its
    ``@on`` declaration does not list) in the current state.

    A programming error in the provider, never the IdP's or the caller's doing: fix the table
    or the handler, and run ``mfa-fsm verify`` (:func:`mfa_fsm.verify.verify_flow`), which
    finds every such gap without an IdP. The flow is unchanged. ``flow``, ``state``,
    ``event`` and ``outcome`` name the gap.
    """

    def __init__(self, flow: str, state: str, event: str, outcome: str, why: str) -> None:
        self.flow = flow
        self.state = state
        self.event = event
        self.outcome = str(outcome)  # an OutcomeKind's plain value
        super().__init__(
            f"{flow}'s handler for {event!r} returned outcome {self.outcome!r} in state {state}, "
            f"but {why}: add the row to the flow's table (or return an outcome it has), "
            "then run `mfa-fsm verify`"
        )


class IdpError(MfaError):
    """The IdP refused a call or answered something the flow cannot accept.

    ``status`` is the HTTP status (``None`` when the body itself was at fault), ``error_code``
    the IdP's own error code when it gave one, ``path`` the API path that was called and
    ``retry_after`` the seconds the IdP asked the client to wait (HTTP 429/503), if any.
    ``gone`` is true when the IdP said the token, session or transaction the call named no
    longer exists or has expired (Entrust ``invalid_token``, ``token_expired``,
    ``no_transaction``): no retry can succeed, so a flow that meets it inside an event ends
    ``Failed(expired)`` ("start again") instead of raising.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        status: int | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        self.path = path
        self.status = status
        self.error_code = error_code
        self.retry_after = retry_after
        self.gone = gone
        super().__init__(message)

    @property
    def transient(self) -> bool:
        """Whether trying the same event again later may succeed (HTTP 429 or 5xx)."""
        return self.status is not None and (self.status == 429 or self.status >= 500)


class IdpReplyError(IdpError):
    """The IdP's reply was not what its API documents (HTML, empty, wrong JSON shape)."""


class TransportError(MfaError):
    """The network failed: refused or dropped connection, timeout, TLS failure.

    The original ``requests`` exception is the ``__cause__``. The flow is unchanged; retry the
    same event when the IdP is reachable again (after ``retry_after`` seconds, when a polling
    flow set it from its back-off schedule).
    """

    def __init__(self, message: str, *, path: str, retry_after: float | None = None) -> None:
        self.path = path
        self.retry_after = retry_after
        super().__init__(message)
