"""A provider defined in one test module (tests/toy_provider.py) runs on the engine unchanged,
and ``mfa-fsm verify`` passes it: a new IdP needs nothing outside its own module."""

from __future__ import annotations

import io

import pytest

from mfa_fsm.cli import main
from mfa_fsm.core.errors import IdpReplyError
from mfa_fsm.core.http import HttpResponse
from mfa_fsm.verify import verify_flow
from tests.toy_provider import PASSWORD_PATH, ToyConfig, ToyFlow, ToyIdp, parse_reply


def test_verify_passes_the_toy_provider() -> None:
    """Its table and its @on declarations agree on every rule."""
    assert verify_flow(ToyFlow) == []


def test_the_cli_verifies_a_flow_named_by_module_and_class() -> None:
    """A third-party provider checks its own flow class from the shell."""
    out = io.StringIO()
    assert main(["verify", "tests.toy_provider:ToyFlow"], stdout=out) == 0
    assert "toyidp (ToyFlow): 6 states, 19 rows (19 transitions), 5 handlers: ok" in out.getvalue()


def test_a_code_login_runs_through_the_engine() -> None:
    """Password, a wrong code, the right code: Completed with the IdP's token, each step
    restored from JSON as a stateless request would."""
    idp, config = ToyIdp(), ToyConfig()
    flow = ToyFlow.start(config=config, user="pat", transport=idp)
    assert flow.send("submit_first_factor", answer="hunter2").state == "AwaitingSecondFactor"
    assert [choice.id for choice in flow.view().choices] == ["code", "push"]
    flow = ToyFlow.restore(flow.snapshot().to_json(), config=config, transport=idp)
    assert flow.send("select_second_factor", factor="code").state == "SecondFactorSelected"
    view = flow.send("submit_response", answer="000000" if idp.code != "000000" else "111111")
    assert view.state == "SecondFactorSelected" and view.challenge is not None
    assert view.challenge.rejected
    view = flow.send("submit_response", answer=idp.code)
    assert (view.state, view.version) == ("Completed", 4)
    assert flow.snapshot().result is not None and flow.snapshot().result.token == "toy-token"


def test_a_push_is_polled_until_approved() -> None:
    clock = [1000.0]
    idp, config = ToyIdp(), ToyConfig()
    flow = ToyFlow.start(config=config, user="pat", transport=idp, clock=lambda: clock[0])
    flow.send("submit_first_factor", answer="hunter2")
    assert flow.send("select_second_factor", factor="push").state == "OobPending"
    calls = len(idp.calls)
    assert flow.send("poll").version == 2  # too early: no call, no step
    assert len(idp.calls) == calls
    clock[0] += 1
    assert flow.send("poll").state == "OobPending"
    (txn,) = idp.pushes
    idp.pushes[txn] = "ok"
    clock[0] += 1
    assert flow.send("poll").state == "Completed"


def test_three_wrong_passwords_lock_the_user() -> None:
    idp = ToyIdp()
    flow = ToyFlow.start(config=ToyConfig(), user="pat", transport=idp)
    for _ in range(2):
        assert flow.send("submit_first_factor", answer="nope").state == "AwaitingFirstFactor"
    view = flow.send("submit_first_factor", answer="nope")
    assert (view.state, view.failure) == ("Failed", "locked")


@pytest.mark.parametrize("body", [b"{}", b'{"result": "maybe"}', b'{"result": "ok", "factors": 3}'])
def test_an_unknown_reply_is_a_reply_error(body: bytes) -> None:
    """The toy's reply parser is pure: a response in, a reply or a typed error out."""
    response = HttpResponse(200, {"Content-Type": "application/json"}, body)
    with pytest.raises(IdpReplyError):
        parse_reply(response, PASSWORD_PATH)
