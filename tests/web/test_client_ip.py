"""The web integration sends each browser's own address to Entrust, behind a proxy too."""

from __future__ import annotations

from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from mfa_fsm import Engine, EntrustConfig, MemoryStore
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.support.web import Client, make_app, serve

ALICE, BOB = "203.0.113.10", "198.51.100.20"


def addresses(emulator: EntrustEmulator, since: int) -> set[Any]:
    return {call.body.get("clientIp") for call in emulator.calls[since:] if call.body}


def test_each_browser_behind_a_proxy_sends_its_own_address(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Behind werkzeug's ProxyFix (one trusted proxy), the blueprint reads
    request.remote_addr, so every Entrust call of each step carries X-Forwarded-For's
    address of the browser whose step it was, two users interleaved."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    app = make_app(Engine(MemoryStore(), [config]), secure_cookies=False)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    entrust_emulator.add_user("ann", authenticators=("TOKEN",))
    with serve(app) as base:
        alice = Client(base, headers={"X-Forwarded-For": ALICE})
        bob = Client(base, headers={"X-Forwarded-For": f"192.0.2.99, {BOB}"})
        for client, user, ip in ((alice, "jsmith", ALICE), (bob, "ann", BOB)):
            since = len(entrust_emulator.calls)
            assert client.begin("entrust", user).status_code == 303
            assert addresses(entrust_emulator, since) == {ip}
        for step, form in (
            ("factor", {"factor": "TOKEN"}),
            ("response", {"response": DEMO_TOKEN_CODE}),
        ):
            for client, ip in ((alice, ALICE), (bob, BOB)):
                since = len(entrust_emulator.calls)
                assert client.step(step, **form).status_code == 303
                assert addresses(entrust_emulator, since) == {ip}
        assert "You are signed in" in alice.get(alice.flow_url).text
        assert "You are signed in" in bob.get(bob.flow_url).text


def test_without_a_proxy_the_connection_address_is_sent(
    entrust_emulator: EntrustEmulator,
) -> None:
    """Without ProxyFix a forged X-Forwarded-For is ignored: the peer's address is sent."""
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    with serve(make_app(Engine(MemoryStore(), [config]), secure_cookies=False)) as base:
        client = Client(base, headers={"X-Forwarded-For": ALICE})
        client.begin("entrust", "jsmith")
    assert addresses(entrust_emulator, 0) == {"127.0.0.1"}
