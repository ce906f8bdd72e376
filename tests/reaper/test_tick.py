"""The reaper's pass (``tick``) on a real SQLite file: expiry, offline runners, old keys,
and two passes racing each other."""

import functools
import threading
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from minitower_reaper import service
from minitower_reaper.service import TickResult, run_forever, tick
from minitower_shared.clock import as_utc, utcnow
from minitower_shared.db import create_db_engine, read_session, write_session
from minitower_shared.models import IdempotencyKey, ReaperPass
from minitower_shared.states import AttemptStatus, RunnerStatus, RunStatus
from minitower_shared.store import lifecycle
from minitower_shared.store import runners as runner_store
from minitower_shared.store import runs as run_store
from tests.support.concurrency import run_in_threads
from tests.support.databases import Database
from tests.support.invariants import history_problems
from tests.support.seed import (
    Seeded,
    add_runner,
    all_attempts,
    attempts_of,
    get_run,
    get_runner,
    must_lease,
    queue_runs,
    start,
)

T0 = utcnow()
S = timedelta(seconds=1)
OFFLINE_AFTER = timedelta(seconds=90)


def run_tick(engine: Engine, now: datetime | None = None) -> TickResult:
    with write_session(engine) as session:
        return tick(session, now or utcnow(), runner_offline_after=OFFLINE_AFTER)


def lease_all(engine: Engine, count: int, *, prefix: str, now: datetime, ttl: timedelta) -> None:
    """``count`` new runners each lease one run, in one transaction (fast to set up)."""
    with write_session(engine) as session:
        for i in range(count):
            runner, _ = runner_store.register_runner(
                session,
                name=f"{prefix}-{i}",
                environment="default",
                labels={},
                token_hash=f"{prefix}-runner-{i}",
                now=now,
            )
            assert runner.id is not None
            grant = lifecycle.lease(
                session,
                runner_id=runner.id,
                environment="default",
                lease_token_hash=f"{prefix}-lease-{i}",
                now=now + i * timedelta(microseconds=10),
                ttl=ttl,
            )
            assert isinstance(grant, lifecycle.Granted)


def test_tick_expires_only_stale_attempts(engine: Engine, seeded: Seeded) -> None:
    retry, bury, cancelling, fresh = (
        queue_runs(engine, seeded, max_retries=1, now=T0)[0],
        queue_runs(engine, seeded, max_retries=0, now=T0)[0],
        queue_runs(engine, seeded, max_retries=5, now=T0)[0],
        queue_runs(engine, seeded, max_retries=0, now=T0)[0],
    )
    grants = {}
    for run_id, ttl in ((retry, 10 * S), (bury, 10 * S), (cancelling, 10 * S), (fresh, 60 * S)):
        grants[run_id] = must_lease(
            engine, add_runner(engine, f"r{run_id}", now=T0), now=T0, ttl=ttl
        )
    start_id = grants[retry].attempt.id
    assert start_id is not None
    assert start(engine, start_id, now=T0 + S, ttl=9 * S).value == "ok"
    with write_session(engine) as session:
        lifecycle.cancel(session, cancelling, T0 + 2 * S)

    assert run_tick(engine, T0 + 9 * S).expired == []
    result = run_tick(engine, T0 + 10 * S)
    assert sorted(result.expired) == sorted(
        [(retry, RunStatus.QUEUED), (bury, RunStatus.DEAD), (cancelling, RunStatus.CANCELLED)]
    )
    assert result.changed
    assert get_run(engine, retry).retry_count == 1
    assert get_run(engine, fresh).status == RunStatus.LEASED
    for run_id in (retry, bury, cancelling):
        assert [a.status for a in attempts_of(engine, run_id)] == [AttemptStatus.EXPIRED]
    # A second pass at the same moment finds nothing left to do.
    again = run_tick(engine, T0 + 10 * S)
    assert again.expired == [] and not again.changed
    assert history_problems(engine) == []


