"""What the providers' fault matrices share: the faults every emulator injects, the checks of
one failed step, and the run's tally, which the suite prints at the end (see conftest.py)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from mfa_fsm import MfaError
from mfa_fsm.core.transport import HttpRequest, HttpResponse, Transport
from mfa_fsm.testing import EmulatorServer, find_leaks

#: fault name -> ``FaultPlan.inject`` keyword arguments: every kind both emulators inject
BASE_FAULTS: dict[str, dict[str, Any]] = {
    "HTTP 500": {"kind": "status", "status": 500},
    "HTTP 502": {"kind": "status", "status": 502},
    "HTTP 503": {"kind": "status", "status": 503},
    "HTTP 504": {"kind": "status", "status": 504},
    "429 with Retry-After": {"kind": "rate_limit", "retry_after": 1},
    "429 without Retry-After": {"kind": "rate_limit"},
    "slow past the timeout": {"kind": "slow", "delay": 0.4},
    "dropped connection": {"kind": "drop"},
    "reply lost after the call was applied": {"kind": "lost_reply"},
    "reset mid-body": {"kind": "reset"},
    "empty body": {"kind": "empty"},
    "HTML instead of JSON": {"kind": "html"},
    "JSON of the wrong shape": {"kind": "wrong_shape"},
    "unknown enum values": {"kind": "unknown_enum"},
}
#: The matrices' transport: a read timeout well below the ``slow`` fault's delay.
TIMEOUT = (2.0, 0.2)
#: The transport of every other call of the matrices.
PATIENT = (2.0, 10.0)

#: provider -> (faults, transitions) declared, and the cases that ran to the end
SIZES: dict[str, tuple[int, int]] = {}
COVERED: dict[str, set[tuple[str, str]]] = defaultdict(set)
#: provider -> how the cases that could not simply continue ended, and how many did
HONEST: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def summary_lines() -> list[str]:
    """One line per provider whose matrix ran: its size and the cases that ended otherwise."""
    lines = []
    for provider, (faults, transitions) in sorted(SIZES.items()):
        line = (
            f"{provider} fault matrix: {faults} faults x {transitions} transitions = "
            f"{faults * transitions} cases, {len(COVERED[provider])} covered"
        )
        notes = [f"{count} {why}" for why, count in sorted(HONEST[provider].items())]
        lines.append(line + (f" (of which {'; '.join(notes)})" if notes else ""))
    return lines


def assert_no_secret(error: MfaError, secrets: set[str]) -> None:
    """Neither the error nor its cause shows any secret the flow handled."""
    texts = [str(error), repr(error), str(error.__cause__ or ""), repr(error.__cause__ or "")]
    assert not find_leaks(texts, secrets), f"{type(error).__name__} shows a secret"


def wait_for_slow_call(emulator: EmulatorServer, body: Any, timeout: float = 5.0) -> None:
    """Wait until the request (with JSON ``body``) held by a ``slow`` fault has been handled.

    The client gave up on it, but the IdP still acts on it. Retrying only after that is the
    case worth testing (the reply was lost after the IdP applied the request), and waiting
    keeps a late request from landing in the next test case.
    """
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        with emulator.lock:
            if any(call.fault == "slow" and call.body == body for call in emulator.calls):
                return
        time.sleep(0.01)
    raise AssertionError("the slow request never reached the emulator")


class ArmedTransport:
    """Injects a fault into the emulator just before the n-th request after :meth:`arm`.

    A step may make several IdP calls (an answer, then the next challenge's StartOOB); this
    puts the fault on exactly one of them, and only on that request's path.
    """

    def __init__(
        self, inner: Transport, emulator: EmulatorServer, *, patient: Transport | None = None
    ) -> None:
        self.inner = inner
        #: carries every request but the faulted one: the short read timeout is for the
        #: ``slow`` fault alone, so that a loaded machine does not fail the calls around it
        self.patient = patient or inner
        self.emulator = emulator
        self._fault: dict[str, Any] | None = None
        self._countdown = 0
        #: the request that got the fault
        self.faulted: HttpRequest | None = None

    def arm(self, fault: dict[str, Any], *, at_call: int = 1) -> None:
        self._fault, self._countdown = fault, at_call

    def send(self, request: HttpRequest) -> HttpResponse:
        if self._fault is not None:
            self._countdown -= 1
            if self._countdown == 0:
                self.emulator.faults.inject(**self._fault, path=request.path)
                self._fault, self.faulted = None, request
                return self.inner.send(request)
        return self.patient.send(request)


def let_next_poll_pass(flow: Any) -> None:
    """Wait out the flow's ``next_poll_at`` (the poll schedules' 1 ms floor): a poll before it
    is answered from the snapshot without calling the IdP, and an armed fault would never be
    met."""
    wait_until = flow.snapshot().next_poll_at
    while wait_until is not None and time.time() <= wait_until:
        time.sleep(0.001)
