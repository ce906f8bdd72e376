"""Delayed runs, retry policies and concurrency limits in the store's lease path, driven
with explicit times (no sleeping) on a real migrated SQLite file."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col

from minitower_shared.clock import as_utc, utcnow
from minitower_shared.db import write_session
from minitower_shared.models import App, Environment
from minitower_shared.retry import JITTER, RetryPolicy, jittered, nominal_delay
from minitower_shared.states import AttemptStatus, RunStatus
from minitower_shared.store import queue
from tests.support.invariants import history_problems
from tests.support.seed import (
    Outcome,
    Seeded,
    add_runner,
    attempts_of,
    expire_stale,
    finish,
    get_run,
    lease,
    must_lease,
    queue_runs,
    seed_app,
    start,
)


def _expire(engine: Engine, at: datetime) -> None:
    expire_stale(engine, at)


def _fail(engine: Engine, attempt_id: int, *, now: datetime, message: str | None) -> None:
    outcome = finish(
        engine, attempt_id, AttemptStatus.FAILED, now=now, exit_code=1, error_message=message
    )
    assert outcome == Outcome.OK


def _set_app_limit(engine: Engine, app_id: int, limit: int | None) -> None:
    with write_session(engine) as session:
        session.execute(update(App).where(col(App.id) == app_id).values(max_concurrent_runs=limit))


# --- delayed runs ------------------------------------------------------------------------


def test_a_delayed_run_is_not_leased_before_its_time(engine: Engine, seeded: Seeded) -> None:
    now = utcnow()
    (delayed,) = queue_runs(engine, seeded, scheduled_for=now + timedelta(minutes=5), now=now)
    (later,) = queue_runs(engine, seeded, now=now + timedelta(seconds=1))
    runner = add_runner(engine, "r1")
    # The delayed run is older, but not due: the newer one is leased instead.
    assert must_lease(engine, runner, now=now + timedelta(seconds=2)).run.id == later
    other = add_runner(engine, "r2")
    assert lease(engine, other, now=now + timedelta(minutes=5) - timedelta(milliseconds=1)) is None
    with write_session(engine) as session:
        assert queue.next_delayed_at(session) == now + timedelta(minutes=5)
    grant = must_lease(engine, other, now=now + timedelta(minutes=5))
    assert grant.run.id == delayed
    run = get_run(engine, delayed)
    assert as_utc(run.scheduled_for) == now + timedelta(minutes=5)  # type: ignore[arg-type]
    assert run.delayed is False and run.status == RunStatus.LEASED


def test_a_run_scheduled_in_the_past_is_leased_at_once(engine: Engine, seeded: Seeded) -> None:
    now = utcnow()
    (run_id,) = queue_runs(engine, seeded, scheduled_for=now - timedelta(hours=1), now=now)
    assert get_run(engine, run_id).delayed is False
    assert must_lease(engine, add_runner(engine, "r"), now=now).run.id == run_id


# --- retries -----------------------------------------------------------------------------


def test_backoff_delays_between_attempts_are_within_the_policy_bounds(
    engine: Engine, seeded: Seeded
) -> None:
    policy = RetryPolicy(
        max_retries=4, retry_on=("lost",), retry_delay=10, retry_backoff=2, retry_max_delay=30
    )
    (run_id,) = queue_runs(engine, seeded, retry=policy)
    runner = add_runner(engine, "r")
    clock = utcnow()
    for retry_no, nominal in enumerate([10.0, 20.0, 30.0, 30.0], start=1):
        grant = must_lease(engine, runner, now=clock, ttl=timedelta(seconds=1))
        assert grant.run.id == run_id and grant.attempt.attempt_no == retry_no
        expired_at = clock + timedelta(seconds=2)
        _expire(engine, expired_at)
        run = get_run(engine, run_id)
        assert run.status == RunStatus.QUEUED and run.retry_count == retry_no
        assert run.not_before is not None and run.delayed is True
        waited = (as_utc(run.not_before) - expired_at).total_seconds()
        assert nominal * (1 - JITTER) - 1e-3 <= waited <= nominal + 1e-3, (retry_no, waited)
        # Not a moment before its backoff ends.
        assert lease(engine, runner, now=as_utc(run.not_before) - timedelta(milliseconds=5)) is None
        clock = as_utc(run.not_before)
    must_lease(engine, runner, now=clock, ttl=timedelta(seconds=1))
    _expire(engine, clock + timedelta(seconds=2))
    assert get_run(engine, run_id).status == RunStatus.DEAD
    assert [a.status for a in attempts_of(engine, run_id)] == [AttemptStatus.EXPIRED] * 5
    assert history_problems(engine) == []


def test_nominal_delay_and_jitter_stay_within_bounds() -> None:
    for retry_no in range(1, 101):
        nominal = nominal_delay(
            retry_delay=1, retry_backoff=10, retry_max_delay=3600, retry_no=retry_no
        )
        assert nominal == min(10 ** (retry_no - 1), 3600)
        for rand in (0.0, 0.5, 0.999999):
            assert nominal * (1 - JITTER) <= jittered(nominal, rand) <= nominal


def _run_that_fails(engine: Engine, seeded: Seeded, policy: RetryPolicy, message: str | None):
    (run_id,) = queue_runs(engine, seeded, retry=policy)
    runner = add_runner(engine, f"r-{run_id}")
    now = utcnow()
    grant = must_lease(engine, runner, now=now)
    assert grant.attempt.id is not None
    assert start(engine, grant.attempt.id, now=now) == Outcome.OK
    _fail(engine, grant.attempt.id, now=now + timedelta(seconds=1), message=message)
    return run_id, runner, now


def test_a_failure_is_retried_when_retry_on_names_failed(engine: Engine, seeded: Seeded) -> None:
    policy = RetryPolicy(max_retries=1, retry_on=("failed",), retry_delay=60)
    run_id, runner, now = _run_that_fails(engine, seeded, policy, "exit 1")
    run = get_run(engine, run_id)
    assert (run.status, run.retry_count) == (RunStatus.QUEUED, 1)
    assert run.finished_at is None and run.not_before is not None
    due = as_utc(run.not_before)
    assert 48 - 1e-3 <= (due - (now + timedelta(seconds=1))).total_seconds() <= 60 + 1e-3
    grant = must_lease(engine, runner, now=due)
    assert grant.run.id == run_id and grant.attempt.attempt_no == 2
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=due)
    # No retries left: the second failure is final.
    _fail(engine, grant.attempt.id, now=due, message="exit 1")
    assert get_run(engine, run_id).status == RunStatus.FAILED
    assert [a.status for a in attempts_of(engine, run_id)] == [AttemptStatus.FAILED] * 2
    assert history_problems(engine) == []


@pytest.mark.parametrize(
    "retry_on", [("lost",), ("timeout",)], ids=["default-lost-only", "timeout-only"]
)
def test_a_failure_is_final_when_retry_on_does_not_name_it(
    engine: Engine, seeded: Seeded, retry_on: tuple[str, ...]
) -> None:
    policy = RetryPolicy(max_retries=3, retry_on=retry_on)
    run_id, _runner, _now = _run_that_fails(engine, seeded, policy, "exit 1")
    run = get_run(engine, run_id)
    assert (run.status, run.retry_count) == (RunStatus.FAILED, 0)
    assert history_problems(engine) == []


def test_a_timeout_is_retried_when_retry_on_names_timeout(engine: Engine, seeded: Seeded) -> None:
    policy = RetryPolicy(max_retries=1, retry_on=("timeout",))
    run_id, runner, now = _run_that_fails(
        engine, seeded, policy, "timeout: the run exceeded its timeout of 60 s"
    )
    run = get_run(engine, run_id)
    assert (run.status, run.retry_count, run.delayed) == (RunStatus.QUEUED, 1, False)
    assert must_lease(engine, runner, now=now + timedelta(seconds=2)).run.id == run_id


def test_a_lost_lease_is_not_retried_when_retry_on_leaves_it_out(
    engine: Engine, seeded: Seeded
) -> None:
    (run_id,) = queue_runs(engine, seeded, retry=RetryPolicy(max_retries=3, retry_on=("failed",)))
    now = utcnow()
    must_lease(engine, add_runner(engine, "r"), now=now, ttl=timedelta(seconds=1))
    _expire(engine, now + timedelta(seconds=2))
    assert get_run(engine, run_id).status == RunStatus.DEAD


# --- concurrency limits ------------------------------------------------------------------


def test_an_app_at_its_limit_never_blocks_other_apps(engine: Engine, seeded: Seeded) -> None:
    other = seed_app(engine, slug="other")
    _set_app_limit(engine, seeded.app.id, 1)  # type: ignore[arg-type]
    now = utcnow()
    busy = queue_runs(engine, seeded, 50, priority=10, now=now)
    calm = queue_runs(engine, other, 3, now=now)
    runners = [add_runner(engine, f"r{i}") for i in range(5)]
    assert must_lease(engine, runners[0], now=now).run.id == busy[0]
    # The busy app's 49 higher-priority runs wait; the other app's runs go, in order.
    assert [must_lease(engine, r, now=now).run.id for r in runners[1:4]] == calm
    assert lease(engine, runners[4], now=now) is None
    _set_app_limit(engine, seeded.app.id, None)
    assert must_lease(engine, runners[4], now=now).run.id == busy[1]


def test_an_environment_limit_covers_the_teams_runs_there(engine: Engine, seeded: Seeded) -> None:
    second = seed_app(engine, slug="hello-two")  # an app of another team
    with write_session(engine) as session:
        session.execute(
            update(Environment)
            .where(col(Environment.id) == seeded.environment.id)
            .values(max_concurrent_runs=2)
        )
    now = utcnow()
    ours = queue_runs(engine, seeded, 3, now=now)
    theirs = queue_runs(engine, second, 1, now=now + timedelta(seconds=1))
    runners = [add_runner(engine, f"r{i}") for i in range(4)]
    assert [must_lease(engine, r, now=now).run.id for r in runners[:2]] == ours[:2]
    # Our environment is full; another team's runs in the same named environment go on.
    assert must_lease(engine, runners[2], now=now).run.id == theirs[0]
    assert lease(engine, runners[3], now=now) is None


def test_queue_figures_leave_delayed_runs_out_until_they_are_released(
    engine: Engine, seeded: Seeded
) -> None:
    from minitower_shared.db import read_session
    from minitower_shared.store import runs as run_store

    now = utcnow()
    queue_runs(engine, seeded, 2, scheduled_for=now + timedelta(minutes=1), now=now)
    queue_runs(engine, seeded, 1, now=now)
    with read_session(engine) as session:
        assert run_store.queue_by_environment(session)["default"].depth == 1
    with write_session(engine) as session:
        assert queue.release_due_runs(session, now + timedelta(minutes=1)) == 2
    with read_session(engine) as session:
        assert run_store.queue_by_environment(session)["default"].depth == 3
