"""A provider defined in one test module (tests/toy_provider.py) runs on the engine unchanged,
registered through the same registry as the built-in ones, over both drivers (sync and
async), and ``mfa-fsm verify`` passes it: a new IdP needs nothing outside its own module."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from mfa_fsm import MemoryStore
from mfa_fsm.cli import main
from mfa_fsm.core.errors import IdpReplyError
from mfa_fsm.core.http import HttpResponse
from mfa_fsm.core.registry import (
    provider_flow,
    provider_names,
    register_provider,
    unregister_provider,
)
from mfa_fsm.engine import Engine
from mfa_fsm.verify import verify_flow
from tests.support.stateless import Driver
from tests.toy_provider import PASSWORD_PATH, ToyConfig, ToyFlow, ToyIdp, parse_reply


@pytest.fixture
def registered() -> Iterator[type[ToyFlow]]:
    """The toy provider in the registry, as a separate package's entry point would put it."""
    register_provider(ToyFlow)
    try:
        yield ToyFlow
    finally:
        unregister_provider(ToyFlow.provider)


def test_the_registry_finds_it_and_the_engine_runs_it(registered: type[ToyFlow]) -> None:
    """Registered, it is a provider like the others: listed, looked up by name, and run by
    an Engine given only its configuration, through the store like any flow."""
    assert ToyFlow.provider in provider_names()
    assert provider_flow(ToyFlow.provider) is ToyFlow
    idp = ToyIdp()
    engine = Engine(MemoryStore(), [ToyConfig()], transport=idp)
    view = engine.start(ToyFlow.provider, user="pat")
    view = engine.send(view.flow_id, "submit_first_factor", answer="hunter2")
    view = engine.send(view.flow_id, "select_second_factor", factor="code")
    view = engine.send(view.flow_id, "submit_response", answer=idp.code)
    assert view.state == "Completed"
    result = engine.hand_off(view.flow_id).result
    assert result is not None and result.token == "toy-token"


def test_the_cli_lists_it_for_verify_once_registered(registered: type[ToyFlow]) -> None:
    out = io.StringIO()
    assert main(["verify", ToyFlow.provider], stdout=out) == 0
    assert "toyidp (ToyFlow)" in out.getvalue()


def test_verify_passes_the_toy_provider() -> None:
    """Its table and its @on declarations agree on every rule."""
    assert verify_flow(ToyFlow) == []


def test_the_cli_verifies_a_flow_named_by_module_and_class() -> None:
    """A third-party provider checks its own flow class from the shell."""
    out = io.StringIO()
    assert main(["verify", "tests.toy_provider:ToyFlow"], stdout=out) == 0
    assert "toyidp (ToyFlow): 6 states, 19 rows (19 transitions), 5 handlers: ok" in out.getvalue()


def test_a_code_login_runs_through_the_engine(driver: Driver) -> None:
    """Password, a wrong code, the right code: Completed with the IdP's token, each step
    restored from JSON as a stateless request would; the same handlers over either driver."""
    idp, config = ToyIdp(), ToyConfig()
    flow = driver.start(ToyFlow, config=config, user="pat", transport=idp)
    view = driver.send(flow, "submit_first_factor", answer="hunter2")
    assert view.state == "AwaitingSecondFactor"
    assert [choice.id for choice in flow.view().choices] == ["code", "push"]
    flow = ToyFlow.restore(flow.snapshot().to_json(), config=config, transport=idp)
    view = driver.send(flow, "select_second_factor", factor="code")
    assert view.state == "SecondFactorSelected"
    wrong = "000000" if idp.code != "000000" else "111111"
    view = driver.send(flow, "submit_response", answer=wrong)
    assert view.state == "SecondFactorSelected" and view.challenge is not None
    assert view.challenge.rejected
    view = driver.send(flow, "submit_response", answer=idp.code)
    assert (view.state, view.version) == ("Completed", 4)
    assert flow.snapshot().result is not None and flow.snapshot().result.token == "toy-token"


def test_a_push_is_polled_until_approved(driver: Driver) -> None:
    clock = [1000.0]
    idp, config = ToyIdp(), ToyConfig()
    flow = driver.start(ToyFlow, config=config, user="pat", transport=idp, clock=lambda: clock[0])
    driver.send(flow, "submit_first_factor", answer="hunter2")
    assert driver.send(flow, "select_second_factor", factor="push").state == "OobPending"
    calls = len(idp.calls)
    assert driver.send(flow, "poll").version == 2  # too early: no call, no step
    assert len(idp.calls) == calls
    clock[0] += 1
    assert driver.send(flow, "poll").state == "OobPending"
    (txn,) = idp.pushes
    idp.pushes[txn] = "ok"
    clock[0] += 1
    assert driver.send(flow, "poll").state == "Completed"


def test_three_wrong_passwords_lock_the_user(driver: Driver) -> None:
    idp = ToyIdp()
    flow = driver.start(ToyFlow, config=ToyConfig(), user="pat", transport=idp)
    for _ in range(2):
        view = driver.send(flow, "submit_first_factor", answer="nope")
        assert view.state == "AwaitingFirstFactor"
    view = driver.send(flow, "submit_first_factor", answer="nope")
    assert (view.state, view.failure) == ("Failed", "locked")


@pytest.mark.parametrize("body", [b"{}", b'{"result": "maybe"}', b'{"result": "ok", "factors": 3}'])
def test_an_unknown_reply_is_a_reply_error(body: bytes) -> None:
    """The toy's reply parser is pure: a response in, a reply or a typed error out."""
    response = HttpResponse(200, {"Content-Type": "application/json"}, body)
    with pytest.raises(IdpReplyError):
        parse_reply(response, PASSWORD_PATH)
