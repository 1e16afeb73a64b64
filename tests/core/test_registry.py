"""The provider registry: entry points, direct registration, and who discovers providers."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import attrs
import pytest

from mfa_fsm import CyberArkFlow, DuoFlow, EntrustFlow, MemoryStore, UsageError
from mfa_fsm.cli import main
from mfa_fsm.core import registry
from mfa_fsm.core.flow import Clock, Flow, FlowMachine, Outcome, on, rows, states
from mfa_fsm.core.http import Transport
from mfa_fsm.core.inputs import secret_text
from mfa_fsm.core.outcomes import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    OOB_PENDING,
    REJECTED,
    RESPONSE_DUE,
    SECOND_FACTOR_DUE,
)
from mfa_fsm.core.registry import (
    ENTRY_POINT_GROUP,
    flow_for_config,
    provider_flow,
    provider_names,
    register_provider,
    unregister_provider,
)
from mfa_fsm.core.snapshot import Challenge, Result, Snapshot
from mfa_fsm.engine import Engine
from mfa_fsm.web import events
from tests.support.web import PREFIX, Visitor, make_app

# -- a toy provider: a password checked by the "IdP" itself, no HTTP -----------------------


@attrs.frozen
class ToyConfig:
    password: str = "toy-password"
    flow_lifetime: float = 300.0


class ToyClient:
    def __init__(self, config: ToyConfig) -> None:
        self.config = config


@attrs.frozen
class ToyContext:
    tries: int = 0


class ToyMachine(FlowMachine):
    (
        AwaitingFirstFactor,
        AwaitingSecondFactor,
        SecondFactorSelected,
        OobPending,
        Completed,
        Failed,
    ) = states()

    submit_first_factor = rows(
        AwaitingFirstFactor,
        # SECOND_FACTOR_DUE is never said by the toy: every shared state needs a way in.
        {
            COMPLETED: Completed,
            REJECTED: AwaitingFirstFactor,
            SECOND_FACTOR_DUE: AwaitingSecondFactor,
        },
    )
    select_second_factor = rows(AwaitingSecondFactor, {RESPONSE_DUE: SecondFactorSelected})
    submit_response = rows(SecondFactorSelected, {OOB_PENDING: OobPending})
    poll = rows(OobPending, {COMPLETED: Completed})
    cancel = rows(
        (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected, OobPending),
        {CANCELLED: Failed},
    )
    expire = rows(
        (AwaitingFirstFactor, AwaitingSecondFactor, SecondFactorSelected, OobPending),
        {EXPIRED: Failed},
    )


class ToyFlow(Flow):
    provider: ClassVar[str] = "toy-idp"
    label: ClassVar[str] = "Toy IdP"
    machine = ToyMachine
    context_type = ToyContext
    config_type = ToyConfig
    client_type = ToyClient
    config: ToyConfig

    @classmethod
    def opening(
        cls,
        *,
        config: ToyConfig,
        user: str | None = None,
        verified_user: object = None,
        transport: Transport | None = None,
        clock: Clock = time.time,
        throttle: object = None,
        client_ip: str | None = None,
    ) -> ToyFlow:
        now = clock()
        snapshot = Snapshot(
            provider=cls.provider,
            flow_id=uuid.uuid4().hex,
            user_id=user or "",
            state="AwaitingFirstFactor",
            version=0,
            created_at=now,
            deadline=now + config.flow_lifetime,
            challenge=Challenge(factor="PASSWORD", kind="password", prompt="Password"),
            context=ToyContext(),
        )
        return cls(snapshot, config=config, transport=transport or _NoCalls(), clock=clock)

    @on(ToyMachine.submit_first_factor, outcomes=[COMPLETED, REJECTED])
    def _on_submit_first_factor(self, snapshot: Snapshot, now: float, answer: str) -> Outcome:
        if secret_text("answer", answer) == self.config.password:
            return Outcome(COMPLETED, {"result": Result(user_id=snapshot.user_id)})
        challenge = attrs.evolve(snapshot.challenge, rejected=True)
        return Outcome(REJECTED, {"challenge": challenge, "context": ToyContext(tries=1)})

    @on(ToyMachine.select_second_factor, outcomes=[RESPONSE_DUE])
    def _on_select_second_factor(self, snapshot: Snapshot, now: float, factor: str) -> Outcome:
        raise AssertionError("not reached")

    @on(ToyMachine.submit_response, outcomes=[OOB_PENDING])
    def _on_submit_response(self, snapshot: Snapshot, now: float, answer: str) -> Outcome:
        raise AssertionError("not reached")

    @on(ToyMachine.poll, outcomes=[COMPLETED])
    def _on_poll(self, snapshot: Snapshot, now: float) -> Outcome:
        raise AssertionError("not reached")

    @on(ToyMachine.cancel, outcomes=[CANCELLED])
    def _on_cancel(self, snapshot: Snapshot, now: float) -> Outcome:
        return Outcome(CANCELLED, {"failure": "cancelled"})


class _NoCalls:
    def send(self, request: Any) -> Any:
        raise AssertionError("the toy provider calls nothing")


@pytest.fixture
def toy() -> Iterator[type[ToyFlow]]:
    register_provider(ToyFlow)
    try:
        yield ToyFlow
    finally:
        unregister_provider(ToyFlow.provider)


# -- the entry points ---------------------------------------------------------------------


def test_the_package_declares_its_three_providers_as_entry_points() -> None:
    """pyproject.toml declares entrust, cyberark and duo; each loads its flow class."""
    declared = {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared["entrust"] == "mfa_fsm.entrust.flow:EntrustFlow"
    assert declared["cyberark"] == "mfa_fsm.cyberark.flow:CyberArkFlow"
    assert declared["duo"] == "mfa_fsm.duo.flow:DuoFlow"
    assert {"cyberark", "duo", "entrust"} <= set(provider_names())
    assert provider_flow("entrust") is EntrustFlow
    assert provider_flow("cyberark") is CyberArkFlow
    assert provider_flow("duo") is DuoFlow


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))\n"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(run.stdout.split())


def test_listing_providers_imports_none_and_a_lookup_imports_one() -> None:
    """provider_names() reads entry points only; a lookup imports that provider alone."""
    listed = loaded_after("from mfa_fsm.core.registry import provider_names\nprovider_names()")
    assert not {m for m in listed if m.startswith(("mfa_fsm.entrust", "mfa_fsm.cyberark"))}
    assert "mfa_fsm.duo" not in listed
    one = loaded_after("from mfa_fsm.core.registry import provider_flow\nprovider_flow('duo')")
    assert "mfa_fsm.duo.flow" in one
    assert not {m for m in one if m.startswith(("mfa_fsm.entrust", "mfa_fsm.cyberark"))}


def test_an_engine_for_one_provider_imports_only_that_one() -> None:
    """Engine(store, [EntrustConfig]) finds the Entrust flow without importing the others."""
    loaded = loaded_after(
        "from mfa_fsm import Engine, EntrustConfig, MemoryStore\n"
        "config = EntrustConfig(base_url='https://idp.invalid', application_id='a')\n"
        "assert Engine(MemoryStore(), [config]).providers == ('entrust',)"
    )
    assert "mfa_fsm.entrust.flow" in loaded
    assert not {m for m in loaded if m.startswith(("mfa_fsm.cyberark", "mfa_fsm.duo"))}


def test_an_unknown_provider_is_a_usage_error_listing_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"no identity provider is called 'okta'.*'entrust'"):
        provider_flow("okta")
    with pytest.raises(UsageError, match=r"called \?"):
        provider_flow("x" * 100)
    with pytest.raises(UsageError, match="no provider takes a ToyConfig"):
        flow_for_config(ToyConfig())


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("broken", "mfa_fsm_no_such_module:Flow", "does not load: ModuleNotFoundError"),
        ("notflow", "mfa_fsm.core.errors:MfaError", "is not a mfa_fsm Flow subclass"),
        ("other", "mfa_fsm.duo.flow:DuoFlow", "whose provider is 'duo'"),
    ],
)
def test_a_bad_entry_point_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    """A plugin that does not load, or names something else, is a UsageError naming it."""
    declared = {**registry._declared(), name: EntryPoint(name, value, ENTRY_POINT_GROUP)}
    monkeypatch.setattr(registry, "_entry_points", declared)
    with pytest.raises(UsageError, match=match) as caught:
        provider_flow(name)
    assert repr(name) in str(caught.value)


# -- registering a class directly -----------------------------------------------------------


def test_a_registered_class_is_a_provider_until_unregistered() -> None:
    assert ToyFlow.provider not in provider_names()
    assert register_provider(ToyFlow) is ToyFlow
    try:
        assert register_provider(ToyFlow) is ToyFlow  # the same class again: a no-op
        assert provider_flow("toy-idp") is ToyFlow
        assert flow_for_config(ToyConfig()) is ToyFlow

        class OtherToy(ToyFlow):
            pass

        with pytest.raises(UsageError, match="already registered as ToyFlow"):
            register_provider(OtherToy)
        assert register_provider(OtherToy, replace=True) is OtherToy
        assert provider_flow("toy-idp") is OtherToy
    finally:
        unregister_provider("toy-idp")
    assert "toy-idp" not in provider_names()
    with pytest.raises(UsageError, match="takes a Flow subclass"):
        register_provider(ToyConfig)  # type: ignore[arg-type]


def test_a_registered_class_wins_over_the_entry_point_of_its_name() -> None:
    class TestEntrust(EntrustFlow):
        pass

    register_provider(TestEntrust)
    try:
        assert provider_flow("entrust") is TestEntrust
    finally:
        unregister_provider("entrust")
    assert provider_flow("entrust") is EntrustFlow


# -- who discovers providers ----------------------------------------------------------------


def test_the_cli_lists_a_registered_provider(toy: type[ToyFlow]) -> None:
    """`login --provider` accepts any registered provider, and says what it lacks."""
    out = io.StringIO()
    status = main(["login", "--provider", "toy-idp", "--user", "pat"], stdout=out)
    assert status == 2
    assert "Toy IdP declares no settings for a command-line login" in out.getvalue()
    out = io.StringIO()
    status = main(["login", "--provider", "toy-idp", "--emulator", "--user", "pat"], stdout=out)
    assert status == 2
    assert "Toy IdP has no emulator" in out.getvalue()


def test_the_cli_help_lists_every_provider(toy: type[ToyFlow]) -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit):
        main(["login", "--provider", "nope"], stdout=out)
    from mfa_fsm.cli import parser  # noqa: PLC0415

    login_help = parser()._subparsers._group_actions[0].choices["login"].format_help()  # type: ignore[union-attr]
    assert "toy-idp" in login_help
    assert "entrust" in login_help and "cyberark" in login_help and "duo" in login_help


def test_the_web_integration_runs_a_registered_provider(toy: type[ToyFlow]) -> None:
    """The blueprint offers the toy provider by its label and runs its typed start and first
    factor with the shared fields: no per-provider table anywhere."""
    engine = Engine(MemoryStore(), [ToyConfig()])
    assert engine.providers == ("toy-idp",)
    visitor = Visitor(make_app(engine).test_client())
    page = visitor.get(f"{PREFIX}/").get_data(as_text=True)
    assert "Toy IdP" in page
    assert events.provider_label("toy-idp") == "Toy IdP"
    wrong = visitor.post(f"{PREFIX}/", provider="toy-idp", user="pat", password="nope")
    assert wrong.status_code == 401
    reply = visitor.start("toy-idp", "pat", password="toy-password")
    assert reply.status_code == 303
    final = visitor.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Toy IdP" in final  # the completed page names the provider by its label


def test_diagrams_draw_a_registered_provider(toy: type[ToyFlow]) -> None:
    from mfa_fsm import diagrams  # noqa: PLC0415

    assert diagrams.flows()["toy-idp"] is ToyFlow
    assert "Awaiting first factor" in diagrams.mermaid(ToyFlow)
