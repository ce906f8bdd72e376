"""The scheduler's tick driven with explicit times: catchup modes after an outage,
overlap skip and queue, DST nights in Europe/Berlin and America/New_York."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from minitower_scheduler.service import tick
from minitower_shared.clock import as_utc
from minitower_shared.cron import fire_times
from minitower_shared.db import read_session, write_session
from minitower_shared.models import Schedule
from minitower_shared.states import AttemptStatus, RunStatus
from minitower_shared.store import schedules as schedule_store
from tests.support.seed import (
    Seeded,
    add_runner,
    add_schedule,
    all_runs,
    finish,
    lease,
    must_lease,
    start,
)

T0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
GRACE = timedelta(seconds=60)
HOUR = timedelta(hours=1)


def _tick(engine: Engine, now: datetime, *, max_catchup: int = 10) -> tuple[int, int]:
    with write_session(engine) as session:
        work = tick(session, now, max_catchup=max_catchup, grace=GRACE, name="test")
    return work.runs_fired, work.fires_skipped


def _schedule(engine: Engine, schedule_id: int) -> Schedule:
    with read_session(engine) as session:
        found = session.get(Schedule, schedule_id)
        assert found is not None
        return found


def _fired_for(engine: Engine) -> list[datetime]:
    return [as_utc(r.scheduled_for) for r in all_runs(engine) if r.scheduled_for is not None]


def test_each_due_time_fires_once_and_the_schedule_moves_on(engine: Engine, seeded: Seeded) -> None:
    sid = add_schedule(engine, seeded.app, now=T0, cron="*/5 * * * *")
    assert as_utc(_schedule(engine, sid).next_fire_at) == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)  # type: ignore[arg-type]
    assert _tick(engine, T0 + timedelta(minutes=1)) == (0, 0)
    due = datetime(2026, 6, 1, 12, 5, tzinfo=UTC)
    assert _tick(engine, due + timedelta(seconds=2)) == (1, 0)
    assert _tick(engine, due + timedelta(seconds=3)) == (0, 0)
    (run,) = all_runs(engine)
    assert (run.schedule_id, as_utc(run.scheduled_for)) == (sid, due)  # type: ignore[arg-type]
    schedule = _schedule(engine, sid)
    assert as_utc(schedule.last_fired_at) == due  # type: ignore[arg-type]
    assert as_utc(schedule.next_fire_at) == due + timedelta(minutes=5)  # type: ignore[arg-type]
    with read_session(engine) as session:
        fires = schedule_store.fires_of(session, sid)
    assert [(f.outcome, f.run_id) for f in fires] == [("fired", run.id)]


def _minutes(first: int, last: int) -> list[datetime]:
    """Due times of a schedule of every minute, as minutes after 12:00 on T0's day."""
    base = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    return [base + timedelta(minutes=m) for m in range(first, last + 1)]


@pytest.mark.parametrize(
    ("catchup", "max_catchup", "expected"),
    [
        # The 13:00 time is 20 s old when the scheduler comes back: on time in any mode.
        ("none", 10, _minutes(60, 60)),
        ("latest", 10, _minutes(60, 60)),
        # The cap counts every time fired on the way back, the on-time one included.
        ("all", 10, _minutes(51, 60)),
        ("all", 3, _minutes(58, 60)),
        ("all", 100, _minutes(1, 60)),
    ],
)
def test_catchup_after_an_outage_gives_exactly_the_promised_runs(
    engine: Engine, seeded: Seeded, catchup: str, max_catchup: int, expected: list[datetime]
) -> None:
    add_schedule(engine, seeded.app, now=T0, catchup=catchup)
    # The scheduler was down from 12:00:30 until 13:00:20: 12:01 … 12:59 were missed.
    back = datetime(2026, 6, 1, 13, 0, 20, tzinfo=UTC)
    fired, _ = _tick(engine, back, max_catchup=max_catchup)
    assert sorted(_fired_for(engine)) == expected
    assert fired == len(expected)
    # Nothing more on the next tick: the missed times are behind it for good.
    assert _tick(engine, back + timedelta(seconds=5), max_catchup=max_catchup) == (0, 0)


def test_catchup_latest_fires_the_most_recent_missed_time(engine: Engine, seeded: Seeded) -> None:
    add_schedule(engine, seeded.app, now=T0, cron="0 * * * *", catchup="latest")
    # Down until 15:30: 13:00, 14:00 and 15:00 were missed; only 15:00 fires.
    assert _tick(engine, datetime(2026, 6, 1, 15, 30, tzinfo=UTC)) == (1, 0)
    assert _fired_for(engine) == [datetime(2026, 6, 1, 15, 0, tzinfo=UTC)]


