"""Who may start which Entrust flow: EXTERNAL only for a user the application vouches for."""

from __future__ import annotations

import pytest

from mfa_fsm import (
    CyberArkConfig,
    CyberArkFlow,
    EntrustConfig,
    EntrustFlow,
    InvalidInput,
    UsageError,
    VerifiedUser,
    VerifiedUserRequired,
)
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator
from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from mfa_fsm.testing.scripted import ScriptedTransport, json_reply


def config_for(emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(base_url=emulator.base_url, application_id=emulator.application_id)


def test_typed_user_id_never_reaches_external(entrust_emulator: EntrustEmulator) -> None:
    """A typed user_id for an EXTERNAL-only user raises VerifiedUserRequired (saying what to
    pass) after the query alone: EXTERNAL is never completed and no flow exists."""
    with pytest.raises(VerifiedUserRequired, match=r"verified_user=VerifiedUser\(user_id"):
        EntrustFlow.start(config=config_for(entrust_emulator), user="jsmith")
    assert [call.path.rsplit("/", 1)[-1] for call in entrust_emulator.calls] == ["users"]


def test_typed_user_id_with_external_asked_is_refused_before_any_call(
    entrust_emulator: EntrustEmulator,
) -> None:
    """first_factor="EXTERNAL" with a typed user_id is refused before the IdP is asked."""
    with pytest.raises(VerifiedUserRequired):
        EntrustFlow.start(
            config=config_for(entrust_emulator), user="jsmith", first_factor="EXTERNAL"
        )
    assert entrust_emulator.calls == []


def test_verified_user_runs_external_and_says_who_checked(
    entrust_emulator: EntrustEmulator,
) -> None:
    """A VerifiedUser runs EXTERNAL; the first-factor challenge says who checked it."""
    user = VerifiedUser("jsmith", checked_by="example.com password")
    flow = EntrustFlow.start(config=config_for(entrust_emulator), verified_user=user)
    assert flow.view().challenge is not None
    assert flow.view().challenge.prompt == "First factor checked by example.com password"
    assert flow.send("submit_first_factor").state == "AwaitingSecondFactor"


def test_password_user_may_be_typed(entrust_emulator: EntrustEmulator) -> None:
    """A typed user_id starts the password first factor, which IDaaS checks itself."""
    flow = EntrustFlow.start(config=config_for(entrust_emulator), user="pwuser")
    assert flow.view().challenge is not None
    assert flow.view().challenge.kind == "password"
    assert flow.send("submit_first_factor", answer="Passw0rd!").state == "AwaitingSecondFactor"


BOTH = {
    "authenticationTypes": ["EXTERNAL", "PASSWORD_AND_SECONDFACTOR"],
    "availableSecondFactor": ["TOKEN"],
    "token": "QUERYTOKEN",
}


def test_password_is_the_default_unless_the_app_vouched() -> None:
    """When IDaaS offers both, a typed id gets the password path, a VerifiedUser EXTERNAL."""
    config = EntrustConfig(base_url="https://idp.invalid", application_id="app")
    typed = EntrustFlow.start(
        config=config, user="pat", transport=ScriptedTransport([json_reply(BOTH)])
    )
    vouched = EntrustFlow.start(
        config=config,
        verified_user=VerifiedUser("pat"),
        transport=ScriptedTransport([json_reply(BOTH)]),
    )
    assert typed.snapshot().context.first_factor == "PASSWORD_AND_SECONDFACTOR"
    assert vouched.snapshot().context.first_factor == "EXTERNAL"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, InvalidInput, "user: is required"),
        ({"user": "a", "verified_user": VerifiedUser("a")}, UsageError, "not both"),
        ({"verified_user": "jsmith"}, UsageError, "must be a mfa_fsm.VerifiedUser"),
    ],
)
def test_naming_the_user_wrongly_is_a_usage_error(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    """No user, both kinds, or a plain string as verified_user: refused before any call."""
    config = EntrustConfig(base_url="https://idp.invalid", application_id="app")
    with pytest.raises(error, match=match):
        EntrustFlow.start(config=config, transport=ScriptedTransport([]), **options)  # type: ignore[arg-type]


def test_cyberark_takes_a_verified_user_too() -> None:
    """CyberArk checks every challenge itself; a VerifiedUser just names the user."""
    with CyberArkEmulator() as emulator:
        config = CyberArkConfig(base_url=emulator.base_url)
        flow = CyberArkFlow.start(config=config, verified_user=VerifiedUser("alice"))
        assert flow.snapshot().user_id == "alice"
        with pytest.raises(UsageError, match="not both"):
            CyberArkFlow.start(config=config, user="alice", verified_user=VerifiedUser("alice"))
        with pytest.raises(InvalidInput, match="user: is required"):
            CyberArkFlow.start(config=config)


def test_external_without_a_query_token_selects_with_the_user_id() -> None:
    """The query reply carries no ``token`` (as the seed's example reply): the EXTERNAL select
    that follows names the user (v5.46: ``userId`` "required for non-passwordless
    authenticators"), and the login completes over real HTTP."""
    with EntrustEmulator(query_tokens=False) as emulator:
        config = EntrustConfig(
            base_url=emulator.base_url, application_id=emulator.application_id, poll_interval=0.0
        )
        flow = EntrustFlow.start(config=config, verified_user=VerifiedUser("jsmith"))
        assert flow.snapshot().context.token is None
        assert flow.send("submit_first_factor").state == "AwaitingSecondFactor"
        (select,) = emulator.calls_to("/authenticate/EXTERNAL")[:1]
        assert select.body is not None and select.body["userId"] == "jsmith"
        assert "authToken" not in select.body
        flow.send("select_second_factor", factor="TOKEN")
        view = flow.send("submit_response", answer=DEMO_TOKEN_CODE)
        assert view.state == "Completed"
