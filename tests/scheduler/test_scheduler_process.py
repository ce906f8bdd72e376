"""``minitower-scheduler`` as real processes on one SQLite file.

The schedulers run on a test clock 60 times faster than the real one (the same anchor
for all, so they agree on the time): a schedule of every minute is due every second.
"""

import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from minitower_shared.clock import as_utc
from minitower_shared.db import read_session
from minitower_shared.models import SchedulerPass
from minitower_shared.store import schedules as schedule_store
from tests.support.processes import Process, spawn, start_scheduler
from tests.support.seed import add_schedule, all_runs, seed_app
from tests.support.waiting import wait_for

SPEED = 60.0
SCHEDULES = 8


def _clean(process: Process) -> str:
    text = process.log()
    assert "Traceback" not in text, text
    return text


def _wait_started(process: Process) -> None:
    wait_for(
        lambda: process.events("scheduler started", service="scheduler"),
        timeout=60,
        what=f"{process.log_path.name} to start",
    )


@pytest.mark.slow
def test_two_schedulers_and_a_sigkill_fire_each_due_time_exactly_once(
    tmp_path: Path, db_path: Path, engine: Engine
) -> None:
    anchor = datetime.now(UTC)
    env = {
        "MINITOWER_TEST_CLOCK_ANCHOR": anchor.isoformat(),
        "MINITOWER_TEST_CLOCK_SPEED": str(SPEED),
        "MINITOWER_SCHEDULE_CHECK_INTERVAL": "0.5s",
        # Under two virtual minutes: a restarted scheduler only fires what is due now.
        "MINITOWER_SCHEDULE_MISFIRE_GRACE": "90s",
    }

    def virtual_now() -> datetime:
        return anchor + (datetime.now(UTC) - anchor) * SPEED

    app = seed_app(engine).app
    ids = [add_schedule(engine, app, now=virtual_now()) for _ in range(SCHEDULES)]
    # No runner ever finishes its first run: every later due time must be skipped.
    skip_id = add_schedule(engine, app, now=virtual_now(), overlap="skip")
    first = start_scheduler(tmp_path, db_path, env, "scheduler-a")
    second = start_scheduler(tmp_path, db_path, env, "scheduler-b")
    processes = [first, second]
    try:
        _wait_started(first)
        _wait_started(second)
        began = virtual_now()
        # SIGKILL one of them at a random moment (ticks every real second, so very
        # likely in or near a tick), then bring a replacement up.
        time.sleep(random.uniform(1.5, 4.0))
        victim = random.choice([first, second])
        victim.proc.kill()
        victim.proc.wait(5)
        replacement = start_scheduler(tmp_path, db_path, env, "scheduler-c")
        processes.append(replacement)
        _wait_started(replacement)
        # At least three real seconds with the replacement up, and a window long enough
        # (eight virtual minutes) that a short random sleep above cannot leave too few
        # whole due minutes to check.
        long_enough = began + timedelta(minutes=8)
        time.sleep(max(3.0, (long_enough - virtual_now()).total_seconds() / SPEED))
        ended = virtual_now()
        for process in (p for p in processes if p is not victim):
            assert process.stop(10) == 0, process.log()
            _clean(process)
    finally:
        for process in processes:
            process.stop(5)

    runs = all_runs(engine)
    per_time = Counter((r.schedule_id, as_utc(r.scheduled_for)) for r in runs)  # type: ignore[arg-type]
    assert per_time and max(per_time.values()) == 1, per_time.most_common(3)
    # Every due minute between the start and the end fired, for every schedule: the
    # surviving scheduler (or the replacement) covered the killed one's share.
    minute = timedelta(minutes=1)
    first_due = (began + minute).replace(second=0, microsecond=0)
    last_due = (ended - 2 * minute).replace(second=0, microsecond=0)
    assert last_due > first_due + 3 * minute, (began, ended)
    expected = []
    when = first_due
    while when <= last_due:
        expected.append(when)
        when += minute
    for schedule_id in ids:
        fired = {t for (sid, t) in per_time if sid == schedule_id}
        assert set(expected) <= fired, (schedule_id, sorted(set(expected) - fired))
    assert [r.status for r in runs if r.schedule_id == skip_id] == ["queued"]
    with read_session(engine) as session:
        names = set(session.exec(select(SchedulerPass.name)).all())
        skips = schedule_store.fires_of(session, skip_id)
    assert len(skips) >= len(expected)
    assert [f.outcome for f in skips][1:] == ["skipped"] * (len(skips) - 1)
    assert {"scheduler-a", "scheduler-b", "scheduler-c"} <= names


def test_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    import sqlite3

    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).close()
    # Both at once: each spends its time starting up.
    process = spawn(
        "minitower-scheduler", [], {"MINITOWER_DB_PATH": str(bare)}, tmp_path / "bare.log"
    )
    missing = spawn(
        "minitower-scheduler",
        [],
        {"MINITOWER_DB_PATH": str(tmp_path / "none.db")},
        tmp_path / "none.log",
    )
    assert process.proc.wait(30) == 2
    assert "minitowerd migrate" in process.log()
    assert missing.proc.wait(30) == 2
    assert "does not exist" in missing.log()


def test_sigterm_stops_the_scheduler_promptly(tmp_path: Path, db_path: Path) -> None:
    process = start_scheduler(
        tmp_path, db_path, {"MINITOWER_SCHEDULE_CHECK_INTERVAL": "30s"}, "sleepy"
    )
    try:
        _wait_started(process)
        started = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        process.stop()
    _clean(process)
    assert process.events("stopping", signal="SIGTERM")
    assert process.events("scheduler stopped")


def test_once_makes_one_tick_and_exits(tmp_path: Path, db_path: Path, engine: Engine) -> None:
    app = seed_app(engine).app
    add_schedule(engine, app, now=datetime.now(UTC) - timedelta(minutes=1, seconds=30))
    once = spawn(
        "minitower-scheduler",
        ["--once"],
        {"MINITOWER_DB_PATH": str(db_path), "MINITOWER_SCHEDULER_NAME": "once"},
        tmp_path / "once.log",
    )
    assert once.proc.wait(60) == 0, once.log()
    assert "fired 1 runs, skipped 0 fires" in once.log()
    assert len(all_runs(engine)) == 1
