"""The wire's one timestamp type: datetimes in Python, clock.rfc3339's text in JSON."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from minitower_shared.clock import rfc3339
from minitower_shared.schemas import AppPublic, RunPublic, WireTime


class Stamped(BaseModel):
    at: WireTime
    maybe: WireTime | None = None


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        # Naive values are UTC: the database stores them so.
        (datetime(2026, 11, 27, 20, 30, 0, 123456), "2026-11-27T20:30:00.123Z"),
        (datetime(2026, 11, 27, 20, 30, 0, 123999, tzinfo=UTC), "2026-11-27T20:30:00.123Z"),
        (datetime(2026, 11, 27, 20, 30), "2026-11-27T20:30:00.000Z"),
        (
            datetime(2026, 11, 27, 21, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-27T20:30:00.000Z",
        ),
        (
            datetime(
                2026, 11, 27, 15, 0, 0, 5000, tzinfo=timezone(timedelta(hours=-5, minutes=-30))
            ),
            "2026-11-27T20:30:00.005Z",
        ),
        # isoformat keeps four digits where strftime's %Y would not.
        (datetime(999, 1, 2, 3, 4, 5), "0999-01-02T03:04:05.000Z"),
    ],
)
def test_serialized_exactly_as_clock_rfc3339_writes_it(value: datetime, wire: str) -> None:
    assert rfc3339(value) == wire
    stamped = Stamped(at=value)
    assert stamped.model_dump(mode="json") == {"at": wire, "maybe": None}
    assert stamped.model_dump_json() == f'{{"at":"{wire}","maybe":null}}'


def test_held_as_aware_utc_whatever_came_in() -> None:
    naive = Stamped(at=datetime(2026, 1, 2, 3, 4, 5))
    offset = Stamped(at=datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))))
    parsed = Stamped.model_validate_json('{"at": "2026-01-02T03:04:05.000Z"}')
    for stamped in (naive, offset, parsed):
        assert stamped.at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert stamped.at.utcoffset() == timedelta(0)


def test_python_dumps_keep_datetimes() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert Stamped(at=at, maybe=at).model_dump() == {"at": at, "maybe": at}


@pytest.mark.parametrize(
    "wire",
    ["2026-11-27T20:30:00.123Z", "2026-02-28T23:59:59.999Z", "0001-01-01T00:00:00.000Z"],
)
def test_wire_round_trip_is_byte_identical(wire: str) -> None:
    body = json.dumps({"at": wire, "maybe": wire})
    parsed = Stamped.model_validate_json(body)
    assert isinstance(parsed.at, datetime)
    assert parsed.model_dump_json() == body.replace(" ", "")


def test_a_response_body_round_trips_through_its_schema() -> None:
    # What the API sends, as a client (the CLI, the runner) parses and writes it back.
    body = {
        "app_id": 1,
        "slug": "hello",
        "description": "",
        "disabled": False,
        "max_concurrent_runs": None,
        "created_at": "2026-11-27T20:30:00.123Z",
        "updated_at": "2026-11-27T20:31:00.000Z",
    }
    app = AppPublic.model_validate(body)
    assert app.created_at == datetime(2026, 11, 27, 20, 30, 0, 123000, tzinfo=UTC)
    assert app.model_dump(mode="json") == body


def test_documented_as_date_time_strings() -> None:
    for mode in ("validation", "serialization"):
        properties = RunPublic.model_json_schema(mode=mode)["properties"]  # type: ignore[arg-type]
        assert properties["queued_at"] == {
            "format": "date-time",
            "title": "Queued At",
            "type": "string",
        }
        nullable = properties["started_at"]["anyOf"]
        assert {"format": "date-time", "type": "string"} in nullable
        assert {"type": "null"} in nullable