def test_catchup_none_fires_nothing_missed_beyond_the_grace(engine: Engine, seeded: Seeded) -> None:
    add_schedule(engine, seeded.app, now=T0, cron="0 * * * *", catchup="none")
    # Down for two hours, back at 14:30: the 13:00 and 14:00 times are long gone.
    assert _tick(engine, datetime(2026, 6, 1, 14, 30, tzinfo=UTC)) == (0, 0)
    assert _fired_for(engine) == []
    assert _tick(engine, datetime(2026, 6, 1, 15, 0, 1, tzinfo=UTC)) == (1, 0)


def test_overlap_skip_records_the_skip_and_never_has_two_runs_unfinished(
    engine: Engine, seeded: Seeded
) -> None:
    sid = add_schedule(engine, seeded.app, now=T0, overlap="skip")
    runner = add_runner(engine, "r")
    clock = datetime(2026, 6, 1, 12, 1, 1, tzinfo=UTC)
    assert _tick(engine, clock) == (1, 0)
    grant = must_lease(engine, runner, now=clock, ttl=HOUR)
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=clock, ttl=HOUR)
    for minute in (2, 3):
        assert _tick(engine, clock.replace(minute=minute)) == (0, 1)
    finish(
        engine, grant.attempt.id, AttemptStatus.COMPLETED, now=clock.replace(minute=3, second=30)
    )
    assert _tick(engine, clock.replace(minute=4)) == (1, 0)
    with read_session(engine) as session:
        fires = schedule_store.fires_of(session, sid)
    assert [f.outcome for f in fires] == ["fired", "skipped", "skipped", "fired"]
    assert all("has not finished" in (f.reason or "") for f in fires if f.outcome == "skipped")
    assert len(all_runs(engine)) == 2


def test_overlap_queue_holds_the_next_run_until_the_earlier_one_ends(
    engine: Engine, seeded: Seeded
) -> None:
    add_schedule(engine, seeded.app, now=T0, overlap="queue")
    first_runner, second_runner = add_runner(engine, "a"), add_runner(engine, "b")
    clock = datetime(2026, 6, 1, 12, 1, 1, tzinfo=UTC)
    _tick(engine, clock)
    grant = must_lease(engine, first_runner, now=clock, ttl=HOUR)
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=clock, ttl=HOUR)
    _tick(engine, clock.replace(minute=2))
    first, second = all_runs(engine)
    assert second.after_run_id == first.id and second.status == RunStatus.QUEUED
    assert lease(engine, second_runner, now=clock.replace(minute=2, second=5)) is None
    finish(engine, grant.attempt.id, AttemptStatus.FAILED, now=clock.replace(minute=2, second=9))
    assert (
        must_lease(engine, second_runner, now=clock.replace(minute=2, second=10)).run.id
        == second.id
    )


def _local_times(cron: str, zone: str, start: datetime, count: int) -> list[str]:
    tz = ZoneInfo(zone)
    times = fire_times(cron, zone, start)
    return [next(times).astimezone(tz).isoformat() for _ in range(count)]


def test_dst_spring_forward_runs_a_skipped_time_once() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29; New York on 2026-03-08.
    berlin = _local_times("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    assert berlin == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    new_york = _local_times(
        "30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC), 3
    )
    assert new_york == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_dst_fall_back_runs_a_repeated_time_once() -> None:
    # Europe/Berlin repeats 02:00-03:00 on 2026-10-25; New York 01:00-02:00 on 2026-11-01.
    berlin = _local_times("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert berlin == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    new_york = _local_times(
        "30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=UTC), 2
    )
    assert new_york == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    # A job of every hour still runs in each real hour, the repeated one included.
    hourly = _local_times(
        "0 * * * *", "America/New_York", datetime(2026, 11, 1, 4, 30, tzinfo=UTC), 3
    )
    assert hourly == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_a_dst_night_fires_once_per_local_time_through_the_scheduler(
    engine: Engine, seeded: Seeded
) -> None:
    start_at = datetime(2026, 10, 24, 12, tzinfo=UTC)
    add_schedule(
        engine,
        seeded.app,
        now=start_at,
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        catchup="latest",
    )
    # Tick every 10 minutes (a slow scheduler: "latest" still fires each time it finds
    # late) across the fall-back night and the next day.
    clock = start_at
    while clock < start_at + timedelta(days=2):
        clock += timedelta(minutes=10)
        _tick(engine, clock)
    assert _fired_for(engine) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(
    engine: Engine, seeded: Seeded
) -> None:
    sid = add_schedule(engine, seeded.app, now=T0)
    with write_session(engine) as session:
        schedule = session.get(Schedule, sid)
        assert schedule is not None
        schedule_store.update_schedule(
            session, schedule, fields={"enabled": False}, retry={}, now=T0
        )
    assert _tick(engine, T0 + timedelta(minutes=30)) == (0, 0)
    resume_at = T0 + timedelta(minutes=30)
    with write_session(engine) as session:
        schedule = session.get(Schedule, sid)
        assert schedule is not None
        schedule_store.update_schedule(
            session, schedule, fields={"enabled": True}, retry={}, now=resume_at
        )
    assert _tick(engine, resume_at + timedelta(minutes=1)) == (1, 0)
