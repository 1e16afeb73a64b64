"""The registry's settings: what ``mfa-fsm login`` reads for a real tenant, and how a provider
builds its configuration from them (``Flow.config_from_settings``, flat by default)."""

from __future__ import annotations

import pytest

from mfa_fsm import CyberArkFlow, DuoConfig, DuoFlow, EntrustConfig, EntrustFlow, UsageError
from mfa_fsm.core.registry import Setting, config_from_settings


def test_a_secret_setting_has_no_command_line_option() -> None:
    with pytest.raises(UsageError, match="secret"):
        Setting("secret_key", "--secret-key", "a key", env="X_SKEY", secret=True)
    assert Setting("secret_key", None, "a key", env="X_SKEY", secret=True).option is None


def test_a_setting_comes_from_somewhere() -> None:
    with pytest.raises(UsageError, match="option or an env"):
        Setting("base_url", None, "tenant URL")


def test_a_flat_configuration_is_the_configuration_class_itself() -> None:
    config = config_from_settings(
        EntrustFlow, {"base_url": "https://t.example", "application_id": "app-1"}
    )
    assert config == EntrustConfig(base_url="https://t.example", application_id="app-1")


def test_duo_builds_its_nested_credentials_from_flat_settings() -> None:
    values = {
        "integration_key": "DIWJ8X6AEYOR5OMC6TQ1",
        "secret_key": "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep",
        "api_hostname": "api-xxxxxxxx.duosecurity.com",
        "base_url": "https://proxy.example/",
    }
    config = config_from_settings(DuoFlow, values)
    assert isinstance(config, DuoConfig)
    assert config.credentials.integration_key == "DIWJ8X6AEYOR5OMC6TQ1"
    assert config.credentials.api_hostname == "api-xxxxxxxx.duosecurity.com"
    assert config.url == "https://proxy.example"
    assert values["secret_key"] not in repr(config)


@pytest.mark.parametrize(
    ("flow", "values", "named"),
    [
        (DuoFlow, {"integration_key": "DI1", "api_hostname": "h"}, "secret_key"),
        (DuoFlow, {"integration_key": "DI1", "secret_key": "", "api_hostname": "h"}, "secret_key"),
        (
            DuoFlow,
            {"integration_key": "DI1", "secret_key": "s3cr3t-value", "api_hostname": "h", "x": 1},
            "x",
        ),
        (CyberArkFlow, {"tenant_id": "ABC"}, "base_url"),
    ],
)
def test_bad_settings_are_a_usage_error_naming_the_field_not_the_value(
    flow: type[DuoFlow] | type[CyberArkFlow], values: dict[str, object], named: str
) -> None:
    with pytest.raises(UsageError) as caught:
        config_from_settings(flow, values)
    message = str(caught.value)
    assert message.startswith(f"the {flow.label} settings are not valid")
    assert named in message
    assert "s3cr3t-value" not in message


def test_every_secret_setting_is_read_from_the_environment_only() -> None:
    """The providers' own declarations follow the rule: a secret has no option."""
    for flow in (EntrustFlow, CyberArkFlow, DuoFlow):
        for setting in flow.settings:
            assert not (setting.secret and setting.option), (flow, setting)
    (secret,) = [s for s in DuoFlow.settings if s.secret]
    assert (secret.field, secret.env) == ("secret_key", "MFA_FSM_DUO_SKEY")


def test_a_factory_s_own_type_or_value_error_is_reported_without_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A configuration factory that raises a plain ValueError (its text may hold a value) is a
    UsageError naming the provider and the error's type only."""

    def refuse(cls: type[EntrustFlow], values: object) -> object:
        raise ValueError("s3cr3t-value is not a URL")

    monkeypatch.setattr(EntrustFlow, "config_from_settings", classmethod(refuse))
    with pytest.raises(UsageError) as caught:
        config_from_settings(EntrustFlow, {"base_url": "s3cr3t-value"})
    assert str(caught.value) == (
        "the Entrust Identity as a Service settings are not valid (ValueError)"
    )
