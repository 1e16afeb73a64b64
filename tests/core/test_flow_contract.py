"""The flow base's step contract: what it refuses, it refuses before any IdP call and with the
flow exactly as it was (tests on real flows over real HTTP to the emulators)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import structlog

from mfa_fsm import (
    CyberArkConfig,
    CyberArkFlow,
    EntrustConfig,
    EntrustFlow,
    EventNotAllowed,
    IdpError,
    InvalidInput,
    TransportError,
)
from mfa_fsm.core.errors import FlowBusy, SnapshotError, UnmodelledOutcome, UsageError
from mfa_fsm.core.exchange import Exchange
from mfa_fsm.core.flow import Outcome
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.logref import flow_ref
from mfa_fsm.core.outcomes import OutcomeKind
from mfa_fsm.core.retry import NO_RETRY
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator


@pytest.fixture
def entrust() -> Iterator[EntrustEmulator]:
    with EntrustEmulator() as emulator:
        yield emulator


def entrust_flow(emulator: EntrustEmulator, **config: Any) -> EntrustFlow:
    settings = {"base_url": emulator.base_url, "application_id": emulator.application_id}
    return EntrustFlow.start(
        config=EntrustConfig(**settings, **config), verified_user=VerifiedUser("jsmith")
    )


def test_an_undeclared_outcome_raises_unmodelled_outcome_and_changes_nothing(
    entrust: EntrustEmulator,
) -> None:
    """A handler's outcome that its @on declaration does not list is a bug in the provider:
    UnmodelledOutcome (not an IdpError, even after a real IdP call), the snapshot as it was,
    and no transition logged."""
    flow = entrust_flow(entrust)
    before = flow.snapshot()

    real_handler = flow._on_submit_first_factor

    def unmodelled(snapshot: Any, now: float, **data: Any) -> Exchange[Outcome]:
        yield from real_handler(snapshot, now, **data)  # the real IdP call, then an unmodelled
        return Outcome(OutcomeKind.FIRST_FACTOR_DUE, {"failure": "idp_error", "version": 99})

    flow._on_submit_first_factor = unmodelled  # type: ignore[method-assign]
    expected = r"'submit_first_factor' returned outcome 'first_factor_due' in state Awaiting"
    with (
        structlog.testing.capture_logs() as events,
        pytest.raises(UnmodelledOutcome, match=expected) as caught,
    ):
        flow.send("submit_first_factor")
    assert not isinstance(caught.value, IdpError)
    assert (caught.value.flow, caught.value.state, caught.value.event) == (
        "EntrustFlow",
        "AwaitingFirstFactor",
        "submit_first_factor",
    )
    assert caught.value.outcome == "first_factor_due"
    assert flow.snapshot() == before
    assert flow.state == "AwaitingFirstFactor" and flow.version == 0
    assert not [e for e in events if e["event"] == "mfa_fsm.transition"]


def test_an_outcome_outside_the_vocabulary_cannot_be_built() -> None:
    """Outcome kinds are the shared vocabulary's: a provider's private word is refused when
    the outcome is built, long before any table is asked."""
    assert Outcome("completed").kind is OutcomeKind.COMPLETED
    with pytest.raises(ValueError, match="'nothing' is not a valid OutcomeKind"):
        Outcome("nothing")


@pytest.mark.parametrize(
    ("event", "data", "field"),
    [
        ("select_second_factor", {}, "factor"),
        ("select_second_factor", {"factor": "OTP", "colour": "red"}, "colour"),
        ("select_second_factor", {"factor": "OTP", "not a name!": 1}, "<unknown field>"),
        ("select_second_factor", {"factor": "OTP", "x" * 41: 1}, "<unknown field>"),
    ],
)
def test_a_missing_or_unknown_field_is_invalid_input_not_a_type_error(
    entrust: EntrustEmulator, event: str, data: dict[str, Any], field: str
) -> None:
    """Before any IdP call, the flow unchanged: a required field that is absent, or a field
    the event does not take, is InvalidInput naming that field (never a TypeError)."""
    flow = entrust_flow(entrust)
    flow.send("submit_first_factor")
    before, calls = flow.snapshot(), len(entrust.calls)
    with pytest.raises(InvalidInput) as caught:
        flow.send(event, **data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert flow.snapshot() == before and len(entrust.calls) == calls


def test_cyberark_missing_answer_is_invalid_input() -> None:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        config = CyberArkConfig(base_url=emulator.base_url, pod_scheme="http", retry=NO_RETRY)
        flow = CyberArkFlow.start(config=config, user="alice")
        before, calls = flow.snapshot(), len(emulator.calls)
        with pytest.raises(InvalidInput, match=r"^answer: "):
            flow.send("submit_first_factor")
        assert flow.snapshot() == before and len(emulator.calls) == calls


def test_events_refused_in_the_wrong_state_or_unknown(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    before, calls = flow.snapshot(), len(entrust.calls)
    with pytest.raises(EventNotAllowed, match="poll"):
        flow.send("poll")
    with pytest.raises(EventNotAllowed, match="<unknown event>"):
        flow.send("drop_tables")
    with pytest.raises(EventNotAllowed):
        flow.send(42)  # type: ignore[arg-type]
    assert flow.snapshot() == before and len(entrust.calls) == calls


def test_a_final_flow_takes_no_event(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    flow.send("cancel")
    assert flow.is_final
    with pytest.raises(EventNotAllowed):
        flow.send("cancel")


def test_a_step_at_exactly_the_deadline_expires(entrust: EntrustEmulator) -> None:
    """The deadline is exclusive: an event at that very second ends the flow Failed(expired)
    without calling the IdP."""
    now = [1_800_000_000.0]
    settings = {"base_url": entrust.base_url, "application_id": entrust.application_id}
    flow = EntrustFlow.start(
        config=EntrustConfig(**settings), verified_user=VerifiedUser("jsmith"), clock=lambda: now[0]
    )
    now[0] = flow.snapshot().deadline - 0.001
    still = EntrustFlow.restore(
        flow.snapshot().to_json(), config=EntrustConfig(**settings), clock=lambda: now[0]
    )
    assert still.send("submit_first_factor").state == "AwaitingSecondFactor"
    now[0] = still.snapshot().deadline
    calls = len(entrust.calls)
    view = still.send("cancel")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert len(entrust.calls) == calls


# -- the step's log lines and call records ------------------------------------------------


def test_a_step_logs_one_transition_line_with_its_idp_call(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    entrust.faults.inject("slow", delay=0.2)
    with structlog.testing.capture_logs() as events:
        flow.send("submit_first_factor")
    (line,) = [e for e in events if e["event"] == "mfa_fsm.transition"]
    assert line["flow_ref"] == flow_ref(flow.flow_id) and line["provider"] == "entrust"
    assert (line["flow_event"], line["source"]) == ("submit_first_factor", "AwaitingFirstFactor")
    assert (line["target"], line["version"]) == ("AwaitingSecondFactor", 1)
    assert line["idp_path"].endswith("/authenticate/EXTERNAL/complete")
    assert (line["idp_status"], line["idp_calls"]) == (200, 1)
    assert (
        200 <= line["duration_ms"] < 5000 and round(line["duration_ms"], 2) == line["duration_ms"]
    )
    (call,) = flow.calls
    assert (call.path, call.status) == (line["idp_path"], 200)
    assert 200 <= call.ms <= line["duration_ms"] and round(call.ms, 2) == call.ms


def test_a_failed_step_logs_one_warning_naming_the_error_type(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust, retry=NO_RETRY)
    entrust.faults.inject("status", status=503)
    with structlog.testing.capture_logs() as events, pytest.raises(IdpError):
        flow.send("submit_first_factor")
    (line,) = [e for e in events if e["event"] == "mfa_fsm.step_failed"]
    assert (line["log_level"], line["error"]) == ("warning", "IdpError")
    assert (line["flow_event"], line["source"], line["idp_status"]) == (
        "submit_first_factor",
        "AwaitingFirstFactor",
        503,
    )
    assert line["flow_ref"] == flow_ref(flow.flow_id) and line["idp_calls"] == 1
    assert 0 <= line["duration_ms"] < 5000
    assert "target" not in line and "version" not in line


def test_a_call_that_got_no_answer_is_recorded_without_a_status(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust, retry=NO_RETRY)
    entrust.faults.inject("drop")
    with pytest.raises(TransportError):
        flow.send("submit_first_factor")
    (call,) = flow.calls
    assert call.status is None and call.ms >= 0


class _Refusing:
    """A transport whose calls are refused before they leave, as the engine's claim does."""

    def send(self, request: Any) -> Any:
        raise FlowBusy("f", "someone else holds the flow")


