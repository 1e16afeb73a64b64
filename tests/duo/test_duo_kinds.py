"""``select_second_factor(factor=<kind>)`` against the Duo emulator, over real HTTP: a kind
names the one offered device capability of that kind, and several are refused by id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mfa_fsm.core.errors import InvalidInput
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.duo import DuoFlow
from mfa_fsm.testing.duo import DuoEmulator, DuoEmulatorDevice
from mfa_fsm.testing.leaks import SecretRecorder
from tests.duo.test_duo_e2e import CLIENT_IP, PHONE, AtAddress, Clock, config_for, to_picker


@pytest.fixture
def emulator() -> Iterator[DuoEmulator]:
    with DuoEmulator() as running:
        yield running


def login(emulator: DuoEmulator, recorder: SecretRecorder, user: str = "jsmith") -> AtAddress:
    clock = Clock()
    config = config_for(emulator)
    flow = DuoFlow.start(
        config=config,
        verified_user=VerifiedUser(user),
        transport=recorder,
        clock=clock,
        client_ip=CLIENT_IP,
    )
    return AtAddress(flow, config=config, transport=recorder, clock=clock)


@pytest.mark.parametrize(
    ("kind", "chosen", "state"),
    [
        ("push", f"push:{PHONE}", "OobPending"),
        ("call", f"phone:{PHONE}", "OobPending"),
        ("sms", f"sms:{PHONE}", "SecondFactorSelected"),
        ("token", "passcode", "SecondFactorSelected"),
    ],
)
def test_a_kind_picks_the_one_choice_of_that_kind(
    emulator: DuoEmulator, recorder: SecretRecorder, kind: str, chosen: str, state: str
) -> None:
    """Duo's device ids are opaque; ``factor="push"`` (or call, sms, token) picks the device."""
    client = login(emulator, recorder)
    to_picker(client)
    view = client.send("select_second_factor", factor=kind)
    assert view.state == state
    assert view.challenge is not None and view.challenge.factor == chosen


def test_a_kind_offered_twice_is_refused_with_the_ids(
    emulator: DuoEmulator, recorder: SecretRecorder
) -> None:
    """Two phones both push: ``factor="push"`` is InvalidInput listing both choice ids, before
    any call to Duo, and the flow is unchanged; one id then works."""
    phones = [
        DuoEmulatorDevice(f"DP{n}000000000000000{n}", "phone", ("push",), display_name=f"Phone {n}")
        for n in (1, 2)
    ]
    emulator.add_user("twophones", devices=phones)
    client = login(emulator, recorder, "twophones")
    to_picker(client)
    before, calls = client.saved, len(emulator.calls)
    with pytest.raises(InvalidInput) as caught:
        client.send("select_second_factor", factor="push")
    assert caught.value.field == "factor"
    assert "push:DP10000000000000001, push:DP20000000000000002" in str(caught.value)
    assert (client.saved, len(emulator.calls)) == (before, calls)
    view = client.send("select_second_factor", factor="push:DP20000000000000002")
    assert view.state == "OobPending"
