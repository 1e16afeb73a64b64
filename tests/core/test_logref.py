"""Flow ids are bearer handles: log lines and error messages carry a keyed digest instead."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys

import pytest
import structlog

from mfa_fsm import (
    CyberArkConfig,
    Engine,
    FlowNotFound,
    MemoryStore,
    UsageError,
    flow_ref,
    set_log_key,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.core.logref import LazyLogger
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.entrust import EntrustEmulator
from tests.support.engine import entrust_config


@pytest.fixture
def shared_key() -> object:
    set_log_key("correlation-key-0123456789")
    yield
    set_log_key(None)


def test_full_logins_through_the_engine_log_no_flow_id(
    entrust_emulator: EntrustEmulator, leak_guard: list[dict[str, object]]
) -> None:
    """Entrust (push, denied code, TOKEN) and CyberArk (password, SMS) logins through the
    Engine: every log line names its flow by flow_ref, none holds a flow id."""
    with CyberArkEmulator(pod_fqdn_as_url=True) as cyberark:
        engine = Engine(
            MemoryStore(),
            [
                entrust_config(entrust_emulator.base_url, entrust_emulator.application_id),
                CyberArkConfig(base_url=cyberark.base_url, pod_scheme="http"),
            ],
        )
        entrust = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
        engine.send(entrust, "submit_first_factor")
        engine.send(entrust, "select_second_factor", factor="TOKEN")
        engine.send(entrust, "submit_response", answer="000000")
        code = entrust_emulator.token_code("jsmith")
        assert engine.send(entrust, "submit_response", answer=code).state == "Completed"
        engine.hand_off(entrust)

        alice = engine.start("cyberark", user="alice").flow_id
        view = engine.send(alice, "submit_first_factor", answer="alice-password")
        sms = next(choice.id for choice in view.choices if choice.label.startswith("SMS"))
        engine.send(alice, "select_second_factor", factor=sms)
        engine.send(alice, "submit_response", answer=cyberark.last_code("alice"))
        with pytest.raises(FlowNotFound) as missing:
            engine.send(alice + "x", "poll")
    lines = [repr(event) for event in leak_guard]
    assert len(lines) >= 8
    for flow_id in (entrust, alice, alice + "x"):
        assert not [line for line in lines if flow_id in line]
    assert alice not in str(missing.value)
    refs = {event.get("flow_ref") for event in leak_guard if event["event"] == "mfa_fsm.transition"}
    assert refs == {flow_ref(entrust), flow_ref(alice)}


def test_the_reference_is_keyed(shared_key: object) -> None:
    """One key gives one reference per id, the same in every process that shares the key;
    another key gives another reference."""
    ref = flow_ref("flow-1")
    assert len(ref) == 16 and int(ref, 16) >= 0
    assert flow_ref("flow-1") == ref and flow_ref("flow-2") != ref
    env = {**os.environ, "MFA_FSM_LOG_KEY": "correlation-key-0123456789"}
    other = subprocess.run(
        [sys.executable, "-c", "import mfa_fsm; print(mfa_fsm.flow_ref('flow-1'))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == ref
    set_log_key(b"another-key-of-16-bytes")
    assert flow_ref("flow-1") != ref


def test_the_reference_is_the_first_16_hex_digits_of_hmac_sha256(shared_key: object) -> None:
    """RFC 2104 HMAC with SHA-256 under the log key, as the module documents."""
    key = b"correlation-key-0123456789"
    for flow_id in ("flow-1", "é\udc80"):  # a lone surrogate is encoded, not refused
        message = flow_id.encode("utf-8", "surrogatepass")
        assert flow_ref(flow_id) == hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


def test_lazy_logger_logs_through_structlog_as_configured_at_each_call() -> None:
    """LazyLogger is structlog.get_logger(name) made on first use: its events reach the
    configuration in force when they are logged, bound values included."""
    log = LazyLogger("mfa_fsm")
    with structlog.testing.capture_logs() as first:
        log.info("mfa_fsm.one", flow_ref="abc")
        log.bind(provider="entrust").warning("mfa_fsm.two")
    with structlog.testing.capture_logs() as second:
        log.error("mfa_fsm.three")
    assert first == [
        {"event": "mfa_fsm.one", "flow_ref": "abc", "log_level": "info"},
        {"event": "mfa_fsm.two", "provider": "entrust", "log_level": "warning"},
    ]
    assert second == [{"event": "mfa_fsm.three", "log_level": "error"}]


def test_a_short_key_is_refused_and_the_old_one_kept(shared_key: object) -> None:
    """A key under 16 bytes raises UsageError and changes nothing."""
    ref = flow_ref("flow-1")
    with pytest.raises(UsageError, match="at least 16 bytes"):
        set_log_key("short")
    assert flow_ref("flow-1") == ref


def test_without_a_key_each_process_has_its_own() -> None:
    """With no key configured, two processes give one id two references."""
    env = {k: v for k, v in os.environ.items() if k != "MFA_FSM_LOG_KEY"}
    code = "import mfa_fsm; print(mfa_fsm.flow_ref('flow-1'))"
    refs = {
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(refs) == 2
