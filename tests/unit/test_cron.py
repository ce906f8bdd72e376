"""Cron expressions: macros, bounds, zones, and the edges of "after"."""

from datetime import UTC, datetime

import pytest

from minitower_shared.cron import MACROS, CronError, expand, next_fire_time, validate


def test_macros_expand_to_five_fields() -> None:
    assert expand("@daily") == "0 0 * * *"
    assert expand(" @HOURLY ") == "0 * * * *"
    assert set(MACROS) >= {"@yearly", "@monthly", "@weekly", "@daily", "@hourly"}


def test_next_fire_time_is_strictly_after() -> None:
    due = datetime(2026, 6, 1, 2, 30, tzinfo=UTC)
    assert (
        next_fire_time("30 2 * * *", "UTC", due.replace(minute=29, second=59, microsecond=500000))
        == due
    )
    assert next_fire_time("30 2 * * *", "UTC", due) == due.replace(day=2)
    assert next_fire_time("30 2 * * *", "UTC", due.replace(microsecond=1)) == due.replace(day=2)


@pytest.mark.parametrize(
    ("cron", "zone"),
    [
        ("@reboot", "UTC"),
        ("* * * * * *", "UTC"),
        ("60 * * * *", "UTC"),
        ("* 24 * * *", "UTC"),
        ("0 0 31 2 *", "UTC"),
        ("*/0 * * * *", "UTC"),
        ("x" * 41 + " * * * *", "UTC"),
        ("* * * * *", "Europe/Nowhere"),
        ("* * * * *", "/etc/localtime"),
        ("* * * * *", "Europe/../../etc"),
        ("* * * * *", ""),
    ],
)
def test_invalid_expressions_and_zones_raise_cron_error(cron: str, zone: str) -> None:
    with pytest.raises(CronError):
        validate(cron, zone, datetime(2026, 6, 1, tzinfo=UTC))
