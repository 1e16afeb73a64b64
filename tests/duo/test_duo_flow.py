"""The Duo flow's rules on scripted replies: answers the emulator does not give."""

from __future__ import annotations

from typing import Any

import pytest

from mfa_fsm.core.errors import IdpError, IdpReplyError
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing import ScriptedTransport, json_reply

CONFIG = DuoConfig(
    DuoCredentials("DIWJ8X6AEYOR5OMC6TQ1", "s" * 40, "api-xxxxxxxx.duosecurity.com"),
    poll_interval=0.0,
)
DEVICE = {"device": "DPFZRS9FB0D46QFTM899", "type": "phone", "number": "XXX-XXX-0100"}


def ok(response: dict[str, Any]) -> Any:
    return json_reply({"stat": "OK", "response": response})


def preauth(*capabilities: str, **device: Any) -> Any:
    return ok(
        {"result": "auth", "devices": [{**DEVICE, "capabilities": list(capabilities), **device}]}
    )


class Ticking:
    """A clock one second further on at every reading: every poll is due."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def flow_with(*replies: Any) -> tuple[DuoFlow, ScriptedTransport]:
    transport = ScriptedTransport(replies)
    flow = DuoFlow.start(
        config=CONFIG,
        verified_user=VerifiedUser("jsmith"),
        transport=transport,
        clock=Ticking(),
    )
    return flow, transport


@pytest.mark.parametrize(
    "url", [None, "javascript:alert(1)", "http://api-1.duosecurity.com/portal", "https://"]
)
def test_enrolment_link_only_when_https(url: str | None) -> None:
    """An enrolment URL that is not https to a host is never handed to a page."""
    flow, _ = flow_with(ok({"result": "enroll", "enroll_portal_url": url}))
    view = flow.send("submit_first_factor")
    assert (view.state, view.failure) == ("Failed", "rejected")
    assert view.choices == ()


def test_device_without_usable_capability_is_no_dead_end() -> None:
    """A user whose devices offer nothing mfa_fsm drives fails with a reason, not a bare picker."""
    flow, _ = flow_with(preauth("auto", "webauthn"))
    view = flow.send("submit_first_factor")
    assert (view.state, view.failure) == ("Failed", "rejected")


def test_sms_device_label_falls_back_to_the_number() -> None:
    """Choices read Duo's display name, else the name, else the masked number."""
    flow, _ = flow_with(preauth("sms", "push", display_name=None, name=None))
    view = flow.send("submit_first_factor")
    labels = [c.label for c in view.choices]
    assert labels == ["Duo Push to XXX-XXX-0100", "Text message passcodes to XXX-XXX-0100"]


def test_sms_bypass_completes() -> None:
    """An ``/auth`` answering ``allow`` (a bypass user) completes at once."""
    flow, _ = flow_with(
        preauth("sms"), ok({"result": "allow", "status": "bypass", "status_msg": "Bypassed"})
    )
    flow.send("submit_first_factor")
    view = flow.send("select_second_factor", factor="sms:DPFZRS9FB0D46QFTM899")
    assert view.state == "Completed"


@pytest.mark.parametrize(
    ("status", "failure"), [("locked_out", "locked"), ("deny", "denied"), ("fraud", "denied")]
)
def test_sms_refused(status: str, failure: str) -> None:
    """An SMS ``/auth`` that is refused ends with the reason Duo's status names."""
    flow, _ = flow_with(preauth("sms"), ok({"result": "deny", "status": status}))
    flow.send("submit_first_factor")
    view = flow.send("select_second_factor", factor="sms:DPFZRS9FB0D46QFTM899")
    assert (view.state, view.failure) == ("Failed", failure)


@pytest.mark.parametrize(
    ("status", "failure"),
    [("locked_out", "locked"), ("timeout", "expired"), ("push_failed", "denied"), (None, "denied")],
)
def test_poll_outcomes_by_status(status: str | None, failure: str) -> None:
    """``/auth_status`` ``deny`` maps by status; an unknown one is a denial with Duo's words."""
    flow, _ = flow_with(
        preauth("push"),
        ok({"txid": "45f7c92b-f45f-4862-8545-e0f58e78075a"}),
        ok({"result": "deny", "status": status, "status_msg": "Nope"}),
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="push:DPFZRS9FB0D46QFTM899")
    view = flow.send("poll")
    assert (view.state, view.failure) == ("Failed", failure)
    assert flow.snapshot().context.txid is None


def test_unknown_txid_ends_expired() -> None:
    """Duo no longer knowing the txid (400 40002) means the transaction is gone: expired."""
    flow, _ = flow_with(
        preauth("push"),
        ok({"txid": "45f7c92b-f45f-4862-8545-e0f58e78075a"}),
        json_reply(
            {
                "stat": "FAIL",
                "code": 40002,
                "message": "Invalid request parameters",
                "message_detail": "txid",
            },
            400,
        ),
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="push:DPFZRS9FB0D46QFTM899")
    view = flow.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")


def test_unknown_result_changes_nothing() -> None:
    """A ``result`` the flow cannot act on is an IdpReplyError and the flow is unchanged."""
    flow, _ = flow_with(ok({"result": "maybe"}))
    before = flow.snapshot()
    with pytest.raises(IdpReplyError):
        flow.send("submit_first_factor")
    assert flow.snapshot() == before


def test_passcode_deny_with_other_status_fails_denied() -> None:
    """A passcode answer other than a plain wrong code ends the flow (e.g. fraud)."""
    flow, _ = flow_with(preauth("mobile_otp"), ok({"result": "deny", "status": "fraud"}))
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="passcode")
    view = flow.send("submit_response", answer="123456")
    assert (view.state, view.failure) == ("Failed", "denied")


def test_refused_auth_raises_and_changes_nothing() -> None:
    """A 400 on ``/auth`` (a device Duo no longer has) raises; the picker stays."""
    flow, _ = flow_with(
        preauth("push"),
        json_reply(
            {
                "stat": "FAIL",
                "code": 40002,
                "message": "Invalid request parameters",
                "message_detail": "device",
            },
            400,
        ),
    )
    flow.send("submit_first_factor")
    before = flow.snapshot()
    with pytest.raises(IdpError) as caught:
        flow.send("select_second_factor", factor="push:DPFZRS9FB0D46QFTM899")
    assert "device" in str(caught.value)
    assert flow.snapshot() == before


def test_expire_forgets_the_txid() -> None:
    """Past the deadline the flow expires without a call and keeps no txid."""
    now = [1_800_000_000.0]
    transport = ScriptedTransport([preauth("push"), ok({"txid": "t-1"})])
    flow = DuoFlow.start(
        config=CONFIG,
        verified_user=VerifiedUser("jsmith"),
        transport=transport,
        clock=lambda: now[0],
    )
    flow.send("submit_first_factor")
    flow.send("select_second_factor", factor="push:DPFZRS9FB0D46QFTM899")
    now[0] += CONFIG.push_lifetime + 1
    view = flow.send("poll")
    assert (view.state, view.failure) == ("Failed", "expired")
    assert flow.snapshot().context.txid is None
    assert len(transport.requests) == 2
