"""``extra_headers`` in every provider's configuration reaches the IdP on every call, over
real HTTP to the emulators, without writing a Transport; malformed or reserved headers are
refused with a typed error that never shows the value."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mfa_fsm import (
    CyberArkConfig,
    Engine,
    EntrustConfig,
    InvalidInput,
    MemoryStore,
    VerifiedUser,
)
from mfa_fsm.core.transport_async import HttpxTransport
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator
from mfa_fsm.testing.duo import DuoEmulator

EXTRA = {"X-Gateway-Key": "gw-5f3a", "X-Route": "eu-1"}


def calls_carry_extra(calls: list[Any]) -> None:
    assert calls, "the flow made no call"
    for call in calls:
        assert call.headers["x-gateway-key"] == "gw-5f3a"
        assert call.headers["x-route"] == "eu-1"


def test_entrust_sends_extra_headers_on_every_call() -> None:
    with EntrustEmulator() as emulator:
        config = EntrustConfig(
            base_url=emulator.base_url,
            application_id=emulator.application_id,
            poll_interval=0.0,
            extra_headers=EXTRA,
        )
        engine = Engine(MemoryStore(), [config])
        flow_id = engine.start("entrust", verified_user=VerifiedUser("jsmith")).flow_id
        engine.send(flow_id, "submit_first_factor")
        engine.send(flow_id, "select_second_factor", factor="TOKENPUSH")
        engine.send(flow_id, "poll")
        engine.send(flow_id, "cancel")
        calls_carry_extra(emulator.calls)
        assert len(emulator.calls) == 5


def test_cyberark_sends_extra_headers_and_both_native_client_headers() -> None:
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        config = CyberArkConfig(
            base_url=emulator.base_url, pod_scheme="http", poll_interval=0.0, extra_headers=EXTRA
        )
        engine = Engine(MemoryStore(), [config])
        flow_id = engine.start("cyberark", user="alice").flow_id
        view = engine.send(flow_id, "submit_first_factor", answer="alice-password")
        push = next(c.id for c in view.choices if "Mobile" in c.label)
        engine.send(flow_id, "select_second_factor", factor=push)
        engine.send(flow_id, "poll")
        calls_carry_extra(emulator.calls)
        actions = [c.body.get("Action") for c in emulator.calls]
        assert "StartOOB" in actions and "Poll" in actions
        for call in emulator.calls:
            assert call.headers["x-idap-native-client"] == "true"
            assert call.headers["x-centrify-native-client"] == "true"


def test_duo_sends_extra_headers_and_still_signs() -> None:
    with DuoEmulator() as emulator:
        creds = emulator.credentials
        config = DuoConfig(
            DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
            base_url=emulator.base_url,
            poll_interval=0.0,
            extra_headers=EXTRA,
        )
        engine = Engine(MemoryStore(), [config])
        view = engine.start("duo", verified_user=VerifiedUser("jsmith"))
        view = engine.send(view.flow_id, "submit_first_factor")
        assert view.state == "AwaitingSecondFactor"  # the signed calls were accepted
        calls_carry_extra(emulator.calls)


def test_the_async_driver_sends_them_too_and_duo_still_signs() -> None:
    """Over httpx (send_async), the extra headers travel as well, and Duo's signed body is sent
    byte for byte (its signature checks)."""
    with DuoEmulator() as emulator:
        creds = emulator.credentials
        config = DuoConfig(
            DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
            base_url=emulator.base_url,
            poll_interval=0.0,
            extra_headers=EXTRA,
        )

        async def steps() -> str:
            async with HttpxTransport() as transport:
                flow = await DuoFlow.start_async(
                    config=config, verified_user=VerifiedUser("jsmith"), transport=transport
                )
                view = await flow.send_async("submit_first_factor", client_ip="198.51.100.7")
                return view.state

        assert asyncio.run(steps()) == "AwaitingSecondFactor"
        calls_carry_extra(emulator.calls)
        assert all(call.status == 200 for call in emulator.calls)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "x"},
        {"cookie": "a=b"},
        {"Bad Name": "x"},
        {"X-Ok": "line\r\nInjected: 1"},
        [("X-A", "1"), ("x-a", "2")],
    ],
)
def test_bad_extra_headers_are_refused(headers: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        EntrustConfig(base_url="https://t.example", application_id="a", extra_headers=headers)
    assert caught.value.field == "extra_headers"
    assert "Injected" not in str(caught.value)


def test_an_x_duo_header_is_only_duo_s_business() -> None:
    """X-Duo-* names mean nothing to Entrust (sent like any other header); a Duo configuration
    refuses them, since Duo signs every X-Duo-* header and mfa_fsm signs none."""
    config = EntrustConfig(
        base_url="https://t.example", application_id="a", extra_headers={"X-Duo-Extra": "x"}
    )
    assert config.extra_headers == (("X-Duo-Extra", "x"),)
    credentials = DuoCredentials("DIXXXXXXXXXXXXXXXXXX", "s" * 40, "api-x.duosecurity.test")
    for name in ("X-Duo-Extra", "x-duo-date", "X-DUO-X"):
        with pytest.raises(InvalidInput) as caught:
            DuoConfig(credentials, extra_headers={name: "value-1f2e"})
        assert caught.value.field == "extra_headers"
        assert name in str(caught.value) and "value-1f2e" not in str(caught.value)
    # What every provider refuses, Duo refuses too; other names are fine.
    with pytest.raises(InvalidInput):
        DuoConfig(credentials, extra_headers={"Date": "x"})
    assert DuoConfig(credentials, extra_headers={"X-Duox": "1"}).extra_headers == (("X-Duox", "1"),)
