"""The runner's configuration: ``MINITOWER_*`` environment variables (and a ``.env`` file)."""

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from minitower_shared.durations import PositiveSeconds, Seconds, parse_duration
from minitower_shared.schemas import ENVIRONMENT_PATTERN, RUNNER_NAME_PATTERN
from minitower_shared.service_settings import RunnerRegistrationSettings


def _default_name() -> str:
    """The hostname, so that every compose replica registers under its own name."""
    return socket.gethostname().split(".")[0] or "runner"


class RunnerSettings(RunnerRegistrationSettings):
    server_url: str = "http://127.0.0.1:8080"
    runner_name: str = Field(default_factory=_default_name, pattern=RUNNER_NAME_PATTERN)
    runner_environment: str = Field(default="default", pattern=ENVIRONMENT_PATTERN)
    runner_labels: dict[str, str] = Field(default_factory=dict)
    # Runner token, workspaces and (unless set apart) the venv cache.
    data_dir: Path = Path.home() / ".minitower" / "runner"
    # Runners of one host may share it: builds are locked, each environment built once.
    venv_cache_dir: Path | None = None
    # How long one lease request waits on the server for work (long poll; 0 turns it off).
    lease_wait: Annotated[float, BeforeValidator(parse_duration), Field(le=30)] = 20.0
    # The least time between two lease requests that found no work; a long poll that
    # waited its full time is followed by the next one at once.
    poll_interval: PositiveSeconds = 1.0
    heartbeat_interval: PositiveSeconds = 10.0
    kill_grace_period: Seconds = 10.0
    drain_timeout: Seconds = 60.0
    request_timeout: PositiveSeconds = 30.0
    runner_isolation: Literal["process", "docker"] = "process"
    # A shared runner in process isolation runs workloads under this uid and gid (no
    # supplementary groups): one no other process of the host uses, and one per runner
    # where several share a host.
    runner_workload_uid: int = Field(default=65534, ge=1, le=2**32 - 2)
    runner_workload_gid: int = Field(default=65534, ge=1, le=2**32 - 2)
    # Run a shared runner's workloads as the runner itself: only where every team that
    # can reach this runner trusts every other (one team, a test stack).
    runner_trust_all_teams: bool = False
    # The interpreter venvs are built from (default: the runner's own). A shared
    # runner's workloads run it under their own uid, so it must be one they can run.
    runner_python: Path | None = None
    runner_image: str = "python:3.11-slim-bookworm"
    docker_memory: str = "1g"
    docker_cpus: float = Field(default=1.0, gt=0)
    docker_pids_limit: int = Field(default=512, ge=16)
    # "none" keeps runs off every network; "bridge" (or a network's name) lets them out.
    docker_network: str = "none"
    docker_user: str = "10001:10001"
    # The container's only writable place (a tmpfs at /tmp): the workspace, the venv,
    # what the run writes.
    docker_tmp_size: str = Field(default="1g", pattern=r"^[0-9]+[kmg]?$")
    # For operators behind a package mirror: passed to uv (or pip) when installing a
    # version's requirements.txt.
    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    pip_find_links: str | None = None
    pip_no_index: bool = False
    log_batch_lines: int = Field(default=500, ge=1, le=5000)
    # Verified archives kept under <data dir>/artifacts, so that a version's archive is
    # downloaded once per runner (0 turns the cache off).
    artifact_cache_mb: int = Field(default=256, ge=0, le=1_000_000)
    log_flush_interval: PositiveSeconds = 0.2

    @field_validator("server_url")
    @classmethod
    def _check_server_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8080")
        return value.rstrip("/")

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def venvs_dir(self) -> Path:
        return self.venv_cache_dir or self.data_dir / "venvs"
