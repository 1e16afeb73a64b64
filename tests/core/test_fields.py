"""The shared event fields: the deprecated names on every entry point, and factor kinds.

Every old name warns (DeprecationWarning naming the new field, attributed to the caller's
line) and behaves exactly as the new one, on the Flow API (``start`` and ``send``), the
``Engine`` and the ``SealedEngine``, over real HTTP to the Entrust emulator.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mfa_fsm import (
    DuoConfig,
    DuoCredentials,
    DuoFlow,
    Engine,
    EntrustConfig,
    EntrustFlow,
    InvalidInput,
    MemoryStore,
    SealedEngine,
    VerifiedUserRequired,
)
from mfa_fsm.core.fields import RENAMED_FIELDS, neutral_fields, resolve_factor
from mfa_fsm.core.snapshot import Choice, FlowView, Snapshot
from mfa_fsm.core.transport_async import HttpxTransport
from mfa_fsm.stores.sealed import SealedState
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE

KEY = bytes(range(32))


@pytest.fixture
def config(entrust_emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen


def deprecations(seen: list[warnings.WarningMessage]) -> list[str]:
    found = [w for w in seen if issubclass(w.category, DeprecationWarning)]
    # Each warning points at the caller's own line, not at mfa_fsm's code.
    assert all(w.filename == __file__ for w in found), [w.filename for w in found]
    return [str(w.message) for w in found]


Login = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], FlowView]


def flow_api(config: EntrustConfig) -> Login:
    def login(start: dict[str, Any], first: dict[str, Any], code: dict[str, Any]) -> FlowView:
        flow = EntrustFlow.start(config=config, **start)
        flow.send("submit_first_factor", **first)
        flow.send("select_second_factor", factor="TOKEN")
        return flow.send("submit_response", **code)

    return login


def async_flow_api(config: EntrustConfig) -> Login:
    """The Flow API awaited (start_async / send_async over httpx): the warnings still point
    at the caller's line, not at the event loop."""

    def login(start: dict[str, Any], first: dict[str, Any], code: dict[str, Any]) -> FlowView:
        async def steps() -> FlowView:
            async with HttpxTransport() as transport:
                flow = await EntrustFlow.start_async(config=config, transport=transport, **start)
                await flow.send_async("submit_first_factor", **first)
                await flow.send_async("select_second_factor", factor="TOKEN")
                return await flow.send_async("submit_response", **code)

        return asyncio.run(steps())

    return login


def engine_api(config: EntrustConfig) -> Login:
    engine = Engine(MemoryStore(), [config])

    def login(start: dict[str, Any], first: dict[str, Any], code: dict[str, Any]) -> FlowView:
        flow_id = engine.start("entrust", **start).flow_id
        engine.send(flow_id, "submit_first_factor", **first)
        engine.send(flow_id, "select_second_factor", factor="TOKEN")
        return engine.send(flow_id, "submit_response", **code)

    return login


def sealed_api(config: EntrustConfig) -> Login:
    engine = SealedEngine(SealedState({"k": KEY}), [config])

    def login(start: dict[str, Any], first: dict[str, Any], code: dict[str, Any]) -> FlowView:
        view, token = engine.start("entrust", **start)
        _, token = engine.send(token, view.flow_id, "submit_first_factor", **first)
        _, token = engine.send(token, view.flow_id, "select_second_factor", factor="TOKEN")
        view, _ = engine.send(token, view.flow_id, "submit_response", **code)
        return view

    return login


@pytest.mark.parametrize("entry", [flow_api, async_flow_api, engine_api, sealed_api])
def test_old_names_warn_and_behave_as_the_new_ones(
    entry: Callable[[EntrustConfig], Login],
    config: EntrustConfig,
    caught: list[warnings.WarningMessage],
) -> None:
    """user_id=, password= and response= each warn once, naming the new field, and log in
    exactly as user=, answer= and answer= do."""
    login = entry(config)
    new = login({"user": "pwuser"}, {"answer": "Passw0rd!"}, {"answer": DEMO_TOKEN_CODE})
    assert deprecations(caught) == []
    old = login({"user_id": "pwuser"}, {"password": "Passw0rd!"}, {"response": DEMO_TOKEN_CODE})
    messages = deprecations(caught)
    assert len(messages) == 3
    assert "user_id= of start is deprecated" in messages[0] and "use user=" in messages[0]
    assert "password= of 'submit_first_factor'" in messages[1] and "use answer=" in messages[1]
    assert "response= of 'submit_response'" in messages[2] and "use answer=" in messages[2]
    assert (old.state, old.provider, old.result is not None) == ("Completed", "entrust", True)
    assert (new.state, new.version) == (old.state, old.version)
    assert new.result is not None and old.result is not None
    assert new.result.user_id == old.result.user_id == "pwuser"


