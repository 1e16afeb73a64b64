"""Every policy default pinned: retries, polling, claims, sealed-state age and store margins.

A default is part of the public contract (the README lists them); changing one must be a
decision, so each is asserted here by value.
"""

from __future__ import annotations

import inspect

from mfa_fsm import CyberArkConfig, EntrustConfig
from mfa_fsm.core.polling import PollSchedule
from mfa_fsm.core.retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy
from mfa_fsm.engine import DEFAULT_CLAIM_TTL, Engine
from mfa_fsm.stores.base import DEFAULT_MARGIN, RecordStore
from mfa_fsm.stores.sealed import DEFAULT_MAX_AGE, SealedState


def test_retry_defaults() -> None:
    """Three tries within four seconds of waiting, back-off from 0.2 s capped at 2 s."""
    assert RetryPolicy() == DEFAULT_RETRY
    assert (DEFAULT_RETRY.attempts, DEFAULT_RETRY.first_delay) == (3, 0.2)
    assert (DEFAULT_RETRY.max_delay, DEFAULT_RETRY.budget) == (2.0, 4.0)
    assert NO_RETRY.attempts == 1


def test_poll_defaults() -> None:
    """Poll every second; after failures back off up to a minute."""
    assert (PollSchedule().interval, PollSchedule().max_backoff) == (1.0, 60.0)


def test_entrust_config_defaults() -> None:
    config = EntrustConfig(base_url="https://idp.example", application_id="app")
    assert (config.poll_interval, config.max_poll_backoff) == (1.0, 60.0)
    assert (config.push_lifetime, config.flow_lifetime) == (300.0, 900.0)
    assert config.retry == DEFAULT_RETRY


def test_cyberark_config_defaults() -> None:
    config = CyberArkConfig(base_url="https://tenant.example")
    assert (config.pod_scheme, config.max_redirects) == ("https", 4)
    assert (config.poll_interval, config.max_poll_backoff) == (1.0, 60.0)
    assert (config.oob_lifetime, config.flow_lifetime) == (300.0, 600.0)
    assert config.retry == DEFAULT_RETRY
    assert config.poll_schedule == PollSchedule(interval=1.0, max_backoff=60.0)


def test_claim_and_age_defaults() -> None:
    """A claim lasts a minute; a sealed token an hour at most; stores keep 5 minutes of slack."""
    assert DEFAULT_CLAIM_TTL == 60.0
    assert inspect.signature(Engine).parameters["claim_ttl"].default == DEFAULT_CLAIM_TTL
    assert DEFAULT_MAX_AGE == 3600.0 and DEFAULT_MARGIN == 300.0
    sealed = SealedState({"k": bytes(32)})
    assert (sealed.max_age, sealed.margin) == (DEFAULT_MAX_AGE, DEFAULT_MARGIN)
    assert inspect.signature(RecordStore.__init__).parameters["margin"].default == 300.0
