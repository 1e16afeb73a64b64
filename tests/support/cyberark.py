"""Helpers of the CyberArk tests: a settable clock, the emulator's config, choosing a mechanism."""

from __future__ import annotations

from typing import Any

from mfa_fsm import CyberArkConfig, FlowView
from mfa_fsm.core.retry import NO_RETRY
from mfa_fsm.testing import CyberArkEmulator

TENANT = "ABC1234"


class Clock:
    """The flows' clock, moved by hand so deadlines pass without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config_for(emulator: CyberArkEmulator, **overrides: Any) -> CyberArkConfig:
    """A config for the emulator: plain-HTTP pods, polls allowed at once, and no in-step
    retries, so that each injected fault reaches the flow (retries have their own test)."""
    settings: dict[str, Any] = {
        "base_url": emulator.base_url,
        "tenant_id": TENANT,
        "pod_scheme": "http",
        "poll_interval": 0.0,
        "retry": NO_RETRY,
    }
    settings.update(overrides)
    return CyberArkConfig(**settings)


def pick(view: FlowView, label: str) -> str:
    """The id of the offered mechanism whose label starts with ``label``."""
    for choice in view.choices:
        if choice.label.startswith(label):
            return choice.id
    raise AssertionError(f"no choice labelled {label!r} in {[c.label for c in view.choices]}")