def test_tick_works_through_a_backlog_in_batches(
    engine: Engine, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More stale attempts than one pass takes: each pass does one batch, oldest first.
    monkeypatch.setattr(service, "BATCH", 4)
    run_ids = queue_runs(engine, seeded, 7, now=T0)
    lease_all(engine, 7, prefix="backlog", now=T0, ttl=S)
    first = run_tick(engine, T0 + 10 * S)
    assert [run_id for run_id, _ in first.expired] == run_ids[:4]
    second = run_tick(engine, T0 + 10 * S)
    assert [run_id for run_id, _ in second.expired] == run_ids[4:]
    assert {s for _, s in first.expired + second.expired} == {RunStatus.DEAD}
    assert run_tick(engine, T0 + 10 * S).expired == []


def test_tick_marks_silent_runners_offline(engine: Engine) -> None:
    silent = add_runner(engine, "silent", now=T0 - OFFLINE_AFTER - S)
    boundary = add_runner(engine, "boundary", now=T0 - OFFLINE_AFTER)
    chatty = add_runner(engine, "chatty", now=T0 - S)
    result = run_tick(engine, T0)
    assert result.runners_offline == 1
    assert get_runner(engine, silent).status == RunnerStatus.OFFLINE
    assert get_runner(engine, boundary).status == RunnerStatus.ONLINE
    assert get_runner(engine, chatty).status == RunnerStatus.ONLINE
    # Offline runners are not counted again.
    assert run_tick(engine, T0).runners_offline == 0
    assert run_tick(engine, T0 + S).runners_offline == 1
    assert get_runner(engine, boundary).status == RunnerStatus.OFFLINE


def test_tick_deletes_idempotency_keys_older_than_a_day(engine: Engine, seeded: Seeded) -> None:
    run_ids = queue_runs(engine, seeded, 3, now=T0)
    ages = {"old": timedelta(hours=25), "day": timedelta(hours=24), "new": timedelta(hours=1)}
    with write_session(engine) as session:
        for (key, age), run_id in zip(ages.items(), run_ids, strict=True):
            run_store.remember_idempotency_key(
                session,
                team_id=seeded.team_id,
                app_id=seeded.app.id or 0,
                key=key,
                run_id=run_id,
                now=T0 - age,
            )
    result = run_tick(engine, T0)
    assert result.idempotency_keys_deleted == 1
    assert result.changed
    with read_session(engine) as session:
        left = session.exec(select(IdempotencyKey.key).order_by(col(IdempotencyKey.key))).all()
    assert list(left) == ["day", "new"]
    assert run_tick(engine, T0).idempotency_keys_deleted == 0


def test_two_ticks_at_once_never_apply_a_transition_twice(
    engine: Engine, seeded: Seeded, database: Database
) -> None:
    """Two reapers (threads, each with its own engine) pass at the same moment, round
    after round: every stale attempt is expired by exactly one of them and each round
    adds exactly 1 to every run's retry_count."""
    runs = 40
    rounds = 5
    run_ids = queue_runs(engine, seeded, runs, max_retries=rounds, now=T0)
    engines = [create_db_engine(database, pool_size=1) for _ in range(2)]
    try:
        for round_no in range(1, rounds + 1):
            now = T0 + round_no * 100 * S
            lease_all(engine, runs, prefix=f"round{round_no}", now=now, ttl=S)

            results = run_in_threads(
                [functools.partial(run_tick, e, now + 2 * S) for e in engines],
                timeout=30,
                name="reaper",
            )
            expired = [run_id for result in results for run_id, _ in result.expired]
            assert Counter(expired) == dict.fromkeys(run_ids, 1), f"round {round_no}"
            assert {s for r in results for _, s in r.expired} == {RunStatus.QUEUED}
            retries = {get_run(engine, r).retry_count for r in run_ids}
            assert retries == {round_no}
        attempts = all_attempts(engine)
        assert len(attempts) == runs * rounds
        assert {a.status for a in attempts} == {AttemptStatus.EXPIRED}
        assert history_problems(engine) == []
    finally:
        for e in engines:
            e.dispose()


def test_run_forever_reaps_until_stopped(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, max_retries=1)
    must_lease(engine, add_runner(engine, "r"), ttl=timedelta(milliseconds=200))
    stop = threading.Event()
    loop = threading.Thread(
        target=run_forever,
        kwargs={
            "engine": engine,
            "interval": 0.05,
            "runner_offline_after": OFFLINE_AFTER,
            "stop": stop,
        },
        daemon=True,
    )
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while get_run(engine, run_id).status != RunStatus.QUEUED:
            assert time.monotonic() < deadline, "the reaper loop never expired the lease"
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    assert get_run(engine, run_id).retry_count == 1


@pytest.mark.parametrize("runs", [0, 3])
def test_tick_result_reports_what_changed(engine: Engine, seeded: Seeded, runs: int) -> None:
    queue_runs(engine, seeded, runs, now=T0)
    lease_all(engine, runs, prefix="r", now=T0, ttl=S)
    result = run_tick(engine, T0 + 2 * S)
    assert len(result.expired) == runs
    assert result.changed is (runs > 0)


def passes_of(engine: Engine) -> dict[str, ReaperPass]:
    with read_session(engine) as session:
        return {row.name: row for row in session.exec(select(ReaperPass)).all()}


def test_every_pass_is_recorded_under_the_reapers_name(engine: Engine) -> None:
    with write_session(engine) as session:
        tick(session, T0, runner_offline_after=OFFLINE_AFTER, name="reaper-a")
    with write_session(engine) as session:
        tick(session, T0 + S, runner_offline_after=OFFLINE_AFTER, name="reaper-a")
    # Without a name, the process's own (hostname:pid).
    run_tick(engine, T0 + 2 * S)
    rows = passes_of(engine)
    assert set(rows) == {"reaper-a", service.reaper_name()}
    assert rows["reaper-a"].passes == 2
    assert as_utc(rows["reaper-a"].last_pass_at) == T0 + S
    assert 0 <= rows["reaper-a"].last_pass_duration_ms < 10_000
    assert rows["reaper-a"].leases_expired == 0


def test_pass_totals_add_up_to_what_the_passes_did(engine: Engine, seeded: Seeded) -> None:
    # Two runs with a retry left, three without, one being cancelled; all leases lost.
    retried = queue_runs(engine, seeded, 2, max_retries=1, now=T0)
    buried = queue_runs(engine, seeded, 3, max_retries=0, now=T0)
    (cancelling,) = queue_runs(engine, seeded, max_retries=3, now=T0)
    lease_all(engine, 6, prefix="lost", now=T0, ttl=S)
    with write_session(engine) as session:
        lifecycle.cancel(session, cancelling, T0 + S / 2)
    add_runner(engine, "silent", now=T0 - 2 * OFFLINE_AFTER)

    def reap(at: datetime) -> TickResult:
        with write_session(engine) as session:
            return tick(session, at, runner_offline_after=OFFLINE_AFTER, name="r")

    first = reap(T0 + 10 * S)
    assert len(first.expired) == 6
    # The retried runs are leased again and lost again: this time they are buried.
    lease_all(engine, 2, prefix="again", now=T0 + 11 * S, ttl=S)
    second = reap(T0 + 20 * S)
    assert sorted(run_id for run_id, _ in second.expired) == retried

    row = passes_of(engine)["r"]
    assert (row.passes, row.leases_expired) == (2, 8)
    assert (row.runs_retried, row.runs_buried, row.runs_cancelled) == (2, 3 + 2, 1)
    assert row.leases_expired == row.runs_retried + row.runs_buried + row.runs_cancelled
    # Only "silent" has been quiet longer than OFFLINE_AFTER.
    assert (first.runners_offline, second.runners_offline, row.runners_marked_offline) == (1, 0, 1)
    assert as_utc(row.last_pass_at) == T0 + 20 * S
    assert {get_run(engine, run_id).status for run_id in buried} == {RunStatus.DEAD}


def test_a_pass_that_rolls_back_is_not_counted(engine: Engine, seeded: Seeded) -> None:
    queue_runs(engine, seeded, max_retries=0, now=T0)
    lease_all(engine, 1, prefix="lost", now=T0, ttl=S)

    def failing_pass() -> None:
        with write_session(engine) as session:
            assert tick(session, T0 + 10 * S, runner_offline_after=OFFLINE_AFTER, name="r").expired
            raise RuntimeError("the transaction fails after the pass")

    with pytest.raises(RuntimeError):
        failing_pass()
    assert passes_of(engine) == {}
    run_tick(engine, T0 + 10 * S)
    assert sum(row.runs_buried for row in passes_of(engine).values()) == 1
