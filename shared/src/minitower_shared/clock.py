"""Time in one place: aware UTC datetimes in code, RFC 3339 on the wire."""

from datetime import UTC, datetime
from typing import overload


def utcnow() -> datetime:
    """SQLModel stores aware datetimes as UTC text, which compares correctly in SQL."""
    return datetime.now(UTC)


def as_utc(value: datetime | str) -> datetime:
    """A datetime read back from SQLite (or the wire) as aware UTC. Aggregates (``MIN``,
    ``MAX``) over a datetime column come back as the stored text, and stored values carry
    no offset: a naive value is UTC."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@overload
def rfc3339(value: datetime) -> str: ...
@overload
def rfc3339(value: None) -> None: ...
@overload
def rfc3339(value: datetime | None) -> str | None: ...


def rfc3339(value: datetime | None) -> str | None:
    """``2026-11-27T20:30:00.123Z``: millisecond precision, always UTC (a naive value is
    taken as UTC, as the database stores them). The wire's only timestamp format: the
    schemas' ``WireTime`` serializes with it."""
    if value is None:
        return None
    value = value.astimezone(UTC) if value.tzinfo is not None else value
    # isoformat, unlike strftime's %Y, writes years before 1000 with four digits.
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
