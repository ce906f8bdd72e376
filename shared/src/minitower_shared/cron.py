"""Cron expressions evaluated in an IANA time zone, with DST handled the way cron does.

Evaluation is cronsim's (maintained, pure Python, modelled on Debian cron): on a
spring-forward night a job whose time falls in the skipped hour (02:30 in
Europe/Berlin) runs once, at the first minute after the gap; on a fall-back night a job
with a fixed hour runs once, in the first of the two repeated hours, while a job whose
hour field is a wildcard runs in both (as cron does). Times come out in UTC.
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Bounded input before cronsim sees it: five short fields of cron characters.
_FIELD = re.compile(r"^[0-9A-Za-z*/,#?LW-]{1,40}$")
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}$")


class CronError(ValueError):
    """The expression or the time zone is not valid; the message says which and why."""


def expand(expression: str) -> str:
    """The five-field form of ``expression`` (macros expanded); CronError when invalid."""
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise CronError(
                f"unknown cron macro {text!r}: use five fields or one of {', '.join(MACROS)}"
            )
        return MACROS[text.lower()]
    fields = text.split()
    if len(fields) != 5 or not all(_FIELD.fullmatch(f) for f in fields):
        raise CronError(
            f"invalid cron expression {expression!r}: five fields (minute hour day month "
            "weekday) or a macro such as @daily"
        )
    return " ".join(fields)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; CronError when there is none."""
    if not _TIMEZONE.fullmatch(name):
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from None


def fire_times(expression: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """The due times strictly after ``after``, in UTC, in order. CronError when the
    expression or zone is invalid, or when it never matches (``0 0 30 2 *``)."""
    tz = zone(timezone)
    # cronsim yields times strictly after its start (whole seconds; cron times are whole
    # minutes, so dropping the fraction cannot make a time after ``after`` come first).
    start = after.astimezone(tz).replace(microsecond=0)
    try:
        times = CronSim(expand(expression), start)
    except CronSimError as exc:
        raise CronError(f"invalid cron expression {expression!r}: {exc}") from None
    for local in times:
        yield local.astimezone(UTC)


def next_fire_time(expression: str, timezone: str, after: datetime) -> datetime:
    """The first due time after ``after``; CronError if there is none within 50 years."""
    for when in fire_times(expression, timezone, after):
        return when
    raise CronError(f"cron expression {expression!r} never matches")


def validate(expression: str, timezone: str, now: datetime) -> datetime:
    """Check both and return the next due time after ``now``."""
    return next_fire_time(expression, timezone, now)
