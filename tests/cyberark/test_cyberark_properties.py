"""Random sessions against the CyberArk emulator, restored from JSON at every step.

Hypothesis drives user events (good, wrong and malformed input), the user's phone (approve,
approve with the wrong number, deny), users whose tenant sends a NewPackage, defers failures
or redirects to a pod, injected faults, and the passing of time on a clock the emulator
shares. After every step: a successful step adds exactly one to ``version`` (a poll before
``next_poll_at`` adds nothing and calls nothing), an error changes nothing, a passed deadline
ends the flow ``Failed(expired)`` without an IdP call, final states take no event and call
nothing, the snapshot round-trips exactly, and nothing but an ``MfaError`` escapes.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mfa_fsm import CyberArkConfig, CyberArkFlow, EventNotAllowed, Snapshot
from mfa_fsm.core.retry import RetryPolicy
from mfa_fsm.testing import CyberArkEmulator, SecretRecorder
from tests.support.cyberark import TENANT, Clock
from tests.support.stateless import checked_step

# carol twice: hers is the one package that lands in SecondFactorSelected without a choice.
USERS = ["alice", "bob", "carol", "carol", "dave", "erin", "frank", "grace"]
ANSWERS = {
    "What is your pet's name?": "Smokey",
    "First car?": "Beetle",
    "Favourite colour?": "Teal",
}
FLOW_LIFETIME = 300.0
OOB_LIFETIME = 60.0
FAULTS = [
    {"kind": "status", "status": 503},
    {"kind": "rate_limit"},
    {"kind": "rate_limit", "retry_after": 5},
    {"kind": "drop"},
    {"kind": "reset"},
    {"kind": "html"},
    {"kind": "empty"},
    {"kind": "wrong_shape"},
    {"kind": "unknown_enum"},
    {"kind": "replay_success"},
]
MALFORMED: list[Any] = ["", "x" * 300, "12;34", "a\x00b", 123456, ["1"], {"a": "b"}]
# Good input most of the time, so that sessions get deep; wrong and malformed input sometimes.
QUALITY = st.sampled_from(["good"] * 6 + ["wrong", "malformed", "none"])
EVENTS = ["submit_first_factor", "select_second_factor", "submit_response", "poll", "cancel"]
#: every state any session reached, over the whole run (for the distribution check)
REACHED: Counter[str] = Counter()


class CyberArkSession(RuleBasedStateMachine):
    emulator: CyberArkEmulator
    clock: Clock

    @initialize(user=st.sampled_from(USERS))
    def start(self, user: str) -> None:
        # The shared clock only moves on: every earlier session has expired at the emulator.
        self.clock.advance(10 * FLOW_LIFETIME)
        self.emulator.faults.clear()
        self.transport = SecretRecorder()
        self.config = CyberArkConfig(
            base_url=self.emulator.base_url,
            tenant_id=TENANT,
            pod_scheme="http",
            poll_interval=1.0,
            oob_lifetime=OOB_LIFETIME,
            flow_lifetime=FLOW_LIFETIME,
            # Retry safe calls, never sleep: a Retry-After does not fit this budget.
            retry=RetryPolicy(first_delay=0.0, max_delay=0.0, budget=0.5),
        )
        self.user = user
        flow = CyberArkFlow.start(
            config=self.config, user=user, transport=self.transport, clock=self.clock
        )
        self.saved = flow.snapshot().to_json()
        REACHED[flow.state] += 1

    def restore(self) -> CyberArkFlow:
        return CyberArkFlow.restore(
            self.saved, config=self.config, transport=self.transport, clock=self.clock
        )

    def step(self, event: str, **data: Any) -> None:
        calls = len(self.emulator.calls)
        before = self.snapshot
        after = checked_step(self.restore(), lambda: len(self.emulator.calls), event, **data)
        if after is None or after.version == before.version:
            return
        if self.clock.now >= before.deadline:
            assert (after.state, after.failure) == ("Failed", "expired")
            assert len(self.emulator.calls) == calls, "an expired flow called the IdP"
        assert after.deadline <= after.created_at + FLOW_LIFETIME
        if after.state == "OobPending":
            started = after.context.oob_started_at
            assert started is not None and after.deadline <= started + OOB_LIFETIME
            assert after.next_poll_at is not None
        if after.is_final:
            assert after.context.session_id is None and not after.context.cookies
        REACHED[after.state] += 1
        self.saved = after.to_json()

    @property
    def snapshot(self) -> Snapshot:
        return Snapshot.from_json(self.saved)

    def data(self, event: str, quality: str, index: int) -> dict[str, Any]:
        """What the user sends with ``event``: the right input for the flow's state when
        ``quality`` is good, else a wrong one, a malformed one, or none."""
        snapshot = self.snapshot
        challenge = snapshot.challenge
        malformed = MALFORMED[index % len(MALFORMED)]
        if event == "select_second_factor":
            offered = [choice.id for choice in snapshot.choices]
            if quality == "good" and offered:
                return {"factor": offered[index % len(offered)]}
            return {"factor": "not-a-mechanism" if quality == "wrong" else malformed}
        if event not in ("submit_first_factor", "submit_response") or quality == "none":
            return {}
        field = "answer"
        if quality == "malformed":
            return {field: malformed}
        right = quality == "good"
        if challenge is not None and challenge.questions:
            answers = [ANSWERS.get(q, "?") if right else "no" for q in challenge.questions]
            return {"answers": answers} if len(answers) > 1 else {field: answers[0]}
        if challenge is not None and challenge.kind == "password":
            return {field: f"{self.user}-password" if right else "wrong-password"}
        if challenge is not None and snapshot.state == "OobPending" and challenge.accepts_code:
            code = self.emulator.last_code(self.user)
            return {field: code if right and code else "000000"}
        return {}

    @rule(quality=QUALITY, index=st.integers(0, 15))
    def proceed(self, quality: str, index: int) -> None:
        """What a user on the page would do next; the session's main road to deep states."""
        snapshot = self.snapshot
        state, challenge = snapshot.state, snapshot.challenge
        if state == "OobPending" and challenge is not None:
            if challenge.accepts_code and index % 2:
                self.step("submit_response", **self.data("submit_response", quality, index))
                return
            if quality == "good":
                self.answer_phone("approve")
            self.clock.advance(1.0)
            self.step("poll")
        elif state == "SecondFactorSelected":
            self.step("submit_response", **self.data("submit_response", quality, index))
        elif challenge is None and snapshot.choices:
            self.step("select_second_factor", **self.data("select_second_factor", quality, index))
        else:
            self.step("submit_first_factor", **self.data("submit_first_factor", quality, index))

    # Listed twice, so Hypothesis picks it twice as often as the other rules.
    proceed_again = proceed

    @rule(event=st.sampled_from(EVENTS), quality=QUALITY, index=st.integers(0, 15))
    def any_event(self, event: str, quality: str, index: int) -> None:
        """Any event in any state, with input of any quality: most are refused."""
        if event == "cancel" and index:
            return  # rarely: a cancel ends the session, and deep states matter more
        self.step(event, **self.data(event, quality, index))

    def answer_phone(self, action: str) -> None:
        challenge = self.snapshot.challenge
        number = challenge.number_to_match if challenge is not None else None
        with contextlib.suppress(LookupError):  # nothing pending: nothing to answer
            if action == "deny":
                self.emulator.deny(self.user)
            elif action == "wrong number" and number is not None:
                self.emulator.approve(self.user, number=str((int(number) + 1) % 100))
            else:
                self.emulator.approve(self.user, number=number)

    @rule(action=st.sampled_from(["approve", "wrong number", "deny"]))
    def phone(self, action: str) -> None:
        self.answer_phone(action)

    @rule(fault=st.sampled_from(FAULTS))
    def fault(self, fault: dict[str, Any]) -> None:
        self.emulator.faults.inject(**fault)

    @rule(seconds=st.sampled_from([0.5, 1.0, 1.0, 2.0, 5.0, 30.0, OOB_LIFETIME + 1, FLOW_LIFETIME]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def snapshot_round_trips(self) -> None:
        if hasattr(self, "saved"):
            snapshot = Snapshot.from_json(self.saved)
            assert snapshot.to_json() == self.saved
            assert Snapshot.from_json(snapshot.to_json()) == snapshot

    @invariant()
    def final_states_take_nothing(self) -> None:
        if not hasattr(self, "saved"):
            return
        flow = self.restore()
        if flow.is_final:
            calls = len(self.emulator.calls)
            for event, data in (
                ("poll", {}),
                ("cancel", {}),
                ("submit_first_factor", {"answer": f"{self.user}-password"}),
                ("select_second_factor", {"factor": "x"}),
                ("submit_response", {"answer": "123456"}),
            ):
                with pytest.raises(EventNotAllowed):
                    flow.send(event, **data)
            assert len(self.emulator.calls) == calls
            assert flow.snapshot().to_json() == self.saved


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[CyberArkEmulator]:
    with CyberArkEmulator(
        pod_fqdn_as_url=True, session_lifetime=FLOW_LIFETIME, oob_lifetime=OOB_LIFETIME
    ) as emulator:
        clock = Clock()
        emulator.clock = clock
        CyberArkSession.clock = clock
        yield emulator


def test_random_cyberark_sessions(shared_emulator: CyberArkEmulator) -> None:
    """Invariants hold over random event sequences, IdP behaviours, faults and time, and the
    sessions reach every state of the vocabulary."""
    CyberArkSession.emulator = shared_emulator
    REACHED.clear()
    run = CyberArkSession.TestCase
    run.settings = settings(
        max_examples=300,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()
    missing = {
        "AwaitingFirstFactor",
        "AwaitingSecondFactor",
        "SecondFactorSelected",
        "OobPending",
        "Completed",
        "Failed",
    } - set(REACHED)
    assert not missing, f"no session reached {sorted(missing)}: {dict(REACHED)}"
