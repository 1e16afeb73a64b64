"""Duo under the safe-embedding rules, over real HTTP to the emulator.

Duo checks only the second factor, so a flow starts only for a user the application vouches
for; the end user's address reaches Duo per step and nowhere else; a throttle counts pushes,
calls and SMS batches as sends and passcodes as answers; log lines name flows by reference.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mfa_fsm import MfaError, Throttled, flow_ref
from mfa_fsm.core.errors import InvalidInput, UsageError, VerifiedUserRequired
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.snapshot import Snapshot
from mfa_fsm.core.throttle import Throttle
from mfa_fsm.duo import DuoConfig, DuoFlow
from mfa_fsm.testing.duo import DuoEmulator

PHONE = "DPFZRS9FB0D46QFTM899"
LANDLINE = "DPL4NDL1NE0000000001"
SENT = ("/auth/v2/preauth", "/auth/v2/auth")


@pytest.fixture
def duo_emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as emulator:
        yield emulator


@pytest.fixture
def config(duo_emulator: DuoEmulator) -> DuoConfig:
    return DuoConfig(duo_emulator.credentials, base_url=duo_emulator.base_url, poll_interval=0.0)


def restored(flow: DuoFlow, config: DuoConfig, **settings: object) -> DuoFlow:
    """The flow as the next request sees it: from its JSON, with nothing carried over."""
    return DuoFlow.restore(flow.snapshot().to_json(), config=config, **settings)  # type: ignore[arg-type]


# -- who may start a Duo flow --------------------------------------------------------------


def test_duo_declares_its_first_factor_outside() -> None:
    """The flag the web integration and the engine read to demand a vouched-for user."""
    assert DuoFlow.first_factor_outside is True


def test_typed_user_id_is_refused(config: DuoConfig, duo_emulator: DuoEmulator) -> None:
    """``user_id=`` (a typed name) would be a login with Duo alone: VerifiedUserRequired,
    whose message says what to pass; Duo is never asked."""
    with pytest.raises(VerifiedUserRequired) as refused:
        DuoFlow.start(config=config, user="jsmith", client_ip="203.0.113.5")
    assert "verified_user=VerifiedUser(" in str(refused.value)
    assert duo_emulator.calls == []


def test_typed_user_id_counts_as_a_start(config: DuoConfig) -> None:
    """A refused typed start still counts against the user's starts, like any probe."""
    throttle = Throttle(starts_per_user="2/minute")
    for _ in range(2):
        with pytest.raises(VerifiedUserRequired):
            DuoFlow.start(config=config, user="jsmith", throttle=throttle)
    with pytest.raises(Throttled) as refused:
        DuoFlow.start(config=config, verified_user=VerifiedUser("jsmith"), throttle=throttle)
    assert refused.value.action == "start"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({}, InvalidInput),
        ({"verified_user": "jsmith"}, UsageError),
        ({"verified_user": VerifiedUser("jsmith"), "user": "jsmith"}, UsageError),
    ],
)
def test_user_must_be_named_by_a_verified_user(
    config: DuoConfig, arguments: dict[str, object], error: type[Exception]
) -> None:
    """No user, a plain string as verified_user, or both ways at once: a typed error that
    names ``verified_user=``."""
    with pytest.raises(error, match="verified_user"):
        DuoFlow.start(config=config, **arguments)  # type: ignore[arg-type]


def test_the_vouched_user_is_named_on_the_first_page(config: DuoConfig) -> None:
    """The first factor challenge says who checked the first factor."""
    user = VerifiedUser("jsmith", checked_by="example.com password")
    view = DuoFlow.start(config=config, verified_user=user).view()
    assert view.challenge is not None
    assert (view.challenge.kind, view.challenge.factor) == ("external", "EXTERNAL")
    assert view.challenge.prompt == "First factor checked by example.com password"


# -- the end user's address --------------------------------------------------------------


def test_each_users_steps_carry_their_own_ipaddr(
    config: DuoConfig, duo_emulator: DuoEmulator
) -> None:
    """Two users' flows, interleaved step by step and each restored from JSON: every
    /preauth and /auth carries the address of the step that made it, even when a user's
    address changes between steps; /auth_status takes none."""
    alice = DuoFlow.start(config=config, verified_user=VerifiedUser("jsmith"))
    bob = DuoFlow.start(config=config, verified_user=VerifiedUser("callme"))
    alice = restored(alice, config)
    alice.send("submit_first_factor", client_ip="198.51.100.1")
    bob = restored(bob, config)
    bob.send("submit_first_factor", client_ip="2001:DB8::0:2")
    alice = restored(alice, config)
    alice.send("select_second_factor", factor=f"push:{PHONE}", client_ip="198.51.100.9")
    bob = restored(bob, config)
    bob.send("select_second_factor", factor=f"phone:{LANDLINE}", client_ip="2001:db8::2")
    alice = restored(alice, config)
    alice.send("poll", client_ip="198.51.100.9")
    sent = [
        (call.body["username"], call.path, call.body.get("ipaddr"))
        for call in duo_emulator.calls
        if call.path in SENT and call.body is not None
    ]
    assert sent == [
        ("jsmith", "/auth/v2/preauth", "198.51.100.1"),
        ("callme", "/auth/v2/preauth", "2001:db8::2"),
        ("jsmith", "/auth/v2/auth", "198.51.100.9"),
        ("callme", "/auth/v2/auth", "2001:db8::2"),
    ]
    polls = [call for call in duo_emulator.calls if call.path == "/auth/v2/auth_status"]
    assert len(polls) == 1
    assert "ipaddr" not in (polls[0].query or {})


