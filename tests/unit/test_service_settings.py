"""The processes' settings share one base: a variable two processes read is defined once,
and the rules every process applies (empty means unset, secret lengths) are the same."""

import pytest
from pydantic import ValidationError

from minitower_api.settings import ApiSettings
from minitower_reaper.settings import ReaperSettings
from minitower_runner.settings import RunnerSettings
from minitower_scheduler.settings import SchedulerSettings
from minitower_shared.service_settings import (
    CatchupSettings,
    DatabaseServiceSettings,
    RunnerRegistrationSettings,
    ServiceSettings,
    WebhookTargetSettings,
)


def same_field(settings: type[ServiceSettings], base: type[ServiceSettings], name: str) -> bool:
    """Each model keeps its own copy of an inherited field, equal in all but identity."""
    return repr(settings.model_fields[name]) == repr(base.model_fields[name])


def test_every_process_reads_the_common_base() -> None:
    for settings in (ApiSettings, ReaperSettings, SchedulerSettings, RunnerSettings):
        assert issubclass(settings, ServiceSettings)
        for name in ("env", "log_level", "log_format"):
            assert same_field(settings, ServiceSettings, name)
    for settings in (ApiSettings, ReaperSettings, SchedulerSettings):
        assert issubclass(settings, DatabaseServiceSettings)


@pytest.mark.parametrize(
    ("base", "field", "readers"),
    [
        (RunnerRegistrationSettings, "runner_registration_token", (ApiSettings, RunnerSettings)),
        (WebhookTargetSettings, "webhook_allow_private", (ApiSettings, ReaperSettings)),
        (CatchupSettings, "schedule_max_catchup", (ApiSettings, SchedulerSettings)),
    ],
)
def test_a_variable_two_processes_agree_on_is_defined_once(
    base: type[ServiceSettings], field: str, readers: tuple[type[ServiceSettings], ...]
) -> None:
    for settings in readers:
        assert issubclass(settings, base)
        assert same_field(settings, base, field)


@pytest.mark.parametrize("settings", [ApiSettings, RunnerSettings])
def test_a_short_registration_token_is_refused_outside_dev(
    settings: type[ServiceSettings],
) -> None:
    with pytest.raises(ValidationError, match="MINITOWER_RUNNER_REGISTRATION_TOKEN must be at"):
        settings(runner_registration_token="short")  # type: ignore[call-arg]
    dev = settings(env="dev", runner_registration_token="short")  # type: ignore[call-arg]
    assert dev.runner_registration_token.get_secret_value() == "short"  # type: ignore[attr-defined]


@pytest.mark.parametrize("settings", [ApiSettings, RunnerSettings])
def test_an_empty_variable_is_unset(
    settings: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As compose passes an optional variable: ${MINITOWER_RUNNER_REGISTRATION_TOKEN:-}.
    monkeypatch.setenv("MINITOWER_RUNNER_REGISTRATION_TOKEN", "")
    monkeypatch.setenv("MINITOWER_LOG_LEVEL", "")
    loaded = settings()
    assert loaded.runner_registration_token is None  # type: ignore[attr-defined]
    assert loaded.log_level == "info"
