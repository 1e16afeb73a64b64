"""Random sessions against the Duo emulator, restored from JSON at every step.

Hypothesis drives user events (with good, wrong and malformed input), the user's phone
(approve, deny, report fraud, let it time out), injected faults and the passing of time, and
checks after every step: a successful step adds exactly one to ``version`` (a too-early poll
adds nothing), an error changes nothing, final states take no event and call nothing, the
snapshot round-trips, the deadline is enforced, and nothing but an ``MfaError`` escapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mfa_fsm import EventNotAllowed, Snapshot
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.duo import DuoConfig, DuoFlow
from mfa_fsm.testing.duo import DEMO_PASSCODE, DuoEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.stateless import checked_step

FAULTS = [
    "status",
    "rate_limit",
    "throttled",
    "drop",
    "html",
    "empty",
    "wrong_shape",
    "unknown_enum",
]
LANDLINE = "DPL4NDL1NE0000000001"
CLIENT_IP = "192.0.2.77"
BAD_FACTORS = ["push", f"phone:{LANDLINE}", "sms:DXXXXXXXXXXXXXXXXXXX", "../x", "enroll", ""]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class DuoSession(RuleBasedStateMachine):
    emulator: DuoEmulator

    # jsmith (every factor) most often; the others end early or offer one factor.
    @initialize(
        user=st.sampled_from(["jsmith"] * 4 + ["callme", "tokenonly", "trusted", "newuser"])
    )
    def start(self, user: str) -> None:
        self.clock = Clock(1_800_000_000.0)
        self.emulator.clock = self.clock
        self.emulator.clear_calls()
        self.emulator.faults.clear()
        for name in list(self.emulator.users):
            self.emulator.unlock(name)
        self.transport = SecretRecorder()
        self.config = DuoConfig(
            self.emulator.credentials,
            base_url=self.emulator.base_url,
            poll_interval=1.0,
            push_lifetime=90.0,
            retry=RetryPolicy(first_delay=0.0, max_delay=0.0),  # retry, but never sleep
        )
        self.user = user
        flow = DuoFlow.start(
            config=self.config,
            verified_user=VerifiedUser(user),
            client_ip=CLIENT_IP,
            transport=self.transport,
            clock=self.clock,
        )
        self.saved = flow.snapshot().to_json()

    def restore(self) -> DuoFlow:
        return DuoFlow.restore(
            self.saved, config=self.config, transport=self.transport, clock=self.clock
        )

    def step(self, event: str, **data: Any) -> None:
        after = checked_step(
            self.restore(), lambda: len(self.emulator.calls), event, client_ip=CLIENT_IP, **data
        )
        if after is not None:
            self.saved = after.to_json()

    @rule()
    def submit_first_factor(self) -> None:
        self.step("submit_first_factor")

    @rule(pick=st.integers(0, 9), bad=st.sampled_from(BAD_FACTORS), roll=st.integers(0, 4))
    def select(self, pick: int, bad: str, roll: int) -> None:
        # Mostly a factor Duo offered, so sessions get deep; sometimes one it never offered.
        offered = [c.id for c in Snapshot.from_json(self.saved).choices if c.supported]
        factor = offered[pick % len(offered)] if offered and pick < 8 else bad
        # A delivery only means something for SMS; rarely send a wrong one (refused).
        self.step("select_second_factor", factor=factor, delivery="EMAIL" if roll == 0 else None)

    @rule(
        right=st.booleans() | st.just(True),
        junk=st.sampled_from(["", "12\n3", "1" * 99, "0000000", "abc123"]),
    )
    def respond(self, right: bool, junk: str) -> None:
        sent = self.emulator.sms_passcodes(self.user)
        expected = sent[0] if sent else DEMO_PASSCODE
        self.step("submit_response", answer=expected if right else junk)

    @rule()
    def poll(self) -> None:
        self.step("poll")

    @rule(roll=st.integers(0, 5))
    def cancel(self, roll: int) -> None:
        if roll == 0:  # rarely: a cancel ends the session, and deep states matter more
            self.step("cancel")

    @rule(answer=st.sampled_from(["approve", "deny", "fraud", "timeout"]))
    def phone(self, answer: str) -> None:
        with contextlib.suppress(LookupError):  # nothing waiting: nothing to answer
            self.emulator.answer(self.user, answer)  # type: ignore[arg-type]

    @rule(kind=st.sampled_from(FAULTS))
    def fault(self, kind: str) -> None:
        self.emulator.faults.inject(kind, status=503 if kind == "status" else None)

    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0, 61.0, 1000.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def snapshot_round_trips(self) -> None:
        if hasattr(self, "saved"):
            assert Snapshot.from_json(self.saved).to_json() == self.saved

    @invariant()
    def secret_key_never_stored(self) -> None:
        if hasattr(self, "saved"):
            assert self.emulator.credentials.secret_key not in self.saved

    @invariant()
    def final_states_take_nothing(self) -> None:
        if not hasattr(self, "saved"):
            return
        flow = self.restore()
        if flow.is_final:
            calls = len(self.emulator.calls)
            for event in ("poll", "cancel", "submit_response"):
                with pytest.raises(EventNotAllowed):
                    flow.send(event)
            assert len(self.emulator.calls) == calls


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[DuoEmulator]:
    # The flow's clock is fake, while requests are signed at real time: the emulator's check
    # of the signed Date is what test_duo_emulator tests; here it would only get in the way.
    with DuoEmulator(date_tolerance=float("inf"), lockout_count=5) as emulator:
        yield emulator


def test_random_duo_sessions(shared_emulator: DuoEmulator) -> None:
    """Invariants hold over random event sequences, IdP behaviours, faults and time."""
    DuoSession.emulator = shared_emulator
    run = DuoSession.TestCase
    run.settings = settings(
        max_examples=300,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