def test_a_call_refused_before_it_left_is_not_an_idp_call(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    config = flow.config
    refused = EntrustFlow.restore(flow.snapshot(), config=config, transport=_Refusing())
    with pytest.raises(FlowBusy):
        refused.send("submit_first_factor")
    assert refused.calls == ()


def test_refusals_name_the_event_and_state(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    with pytest.raises(EventNotAllowed) as wrong_state:
        flow.send("poll")
    assert (wrong_state.value.event, wrong_state.value.state) == ("poll", "AwaitingFirstFactor")
    assert "submit_first_factor" in wrong_state.value.allowed
    with pytest.raises(EventNotAllowed) as unknown:
        flow.send("no_such_event")
    assert (unknown.value.event, unknown.value.state) == ("<unknown event>", "AwaitingFirstFactor")
    flow.send("cancel")
    with pytest.raises(EventNotAllowed) as ended:
        flow.send("cancel")
    assert (ended.value.event, ended.value.state, ended.value.allowed) == ("cancel", "Failed", ())


def test_restore_refuses_another_providers_config_or_snapshot(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    other = CyberArkConfig(base_url="https://tenant.example")
    with pytest.raises(UsageError, match="EntrustFlow takes a EntrustConfig as config=, not a Cy"):
        EntrustFlow.restore(flow.snapshot(), config=other)
    with pytest.raises(SnapshotError, match="restore it with that provider's flow class"):
        CyberArkFlow.restore(flow.snapshot(), config=other)
    odd = attrs.evolve(flow.snapshot(), context={"not": "a context"})
    with pytest.raises(SnapshotError, match="snapshot context is not a EntrustContext"):
        EntrustFlow.restore(odd, config=flow.config)


def test_restore_keeps_the_clock(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    late = flow.snapshot().deadline + 1
    restored = EntrustFlow.restore(
        flow.snapshot().to_json(), config=flow.config, clock=lambda: late
    )
    assert restored.send("submit_first_factor").failure == "expired"


def test_an_unknown_field_message_lists_what_the_event_takes(entrust: EntrustEmulator) -> None:
    flow = entrust_flow(entrust)
    flow.send("submit_first_factor")
    with pytest.raises(
        InvalidInput,
        match=r"^colour: is not a field of 'select_second_factor'; "
        r"it takes \['delivery', 'factor'\]$",
    ):
        flow.send("select_second_factor", factor="OTP", colour="red")
    with pytest.raises(InvalidInput, match=r"^factor: is required for 'select_second_factor'$"):
        flow.send("select_second_factor")
    name = "x" * 40  # an identifier of 40 characters is shown, one of 41 is not
    with pytest.raises(InvalidInput, match=f"^{name}: "):
        flow.send("select_second_factor", factor="OTP", **{name: 1})
