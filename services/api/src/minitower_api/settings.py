"""The API's configuration: ``MINITOWER_*`` environment variables (and a ``.env`` file)."""

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from minitower_shared.durations import (
    PositiveSeconds,
    parse_duration,
)
from minitower_shared.schemas import MAX_JSON_DEPTH
from minitower_shared.secret_box import SecretBox, SecretKeyError, parse_keys
from minitower_shared.service_settings import (
    CatchupSettings,
    DatabaseServiceSettings,
    RunnerRegistrationSettings,
    WebhookTargetSettings,
)
from minitower_shared.towerfile import MAX_TOWERFILE_BYTES

# A week: longer than any batch job should hold a runner, short enough to catch typos.
MAX_RUN_TIMEOUT = 7 * 24 * 3600

# Longer passwords are refused rather than hashed: the hash's cost must stay bounded.
MAX_PASSWORD_LENGTH = 1024


class ApiSettings(
    DatabaseServiceSettings, RunnerRegistrationSettings, WebhookTargetSettings, CatchupSettings
):
    secret_fields = ("bootstrap_token", "runner_registration_token", "metrics_token")

    objects_dir: Path = Path("objects")
    # Where artifacts are kept: files under objects_dir (``local``), or rows of the
    # database (``postgres``, PostgreSQL only), so API processes need no shared volume.
    # Uploads are received in objects_dir/tmp either way.
    object_store: Literal["local", "postgres"] = "local"
    listen_addr: str = "0.0.0.0:8080"
    bootstrap_token: SecretStr | None = None
    lease_ttl: PositiveSeconds = 60.0
    default_run_timeout: Annotated[
        float, BeforeValidator(parse_duration), Field(ge=1, le=MAX_RUN_TIMEOUT)
    ] = 3600.0
    max_artifact_bytes: int = 100 * 1024 * 1024
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_request_bytes: int = 2 * 1024 * 1024
    # The Towerfile in an upload; at most the 64 KiB that the runners and the CLI allow.
    max_towerfile_bytes: Annotated[int, Field(ge=1024, le=MAX_TOWERFILE_BYTES)] = (
        MAX_TOWERFILE_BYTES
    )
    # A run's input: elements of any one array or members of any one object, levels of
    # nesting, and the time its check against the version's params_schema may take.
    max_input_items: Annotated[int, Field(ge=1)] = 10_000
    max_input_depth: Annotated[int, Field(ge=1, le=MAX_JSON_DEPTH)] = MAX_JSON_DEPTH
    params_validation_timeout: Annotated[
        float, BeforeValidator(parse_duration), Field(gt=0, le=60)
    ] = 1.0
    # How often a waiting lease looks again for runs that another process (the reaper)
    # put back in the queue; runs created through this API wake waiters at once.
    lease_poll_interval: PositiveSeconds = 1.0
    # A reaper whose last pass is older than this is "stalled" on /ready and in alerts.
    reaper_stall_after: PositiveSeconds = 60.0
    # Make /ready answer 503 while the reaper is stalled (or, once the API has been up
    # longer than reaper_stall_after, when no reaper has ever made a pass).
    ready_requires_reaper: bool = False
    # A scheduler whose last tick is older than this is "stalled" on /ready.
    scheduler_stall_after: PositiveSeconds = 60.0
    # ``minitowerd prune`` deletes audit log rows older than this (at most 100 years:
    # a longer one could not even be subtracted from today).
    audit_retention: Annotated[
        float, BeforeValidator(parse_duration), Field(gt=0, le=100 * 365 * 86400)
    ] = 365 * 86400.0
    # When set, /metrics requires ``Authorization: Bearer <it>``: its series name teams
    # and apps.
    metrics_token: SecretStr | None = None
    # The HTTP server's own limits (server.py, header_limits.py): open connections (over
    # it: 503), a request's head (request line and headers: 431 over either cap), how
    # long its head may take to arrive (408), how long a kept-alive connection may sit
    # idle, and how long a request may go without the client sending or reading a byte.
    max_connections: Annotated[int, Field(ge=1)] = 1000
    max_header_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024
    max_header_count: Annotated[int, Field(ge=8)] = 100
    header_timeout: PositiveSeconds = 10.0
    keep_alive_timeout: PositiveSeconds = 5.0
    client_timeout: PositiveSeconds = 30.0
    # Open lease long polls per runner token and SSE log followers per team token (429
    # beyond), so one token cannot take the connections every other caller needs.
    max_long_polls_per_token: Annotated[int, Field(ge=1)] = 4
    max_followers_per_token: Annotated[int, Field(ge=1)] = 10
    # How often an SSE follower with nothing new re-reads the run (for writes of other
    # processes, such as the reaper's) and re-checks its token; this process's own writes
    # wake followers at once.
    follow_recheck_interval: PositiveSeconds = 3.0
    # Log bytes stored per attempt; past it one truncation line is stored and later lines
    # are accepted but dropped.
    max_log_bytes_per_attempt: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    # Sign-in with a team password (routers/team_auth.py, the console): anyone may create
    # a team with POST /api/v1/teams/signup only when this is on.
    public_signup_enabled: bool = False
    min_password_length: int = Field(default=8, ge=1, le=MAX_PASSWORD_LENGTH)
    # Failed password sign-ins allowed per team slug and per client address within the
    # window; beyond them the login answers 429 with Retry-After.
    login_attempts_per_slug: int = Field(default=10, ge=1)
    login_attempts_per_address: int = Field(default=30, ge=1)
    login_rate_window: PositiveSeconds = 300.0
    # How long a console sign-in lasts (it ends sooner at sign-out or token revocation).
    console_session_ttl: PositiveSeconds = 12 * 3600.0
    # Fernet keys (comma-separated; the first encrypts, all decrypt) of the secrets at
    # rest; `minitowerd generate-secrets-key` prints one. Unset: no secrets can be set.
    secrets_key: SecretStr | None = None

    @field_validator("listen_addr")
    @classmethod
    def _check_listen_addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 0.0.0.0:8080")
        return value

    @field_validator("secrets_key")
    @classmethod
    def _check_secrets_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_keys(value.get_secret_value())
            except SecretKeyError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _object_store_needs_postgresql(self) -> Self:
        if self.object_store == "postgres" and self.database_url is None:
            raise ValueError(
                "MINITOWER_OBJECT_STORE=postgres keeps artifacts in the database, which "
                "must be PostgreSQL: set MINITOWER_DATABASE_URL, or use the local store"
            )
        return self

    def secret_box(self) -> SecretBox | None:
        """None when MINITOWER_SECRETS_KEY is not set."""
        if self.secrets_key is None:
            return None
        return SecretBox.from_setting(self.secrets_key.get_secret_value())

    @property
    def host(self) -> str:
        return self.listen_addr.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen_addr.rpartition(":")[2])