def test_a_step_without_address_sends_none(config: DuoConfig, duo_emulator: DuoEmulator) -> None:
    """The address of one step is not kept for the next: a step without one sends none."""
    flow = DuoFlow.start(config=config, verified_user=VerifiedUser("jsmith"))
    flow.send("submit_first_factor", client_ip="198.51.100.1")
    flow.send("select_second_factor", factor=f"push:{PHONE}")
    preauth, auth = [call for call in duo_emulator.calls if call.path in SENT]
    assert preauth.body is not None and preauth.body["ipaddr"] == "198.51.100.1"
    assert auth.body is not None and "ipaddr" not in auth.body


def test_malformed_step_address_calls_nothing(config: DuoConfig, duo_emulator: DuoEmulator) -> None:
    """A step address that is not an IP address is InvalidInput before any call."""
    flow = DuoFlow.start(config=config, verified_user=VerifiedUser("jsmith"))
    before = flow.snapshot()
    with pytest.raises(InvalidInput) as refused:
        flow.send("submit_first_factor", client_ip="192.0.2.1; DROP")
    assert refused.value.field == "client_ip"
    assert flow.snapshot() == before
    assert duo_emulator.calls == []


def test_ipaddr_is_in_no_snapshot_and_no_log_line(
    config: DuoConfig, duo_emulator: DuoEmulator, leak_guard: list[dict[str, object]]
) -> None:
    """The address reaches Duo, and no snapshot (JSON or compact), view or log line."""
    address = "203.0.113.177"
    flow = DuoFlow.start(config=config, verified_user=VerifiedUser("jsmith"), client_ip=address)
    saved = [flow.snapshot()]
    flow.send("submit_first_factor", client_ip=address)
    saved.append(flow.snapshot())
    flow.send("select_second_factor", factor=f"push:{PHONE}", client_ip=address)
    saved.append(flow.snapshot())
    duo_emulator.answer("jsmith", "approve")
    assert flow.send("poll", client_ip=address).state == "Completed"
    saved.append(flow.snapshot())
    assert all(c.body and c.body["ipaddr"] == address for c in duo_emulator.calls if c.path in SENT)
    texts = [s.to_json() for s in saved] + [repr(s) for s in saved] + [repr(flow.view())]
    texts += [repr(Snapshot.from_json(s.to_json())) for s in saved]
    assert not [text for text in texts if address in text]
    assert len(leak_guard) >= 4
    assert not [event for event in leak_guard if address in repr(event)]


# -- throttles -----------------------------------------------------------------------------


def picker(config: DuoConfig, throttle: Throttle, user: str = "jsmith") -> DuoFlow:
    flow = DuoFlow.start(config=config, verified_user=VerifiedUser(user), throttle=throttle)
    assert flow.send("submit_first_factor").state == "AwaitingSecondFactor"
    return flow


def test_pushes_are_throttled_before_duo_is_asked(
    config: DuoConfig, duo_emulator: DuoEmulator
) -> None:
    """N pushes pass (each a new login of the same user); the next raises Throttled before
    any call, so Duo pushes nothing more, and the flow is unchanged."""
    throttle = Throttle(send_cooldown="100/minute", sends_per_user="3/minute")
    for _ in range(3):
        flow = picker(config, throttle)
        assert flow.send("select_second_factor", factor=f"push:{PHONE}").state == "OobPending"
    flow = picker(config, throttle)
    before, calls = flow.snapshot(), len(duo_emulator.calls)
    with pytest.raises(Throttled) as refused:
        flow.send("select_second_factor", factor=f"push:{PHONE}", client_ip="192.0.2.4")
    assert (refused.value.action, refused.value.scope) == ("send", "user")
    assert len(duo_emulator.calls) == calls
    assert flow.snapshot() == before
    pushes = [c for c in duo_emulator.calls if c.body and c.body.get("factor") == "push"]
    assert len(pushes) == 3


