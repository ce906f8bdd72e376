"""The reaper's configuration: ``MINITOWER_*`` environment variables."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from minitower_shared.db import DEFAULT_BUSY_TIMEOUT, DEFAULT_SLOW_QUERY_THRESHOLD
from minitower_shared.durations import LogLevel, OptionalSeconds, PositiveSeconds
from minitower_shared.logging_setup import LogFormat


class ReaperSettings(BaseSettings):
    model_config = SettingsConfigDict(
        # An empty variable means unset: compose passes `${VAR:-}` for optional ones.
        env_prefix="MINITOWER_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
    )

    db_path: Path = Path("minitower.db")
    expiry_check_interval: PositiveSeconds = 5.0
    # Longer than the longest lease long poll (30 s) plus a heartbeat interval, so a
    # healthy idle runner never flaps to offline.
    runner_offline_after: PositiveSeconds = 90.0
    # This reaper's row in reaper_pass (default hostname:pid). A fixed name keeps one row
    # across restarts; two live reapers must not share one.
    reaper_name: str | None = Field(default=None, min_length=1, max_length=200)
    log_level: LogLevel = "info"
    # auto: console at a terminal, JSON lines otherwise (compose, files, pipes).
    log_format: LogFormat = "auto"
    # As the API's: a pass that cannot get SQLite's lock in time fails and the next
    # pass tries again.
    db_busy_timeout: PositiveSeconds = DEFAULT_BUSY_TIMEOUT
    slow_query_threshold: OptionalSeconds = DEFAULT_SLOW_QUERY_THRESHOLD
