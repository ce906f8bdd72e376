"""The settings MiniTower's processes share, each defined once.

``ServiceSettings`` is what every process reads (the runner included);
``DatabaseServiceSettings`` adds what a process that opens the database reads. A variable
two processes must agree on (the API refuses what the reaper or the scheduler would
not do) lives in a small base both inherit, so that its default and bounds cannot drift.
"""

from pathlib import Path
from typing import ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from minitower_shared.db_limits import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_SLOW_QUERY_THRESHOLD,
    DEFAULT_STATEMENT_TIMEOUT,
)
from minitower_shared.durations import LogLevel, OptionalSeconds, PositiveSeconds
from minitower_shared.logging_setup import LogFormat

MIN_SECRET_LENGTH = 16
# psycopg 3 is the driver whichever of these the URL names.
POSTGRESQL_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        # An empty variable means unset: compose passes `${VAR:-}` for optional ones.
        env_prefix="MINITOWER_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
    )

    # Fields holding shared secrets, checked for length outside dev.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    env: Literal["dev", "production"] = "production"
    log_level: LogLevel = "info"
    # auto: console at a terminal, JSON lines otherwise (compose, files, pipes).
    log_format: LogFormat = "auto"

    @model_validator(mode="after")
    def _long_enough_secrets(self) -> Self:
        if self.env == "dev":
            return self
        for name in self.secret_fields:
            secret: SecretStr | None = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"MINITOWER_{name.upper()} must be at least {MIN_SECRET_LENGTH} characters "
                    "(set MINITOWER_ENV=dev to allow short secrets for local development)"
                )
        return self


class DatabaseServiceSettings(ServiceSettings):
    # PostgreSQL when set (``postgresql+psycopg://user:password@host:5432/minitower``),
    # else the SQLite file at db_path.
    database_url: SecretStr | None = None
    db_path: Path = Path("minitower.db")
    # How long a write waits for a lock (SQLite's, or a row's on PostgreSQL) before it
    # fails (the API answers 503 database_busy; the reaper's and the scheduler's next
    # pass tries again); statements slower than the threshold are logged (0: every one,
    # ``off``: none).
    db_busy_timeout: PositiveSeconds = DEFAULT_BUSY_TIMEOUT
    slow_query_threshold: OptionalSeconds = DEFAULT_SLOW_QUERY_THRESHOLD
    # Connections the API keeps open (as many again in bursts; 20, as before, on SQLite),
    # and, on PostgreSQL, how long one statement may run before the server cancels it
    # (``off``: no limit).
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_statement_timeout: OptionalSeconds = DEFAULT_STATEMENT_TIMEOUT

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message names the scheme only: the URL may hold a password.
        if value is None:
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in POSTGRESQL_SCHEMES:
            shown = f"{scheme}://" if scheme else "no scheme"
            raise ValueError(
                f"must be a PostgreSQL URL (postgresql+psycopg://user:password@host/db), "
                f"not {shown}"
            )
        return value

    @property
    def database(self) -> str | Path:
        """What ``db.create_db_engine`` opens: the PostgreSQL URL, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.db_path

    @property
    def database_label(self) -> str:
        """The database for messages: the file, or the URL without its password."""
        if self.database_url is None:
            return str(self.db_path)
        parts = urlsplit(self.database_url.get_secret_value())
        user = f"{parts.username}@" if parts.username else ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"


class RunnerRegistrationSettings(ServiceSettings):
    """The API checks a runner's registration token against it; the runner sends it."""

    secret_fields: ClassVar[tuple[str, ...]] = ("runner_registration_token",)

    runner_registration_token: SecretStr | None = None


class WebhookTargetSettings(ServiceSettings):
    """The API refuses a webhook the reaper would not send to."""

    # Loopback, private, link-local … receivers are refused unless this is true.
    webhook_allow_private: bool = False


class CatchupSettings(ServiceSettings):
    """The API refuses a schedule the scheduler would not fire."""

    # catchup = "all" fires at most this many missed times per schedule after downtime;
    # while it is 0 the API refuses catchup = "all".
    schedule_max_catchup: int = Field(default=10, ge=0, le=1000)
