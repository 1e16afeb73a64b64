"""Random sessions against the Entrust emulator, restored from JSON at every step.

Hypothesis drives user events (with good, wrong and malformed input), the user's phone
(approve, deny, flag), injected faults and the passing of time, and checks after every step:
a successful step adds exactly one to ``version`` (a too-early poll adds nothing), an error
changes nothing, final states take no event and call nothing, the snapshot round-trips, the
deadline is enforced, and nothing but an ``MfaError`` escapes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mfa_fsm import EntrustConfig, EntrustFlow, EventNotAllowed, Snapshot
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.testing.entrust import DEMO_KBA, EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.stateless import checked_step

FAULTS = ["status", "rate_limit", "drop", "html", "empty", "wrong_shape", "unknown_enum"]
GOOD_FACTORS = [
    "OTP",
    "TOKEN",
    "TOKENPUSH",
    "KBA",
    "GRID",
    "TEMP_ACCESS_CODE",
    "SMARTCREDENTIALPUSH",
]
BAD_FACTORS = ["NOPE", "otp", "../x"]
# Mostly factors the user has, so sessions get deep; sometimes ones the IdP never offered.
FACTORS = st.sampled_from(GOOD_FACTORS) | st.sampled_from(BAD_FACTORS)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class EntrustSession(RuleBasedStateMachine):
    emulator: EntrustEmulator

    @initialize(user=st.sampled_from(["jsmith", "pwuser", "lowrisk", "pushmc"]))
    def start(self, user: str) -> None:
        self.clock = Clock(1_800_000_000.0)
        self.emulator.clock = self.clock
        self.emulator.clear_calls()
        self.emulator.faults.clear()
        for name in list(self.emulator.users):
            self.emulator.unlock(name)
        self.transport = SecretRecorder()
        self.config = EntrustConfig(
            base_url=self.emulator.base_url,
            application_id=self.emulator.application_id,
            poll_interval=1.0,
            push_lifetime=60.0,
            retry=RetryPolicy(first_delay=0.0, max_delay=0.0),  # retry, but never sleep
        )
        self.user = user
        flow = EntrustFlow.start(
            config=self.config,
            verified_user=VerifiedUser(user),
            transport=self.transport,
            clock=self.clock,
        )
        self.saved = flow.snapshot().to_json()

    def restore(self) -> EntrustFlow:
        return EntrustFlow.restore(
            self.saved, config=self.config, transport=self.transport, clock=self.clock
        )

    def step(self, event: str, **data: Any) -> None:
        after = checked_step(self.restore(), lambda: len(self.emulator.calls), event, **data)
        if after is not None:
            self.saved = after.to_json()

    @rule(password=st.sampled_from(["Passw0rd!", "wrong-one", "", "x" * 300]))
    def submit_first_factor(self, password: str) -> None:
        if self.user == "pwuser":
            self.step("submit_first_factor", answer=password)
        else:
            self.step("submit_first_factor")

    @rule(factor=FACTORS, delivery=st.sampled_from(["SMS", "EMAIL", "FAX"]), odd=st.booleans())
    def select(self, factor: str, delivery: str, odd: bool) -> None:
        # A delivery only means something for OTP; sometimes send one anyway (refused).
        with_delivery = odd if factor != "OTP" else not odd
        self.step(
            "select_second_factor", factor=factor, delivery=delivery if with_delivery else None
        )

    @rule(
        right=st.booleans() | st.just(True),
        junk=st.sampled_from(["", "12\n3", "1" * 99, "00000000"]),
    )
    def respond(self, right: bool, junk: str) -> None:
        snapshot = Snapshot.from_json(self.saved)
        challenge = snapshot.challenge
        if challenge is not None and challenge.questions:
            answers = [DEMO_KBA.get(q, "?") if right else "no" for q in challenge.questions]
            self.step("submit_response", answers=answers)
            return
        expected = self.emulator.expected_response(self.user) or self.emulator.last_otp(self.user)
        self.step("submit_response", answer=expected if right and expected else junk)

    @rule()
    def poll(self) -> None:
        self.step("poll")

    @rule(roll=st.integers(0, 5))
    def cancel(self, roll: int) -> None:
        if roll == 0:  # rarely: a cancel ends the session, and deep states matter more
            self.step("cancel")

    @rule(action=st.sampled_from(["approve", "deny", "flag"]))
    def phone(self, action: str) -> None:
        handler = {
            "approve": self.emulator.approve_push,
            "deny": self.emulator.deny_push,
            "flag": self.emulator.flag_push,
        }[action]
        with contextlib.suppress(LookupError):  # no push pending: nothing to answer
            handler(self.user)

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
def shared_emulator() -> Any:
    with EntrustEmulator(push_lifetime=60.0) as emulator:
        yield emulator


def test_random_entrust_sessions(shared_emulator: EntrustEmulator) -> None:
    """Invariants hold over random event sequences, IdP behaviours, faults and time."""
    EntrustSession.emulator = shared_emulator
    run = EntrustSession.TestCase
    run.settings = settings(
        max_examples=300,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