def test_calls_and_sms_count_as_sends(config: DuoConfig, duo_emulator: DuoEmulator) -> None:
    """A phone call and an SMS batch use the same send allowance as a push; choosing the
    typed passcode sends nothing and is not counted."""
    throttle = Throttle(send_cooldown="100/minute", sends_per_user="2/minute")
    picker(config, throttle).send("select_second_factor", factor=f"phone:{PHONE}")
    picker(config, throttle).send("select_second_factor", factor="passcode")
    picker(config, throttle).send("select_second_factor", factor=f"sms:{PHONE}")
    flow = picker(config, throttle)
    calls = len(duo_emulator.calls)
    with pytest.raises(Throttled):
        flow.send("select_second_factor", factor=f"sms:{PHONE}")
    assert len(duo_emulator.calls) == calls
    assert duo_emulator.sms_count("jsmith") == 1


def test_send_cooldown_per_user(config: DuoConfig) -> None:
    """A second push to the same user within the cooldown is refused, whoever asks."""
    throttle = Throttle(send_cooldown="1/minute")
    picker(config, throttle).send("select_second_factor", factor=f"push:{PHONE}")
    with pytest.raises(Throttled) as refused:
        picker(config, throttle).send("select_second_factor", factor=f"push:{PHONE}")
    assert refused.value.action == "send"
    # Another user is not held up by jsmith's cooldown.
    picker(config, throttle, "callme").send("select_second_factor", factor=f"phone:{LANDLINE}")


def test_passcodes_are_counted_as_answers(config: DuoConfig, duo_emulator: DuoEmulator) -> None:
    """Wrong passcodes are answers: N pass to Duo, the next is Throttled without a call."""
    throttle = Throttle(answers_per_user="2/minute")
    flow = picker(config, throttle)
    flow.send("select_second_factor", factor="passcode")
    for _ in range(2):
        assert flow.send("submit_response", answer="000000").state == "SecondFactorSelected"
    before, calls = flow.snapshot(), len(duo_emulator.calls)
    with pytest.raises(Throttled) as refused:
        flow.send("submit_response", answer="000000")
    assert refused.value.action == "answer"
    assert (flow.snapshot(), len(duo_emulator.calls)) == (before, calls)


def test_throttle_actions_by_choice(config: DuoConfig) -> None:
    """What each Duo step counts as, read from the choice kinds Duo's preauth gave."""
    flow = picker(config, Throttle())
    snapshot = flow.snapshot()
    kinds = {
        factor: flow.throttle_action(snapshot, "select_second_factor", {"factor": factor})
        for factor in (f"push:{PHONE}", f"phone:{PHONE}", f"sms:{PHONE}", "passcode")
    }
    assert kinds == {
        f"push:{PHONE}": "send",
        f"phone:{PHONE}": "send",
        f"sms:{PHONE}": "send",
        "passcode": None,
    }
    assert flow.throttle_action(snapshot, "submit_response", {"answer": "1"}) == "answer"
    assert flow.throttle_action(snapshot, "poll", {}) is None
    assert flow.throttle_action(snapshot, "cancel", {}) is None


def test_a_restored_flow_keeps_counting(config: DuoConfig, duo_emulator: DuoEmulator) -> None:
    """``restore(throttle=)`` counts the sends of later steps too."""
    throttle = Throttle(send_cooldown="1/minute")
    flow = restored(picker(config, throttle), config, throttle=throttle)
    flow.send("select_second_factor", factor=f"push:{PHONE}")
    again = restored(picker(config, throttle), config, throttle=throttle)
    with pytest.raises(Throttled):
        again.send("select_second_factor", factor=f"push:{PHONE}")


# -- log lines and the machine -------------------------------------------------------------


def test_log_lines_name_the_flow_by_reference_only(
    config: DuoConfig, duo_emulator: DuoEmulator, leak_guard: list[dict[str, object]]
) -> None:
    """Start, every step and a failed step log ``flow_ref``; no line holds the flow id."""
    flow = DuoFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), flow_id="duo-flow-4f1c9a"
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor=f"push:{PHONE}")
    duo_emulator.faults.inject("html", path="/auth_status", times=None)
    with pytest.raises(MfaError):
        flow.send("poll")
    duo_emulator.faults.clear()
    duo_emulator.answer("jsmith", "approve")
    assert flow.send("poll").state == "Completed"
    names = [event["event"] for event in leak_guard]
    assert names[0] == "mfa_fsm.flow_started"
    assert "mfa_fsm.step_failed" in names
    assert names.count("mfa_fsm.transition") == 3
    mine = [event for event in leak_guard if str(event["event"]).startswith("mfa_fsm.")]
    assert {event.get("flow_ref") for event in mine} == {flow_ref("duo-flow-4f1c9a")}
    assert not [event for event in leak_guard if "duo-flow-4f1c9a" in repr(event)]
    assert not [event for event in leak_guard if "flow_id" in event]


def test_every_decision_is_remembered() -> None:
    """Every Duo guard is a pure ``said`` guard and the machine declares no action, so the
    engine asks the machine once per (state, event, outcome kind)."""
    pairs = {
        (state.id, event.id)
        for state in DuoFlow.machine.states
        for event in state.transitions.unique_events
    }
    assert pairs
    assert DuoFlow._rememberable == frozenset(pairs)
