"""The settings every MiniTower process that opens the database reads."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from minitower_shared.db import DEFAULT_BUSY_TIMEOUT, DEFAULT_SLOW_QUERY_THRESHOLD
from minitower_shared.durations import LogLevel, OptionalSeconds, PositiveSeconds
from minitower_shared.logging_setup import LogFormat


class DatabaseServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        # An empty variable means unset: compose passes `${VAR:-}` for optional ones.
        env_prefix="MINITOWER_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
    )

    db_path: Path = Path("minitower.db")
    log_level: LogLevel = "info"
    # auto: console at a terminal, JSON lines otherwise (compose, files, pipes).
    log_format: LogFormat = "auto"
    # How long a write waits for SQLite's lock before it fails (the API answers 503
    # database_busy; the reaper's and the scheduler's next pass tries again); statements
    # slower than the threshold are logged (0: every one, ``off``: none).
    db_busy_timeout: PositiveSeconds = DEFAULT_BUSY_TIMEOUT
    slow_query_threshold: OptionalSeconds = DEFAULT_SLOW_QUERY_THRESHOLD
