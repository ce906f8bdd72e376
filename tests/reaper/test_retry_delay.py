"""The reaper's lost-lease retry waits for the run's retry policy."""

from datetime import timedelta

from sqlalchemy import Engine

from minitower_reaper.service import tick
from minitower_shared.clock import as_utc, utcnow
from minitower_shared.db import write_session
from minitower_shared.retry import JITTER, RetryPolicy
from minitower_shared.states import RunStatus
from tests.support.seed import Seeded, add_runner, get_run, lease, must_lease, queue_runs


def test_a_lost_lease_is_retried_after_the_policy_delay(engine: Engine, seeded: Seeded) -> None:
    policy = RetryPolicy(max_retries=1, retry_delay=120, retry_max_delay=600)
    (run_id,) = queue_runs(engine, seeded, retry=policy)
    runner = add_runner(engine, "silent")
    now = utcnow()
    must_lease(engine, runner, now=now, ttl=timedelta(seconds=1))
    reaped_at = now + timedelta(seconds=5)
    with write_session(engine) as session:
        result = tick(session, reaped_at, runner_offline_after=timedelta(hours=1), name="r")
    assert result.expired == [(run_id, RunStatus.QUEUED)]
    run = get_run(engine, run_id)
    assert run.not_before is not None
    waited = (as_utc(run.not_before) - reaped_at).total_seconds()
    assert 120 * (1 - JITTER) - 1e-3 <= waited <= 120 + 1e-3
    other = add_runner(engine, "other")
    assert lease(engine, other, now=reaped_at + timedelta(seconds=60)) is None
    assert must_lease(engine, other, now=as_utc(run.not_before)).run.id == run_id
