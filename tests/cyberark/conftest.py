"""Fixtures of the CyberArk tests: the emulator, a settable clock, and a stateless login."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mfa_fsm import CyberArkFlow
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.leaks import SecretRecorder
from tests.support.cyberark import Clock, config_for
from tests.support.stateless import StatelessClient


@pytest.fixture
def cyberark_emulator() -> Iterator[CyberArkEmulator]:
    """A fresh CyberArk emulator with the demo users; its PodFqdn values are loopback URLs."""
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        yield emulator


@pytest.fixture
def clock() -> Clock:
    return Clock()


Login = Callable[..., StatelessClient]


@pytest.fixture
def login(cyberark_emulator: CyberArkEmulator, recorder: SecretRecorder, clock: Clock) -> Login:
    """Start a flow for a demo user; every later step restores it from JSON."""

    def start(user: str = "alice", **overrides: Any) -> StatelessClient:
        config = config_for(cyberark_emulator, **overrides)
        flow = CyberArkFlow.start(config=config, user=user, transport=recorder, clock=clock)
        return StatelessClient(flow, config=config, transport=recorder, clock=clock)

    return start