def test_an_old_and_a_new_name_together_are_refused(
    config: EntrustConfig, caught: list[warnings.WarningMessage]
) -> None:
    """Both names of one field are InvalidInput before any IdP call; nothing changes."""
    with pytest.raises(InvalidInput, match=r"^user_id: is the old name of user"):
        EntrustFlow.start(config=config, user="pwuser", user_id="pwuser")
    flow = EntrustFlow.start(config=config, user="pwuser")
    with pytest.raises(InvalidInput, match=r"^password: is the old name of answer"):
        flow.send("submit_first_factor", answer="Passw0rd!", password="Passw0rd!")
    assert flow.version == 0
    engine = Engine(MemoryStore(), [config])
    with pytest.raises(InvalidInput, match=r"^response: is the old name of answer"):
        engine.send("f" * 32, "submit_response", answer="1", response="1")


def test_duo_start_takes_the_old_name_too(caught: list[warnings.WarningMessage]) -> None:
    """Duo refuses a typed user under either name, the same way, after the same warning."""
    credentials = DuoCredentials("DIWJ8X6AEYOR5OMC6TQ1", "s" * 40, "api-x.duosecurity.test")
    config = DuoConfig(credentials=credentials)
    with pytest.raises(VerifiedUserRequired):
        DuoFlow.start(config=config, user_id="jsmith")
    assert len(deprecations(caught)) == 1
    with pytest.raises(VerifiedUserRequired):
        DuoFlow.start(config=config, user="jsmith")
    assert len(deprecations(caught)) == 1


def test_the_renames_are_the_documented_ones() -> None:
    assert RENAMED_FIELDS == {
        "start": {"user_id": "user"},
        "submit_first_factor": {"password": "answer"},
        "submit_response": {"response": "answer"},
    }
    assert neutral_fields("poll", {"response": "x"}) == {"response": "x"}  # not renamed there
    assert neutral_fields(7, {"a": 1}) == {"a": 1}  # type: ignore[arg-type]


# -- factor kinds -----------------------------------------------------------------------------


def picker(*choices: Choice) -> Snapshot:
    return Snapshot(
        provider="entrust",
        flow_id="f",
        user_id="u",
        state="AwaitingSecondFactor",
        version=1,
        created_at=0.0,
        deadline=1e12,
        context=None,
        choices=choices,
    )


OTP = Choice(id="OTP", kind="otp", label="Code", deliveries=("SMS", "EMAIL", "VOICE"))
TOKEN = Choice(id="TOKEN", kind="token", label="Token")
PUSH = Choice(id="TOKENPUSH", kind="push", label="Push")
LOCKED_PUSH = Choice(id="FACE", kind="push", label="Face", supported=False)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"factor": "TOKEN"}, {"factor": "TOKEN"}),  # an id stays
        ({"factor": "token"}, {"factor": "TOKEN"}),  # a kind becomes the id
        ({"factor": "push"}, {"factor": "TOKENPUSH"}),  # an unsupported one does not count
        ({"factor": "sms"}, {"factor": "OTP", "delivery": "SMS"}),  # a channel, and delivery
        ({"factor": "sms", "delivery": "SMS"}, {"factor": "OTP", "delivery": "SMS"}),  # agree
        ({"factor": "Token"}, {"factor": "Token"}),  # kinds are lower case: the handler refuses
        ({"factor": "grid"}, {"factor": "grid"}),  # no such kind offered: the handler refuses
        ({"factor": 5}, {"factor": 5}),
        ({}, {}),
    ],
)
def test_a_kind_resolves_to_the_one_offered_choice(
    data: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert resolve_factor(picker(OTP, TOKEN, PUSH, LOCKED_PUSH), data) == expected


def test_a_channel_kind_and_another_delivery_are_refused() -> None:
    """factor="voice" with delivery="SMS" (or "sms" with "VOICE"): the two fields disagree,
    so neither is guessed; nothing is sent."""
    for factor, delivery in (("voice", "SMS"), ("sms", "VOICE")):
        with pytest.raises(InvalidInput, match=rf"^delivery: '{delivery}' contradicts"):
            resolve_factor(picker(OTP, TOKEN), {"factor": factor, "delivery": delivery})


def test_a_kind_offered_twice_lists_the_ids() -> None:
    other = Choice(id="TOKENCR", kind="token", label="Challenge")
    with pytest.raises(
        InvalidInput, match=r"^factor: 'token' matches 2 offered choices.*TOKEN, TOKENCR$"
    ):
        resolve_factor(picker(TOKEN, other), {"factor": "token"})


def test_an_entrust_otp_by_channel_over_http(
    config: EntrustConfig, entrust_emulator: EntrustEmulator
) -> None:
    """``factor="email"`` on Entrust selects OTP delivered by e-mail, and its code completes."""
    flow = EntrustFlow.start(config=config, user="pwuser")
    flow.send("submit_first_factor", answer="Passw0rd!")
    view = flow.send("select_second_factor", factor="email")
    assert view.state == "SecondFactorSelected"
    assert view.challenge is not None
    assert (view.challenge.factor, view.challenge.delivery) == ("OTP", "EMAIL")
    view = flow.send("submit_response", answer=entrust_emulator.last_otp("pwuser"))
    assert view.state == "Completed"
