"""The scheduler's configuration: ``MINITOWER_*`` environment variables."""

from datetime import datetime

from pydantic import AwareDatetime, Field

from minitower_shared.durations import PositiveSeconds, Seconds
from minitower_shared.service_settings import CatchupSettings, DatabaseServiceSettings


class SchedulerSettings(DatabaseServiceSettings, CatchupSettings):
    # The longest sleep between ticks: how soon a schedule created (or resumed) through
    # the API is first looked at when nothing else is due sooner.
    schedule_check_interval: PositiveSeconds = 5.0
    # catchup = "none" still fires a due time this late (a slow tick, a quick restart).
    schedule_misfire_grace: Seconds = 60.0
    # This scheduler's row in scheduler_pass (default hostname:pid).
    scheduler_name: str | None = Field(default=None, min_length=1, max_length=200)
    # Tests only: a clock that runs ``test_clock_speed`` times faster than the real one
    # from ``test_clock_anchor`` (every process given the same pair sees the same time),
    # so a schedule "every minute" fires every second of real time.
    test_clock_anchor: AwareDatetime | None = None
    test_clock_speed: float = Field(default=1.0, gt=0, le=3600)

    def clock_now(self, real: datetime) -> datetime:
        if self.test_clock_anchor is None:
            return real
        return self.test_clock_anchor + (real - self.test_clock_anchor) * self.test_clock_speed
