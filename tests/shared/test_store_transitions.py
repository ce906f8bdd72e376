"""The store's transitions on a real, migrated SQLite file, one step at a time.

Time is passed in explicitly (``now``), so lease expiry is exercised without sleeping.
"""

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from minitower_shared.clock import utcnow
from minitower_shared.db import write_session
from minitower_shared.models import RunAttempt, RunLog
from minitower_shared.states import (
    ACTIVE_ATTEMPT_STATUSES,
    ATTEMPT_TRANSITIONS,
    RUN_TRANSITIONS,
    AttemptStatus,
    RunStatus,
)
from minitower_shared.store import lifecycle
from minitower_shared.store.lifecycle import Granted, Refusal, Refused
from tests.support.databases import unique_violation
from tests.support.invariants import history_problems, snapshot
from tests.support.seed import (
    TTL,
    Outcome,
    Seeded,
    add_runner,
    attempts_of,
    cancel,
    expire_stale,
    finish,
    get_run,
    heartbeat,
    key_of,
    lease,
    must_lease,
    outcome_of,
    queue_runs,
    seed_app,
    start,
)

T0 = utcnow()
ACTIVE = {s.value for s in ACTIVE_ATTEMPT_STATUSES}
S = timedelta(seconds=1)
BUSY = "this runner already holds a live lease; finish it first"


def expire(engine: Engine, attempt_id: int, *, now: datetime) -> RunStatus | None:
    with write_session(engine) as session:
        return lifecycle.expire(session, attempt_id, now)


def attempt_row(engine: Engine, attempt_id: int) -> RunAttempt:
    with write_session(engine) as session:
        attempt = session.get(RunAttempt, attempt_id)
        assert attempt is not None
        return attempt


def assert_history_ok(engine: Engine) -> None:
    assert history_problems(engine) == []


# --- lease ---------------------------------------------------------------------------


def test_lease_picks_priority_then_age_then_id(engine: Engine, seeded: Seeded) -> None:
    (plain,) = queue_runs(engine, seeded, now=T0)
    (urgent,) = queue_runs(engine, seeded, priority=5, now=T0 + S)
    (older,) = queue_runs(engine, seeded, now=T0 - S)
    same_time = queue_runs(engine, seeded, 2, now=T0)
    (low,) = queue_runs(engine, seeded, priority=-1, now=T0 - 10 * S)
    expected = [urgent, older, plain, *same_time, low]

    runners = [add_runner(engine, f"runner-{i}") for i in range(len(expected))]
    leased = [must_lease(engine, r, now=T0 + 2 * S).run.id for r in runners]
    assert leased == expected
    assert lease(engine, add_runner(engine, "late"), now=T0 + 2 * S) is None
    assert_history_ok(engine)


def test_lease_grant_and_rows(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0, input={"x": 1})
    runner = add_runner(engine, "r1")
    grant = must_lease(engine, runner, now=T0 + S, ttl=10 * S)
    assert grant.run.id == run_id
    assert grant.run.status == RunStatus.LEASED
    assert grant.run.input == {"x": 1}
    assert grant.app.slug == "hello"
    assert grant.version.entrypoint == "main.py"
    assert grant.attempt.attempt_no == 1
    assert grant.attempt.status == AttemptStatus.LEASED
    assert grant.attempt.runner_id == runner
    assert grant.attempt.lease_expires_at == T0 + 11 * S
    assert get_run(engine, run_id).status == RunStatus.LEASED


def test_lease_only_takes_runs_of_the_runners_environment(engine: Engine) -> None:
    gpu = seed_app(engine, slug="trainer", environment="gpu")
    default = seed_app(engine, slug="hello")
    (gpu_run,) = queue_runs(engine, gpu, now=T0 - S)
    (default_run,) = queue_runs(engine, default, now=T0)
    cpu_runner = add_runner(engine, "cpu")
    gpu_runner = add_runner(engine, "gpu", environment="gpu")
    assert must_lease(engine, cpu_runner, now=T0).run.id == default_run
    with write_session(engine) as session:
        grant = lifecycle.lease(
            session,
            runner_id=gpu_runner,
            environment="gpu",
            lease_token_hash="gpu-lease",
            now=T0,
            ttl=TTL,
        )
    assert isinstance(grant, Granted) and grant.run.id == gpu_run


def test_lease_skips_cancelled_runs(engine: Engine, seeded: Seeded) -> None:
    first, second = queue_runs(engine, seeded, 2, now=T0)
    cancel(engine, first, now=T0)
    assert get_run(engine, first).status == RunStatus.CANCELLED
    assert must_lease(engine, add_runner(engine, "r"), now=T0).run.id == second


def test_a_runner_holds_one_live_lease(engine: Engine, seeded: Seeded) -> None:
    queue_runs(engine, seeded, 2, now=T0)
    runner = add_runner(engine, "r1")
    must_lease(engine, runner, now=T0, ttl=10 * S)
    assert lease(engine, runner, now=T0 + 9 * S) == Refused(Refusal.BUSY, BUSY)
    assert len([r for r in snapshot(engine)[0] if r.status == RunStatus.QUEUED]) == 1


def test_runner_with_an_expired_attempt_can_lease_again(engine: Engine, seeded: Seeded) -> None:
    """The lease is gone the moment it expires, before any reaper runs: the runner's
    stale attempt is expired inline and it gets the next run (here the same run again,
    which went back to its old place at the head of the queue)."""
    (run_id,) = queue_runs(engine, seeded, max_retries=1, now=T0)
    (newer,) = queue_runs(engine, seeded, now=T0 + S)
    runner = add_runner(engine, "r1")
    first = must_lease(engine, runner, now=T0 + S, ttl=10 * S)
    assert first.run.id == run_id
    assert lease(engine, runner, now=T0 + 10 * S) == Refused(Refusal.BUSY, BUSY)

    again = must_lease(engine, runner, now=T0 + 11 * S, ttl=10 * S)
    assert again.run.id == run_id
    assert again.attempt.attempt_no == 2
    assert first.attempt.id is not None
    stale = attempt_row(engine, first.attempt.id)
    assert stale.status == AttemptStatus.EXPIRED
    assert stale.finished_at == T0 + 11 * S
    run = get_run(engine, run_id)
    assert (run.status, run.retry_count) == (RunStatus.LEASED, 1)
    assert get_run(engine, newer).status == RunStatus.QUEUED

    # Out of retries: the inline expiry buries the run and the runner moves on.
    third = must_lease(engine, runner, now=T0 + 22 * S)
    assert third.run.id == newer
    run = get_run(engine, run_id)
    assert (run.status, run.retry_count) == (RunStatus.DEAD, 1)
    assert_history_ok(engine)


# --- start ---------------------------------------------------------------------------


def test_start_is_repeatable_and_extends_the_lease(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    assert start(engine, grant.attempt.id, now=T0 + 5 * S, ttl=10 * S) == Outcome.OK
    attempt = attempt_row(engine, grant.attempt.id)
    assert attempt.status == AttemptStatus.RUNNING
    assert attempt.started_at == T0 + 5 * S
    assert attempt.lease_expires_at == T0 + 15 * S
    run = get_run(engine, run_id)
    assert (run.status, run.started_at) == (RunStatus.RUNNING, T0 + 5 * S)
    assert start(engine, grant.attempt.id, now=T0 + 6 * S) == Outcome.OK
    assert attempt_row(engine, grant.attempt.id).started_at == T0 + 5 * S


def test_start_after_expiry_is_gone(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    assert start(engine, grant.attempt.id, now=T0 + 10 * S) == Outcome.GONE
    assert attempt_row(engine, grant.attempt.id).status == AttemptStatus.LEASED
    assert get_run(engine, run_id).status == RunStatus.LEASED


def test_start_of_a_cancelled_lease_keeps_it_cancelling(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0)
    assert grant.attempt.id is not None
    cancel(engine, run_id, now=T0 + S)
    assert start(engine, grant.attempt.id, now=T0 + 2 * S) == Outcome.OK
    assert attempt_row(engine, grant.attempt.id).status == AttemptStatus.CANCELLING
    assert get_run(engine, run_id).status == RunStatus.CANCELLING
    assert finish(engine, grant.attempt.id, AttemptStatus.CANCELLED, now=T0 + 3 * S) == Outcome.OK
    assert get_run(engine, run_id).status == RunStatus.CANCELLED
    assert_history_ok(engine)


# --- expiry --------------------------------------------------------------------------


def test_expiry_retries_while_retries_are_left_then_buries(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, max_retries=2, now=T0)
    queued_at = get_run(engine, run_id).queued_at
    runners = [add_runner(engine, f"r{i}") for i in range(3)]
    now = T0
    for attempt_no, runner in enumerate(runners, start=1):
        grant = must_lease(engine, runner, now=now, ttl=10 * S)
        assert grant.run.id == run_id
        assert grant.attempt.attempt_no == attempt_no
        assert grant.attempt.id is not None
        assert start(engine, grant.attempt.id, now=now + S, ttl=10 * S) == Outcome.OK
        # Not expirable while the lease lasts.
        assert expire(engine, grant.attempt.id, now=now + 10 * S) is None
        new_status = expire(engine, grant.attempt.id, now=now + 11 * S)
        run = get_run(engine, run_id)
        if attempt_no <= 2:
            assert new_status == RunStatus.QUEUED
            assert run.status == RunStatus.QUEUED
            assert run.retry_count == attempt_no
            # Back at its old place in the queue, not at the end.
            assert run.queued_at == queued_at
            assert run.finished_at is None
        else:
            assert new_status == RunStatus.DEAD
            assert run.status == RunStatus.DEAD
            assert run.retry_count == 2
            assert run.finished_at == now + 11 * S
            assert run.error_message is not None and "expired" in run.error_message
        # Expiring twice changes nothing.
        assert expire(engine, grant.attempt.id, now=now + 12 * S) is None
        assert get_run(engine, run_id).retry_count == run.retry_count
        now += 20 * S
    assert [a.status for a in attempts_of(engine, run_id)] == [AttemptStatus.EXPIRED] * 3
    assert lease(engine, add_runner(engine, "late"), now=now) is None
    assert_history_ok(engine)


def test_a_retried_run_keeps_its_place_in_the_queue(engine: Engine, seeded: Seeded) -> None:
    (retried,) = queue_runs(engine, seeded, max_retries=1, now=T0)
    first = must_lease(engine, add_runner(engine, "r1"), now=T0, ttl=10 * S)
    (newer,) = queue_runs(engine, seeded, now=T0 + 5 * S)
    assert first.attempt.id is not None
    assert expire(engine, first.attempt.id, now=T0 + 20 * S) == RunStatus.QUEUED
    second = must_lease(engine, add_runner(engine, "r2"), now=T0 + 21 * S)
    assert (second.run.id, second.attempt.attempt_no) == (retried, 2)
    assert must_lease(engine, add_runner(engine, "r3"), now=T0 + 21 * S).run.id == newer


def test_expiry_of_a_cancelling_run_cancels_it(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, max_retries=3, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    assert start(engine, grant.attempt.id, now=T0 + S, ttl=10 * S) == Outcome.OK
    cancel(engine, run_id, now=T0 + 2 * S)
    assert expire(engine, grant.attempt.id, now=T0 + 11 * S) == RunStatus.CANCELLED
    run = get_run(engine, run_id)
    # A cancel is never retried, however many retries are left.
    assert (run.status, run.retry_count) == (RunStatus.CANCELLED, 0)
    assert run.finished_at == T0 + 11 * S
    assert attempt_row(engine, grant.attempt.id).status == AttemptStatus.EXPIRED
    assert_history_ok(engine)


def test_expire_stale_attempts_takes_only_expired_ones(engine: Engine, seeded: Seeded) -> None:
    short, long_ = queue_runs(engine, seeded, 2, max_retries=1, now=T0)
    must_lease(engine, add_runner(engine, "short"), now=T0, ttl=5 * S)
    must_lease(engine, add_runner(engine, "long"), now=T0, ttl=50 * S)
    assert expire_stale(engine, T0 + 4 * S) == []
    assert expire_stale(engine, T0 + 5 * S) == [(short, RunStatus.QUEUED)]
    assert expire_stale(engine, T0 + 6 * S) == []
    assert get_run(engine, long_).status == RunStatus.LEASED
    assert_history_ok(engine)


# --- heartbeat -----------------------------------------------------------------------


def test_heartbeat_extends_a_live_lease(engine: Engine, seeded: Seeded) -> None:
    queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    assert heartbeat(engine, grant.attempt.id, now=T0 + 9 * S) == Outcome.OK
    assert attempt_row(engine, grant.attempt.id).lease_expires_at == T0 + 9 * S + TTL


def test_heartbeat_never_revives_an_expired_lease(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, max_retries=1, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    assert start(engine, grant.attempt.id, now=T0 + S, ttl=10 * S) == Outcome.OK
    expires = attempt_row(engine, grant.attempt.id).lease_expires_at
    # Expired but not reaped yet: still gone, and the lease is left as it was.
    assert heartbeat(engine, grant.attempt.id, now=expires) == Outcome.GONE
    assert heartbeat(engine, grant.attempt.id, now=expires + S) == Outcome.GONE
    attempt = attempt_row(engine, grant.attempt.id)
    assert (attempt.status, attempt.lease_expires_at) == (AttemptStatus.RUNNING, expires)
    # Reaped: still gone, at any time.
    assert expire(engine, grant.attempt.id, now=expires + 2 * S) == RunStatus.QUEUED
    assert heartbeat(engine, grant.attempt.id, now=T0) == Outcome.GONE
    assert attempt_row(engine, grant.attempt.id).status == AttemptStatus.EXPIRED
    assert get_run(engine, run_id).status == RunStatus.QUEUED


def test_heartbeat_on_a_finished_attempt_is_gone(engine: Engine, seeded: Seeded) -> None:
    queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0)
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=T0)
    assert finish(engine, grant.attempt.id, AttemptStatus.COMPLETED, now=T0 + S) == Outcome.OK
    assert heartbeat(engine, grant.attempt.id, now=T0 + 2 * S) == Outcome.GONE


# --- result --------------------------------------------------------------------------


@pytest.mark.parametrize("reported", [AttemptStatus.COMPLETED, AttemptStatus.FAILED])
def test_finish_is_idempotent_and_conflicts_on_another_status(
    engine: Engine, seeded: Seeded, reported: AttemptStatus
) -> None:
    (run_id,) = queue_runs(engine, seeded, max_retries=5, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=T0 + S, ttl=10 * S)
    assert finish(engine, grant.attempt.id, reported, now=T0 + 2 * S, exit_code=3) == Outcome.OK
    run = get_run(engine, run_id)
    assert (run.status, run.exit_code, run.finished_at) == (reported.value, 3, T0 + 2 * S)
    # A failed result is final, even with retries left.
    assert run.retry_count == 0

    # The same result again, even after the lease would have run out: OK, nothing moves.
    for later in (T0 + 3 * S, T0 + 100 * S):
        assert finish(engine, grant.attempt.id, reported, now=later, exit_code=3) == Outcome.OK
    other = AttemptStatus.FAILED if reported == AttemptStatus.COMPLETED else AttemptStatus.COMPLETED
    assert finish(engine, grant.attempt.id, other, now=T0 + 3 * S) == Outcome.CONFLICT
    assert finish(engine, grant.attempt.id, AttemptStatus.CANCELLED, now=T0 + 3 * S) == (
        Outcome.CONFLICT
    )
    attempt = attempt_row(engine, grant.attempt.id)
    assert (attempt.status, attempt.reported_status) == (reported.value, reported.value)
    assert attempt.finished_at == T0 + 2 * S
    assert get_run(engine, run_id).updated_at == T0 + 2 * S
    # Terminal: neither expiry nor cancel touch it again.
    assert expire(engine, grant.attempt.id, now=T0 + 100 * S) is None
    cancel(engine, run_id, now=T0 + 100 * S)
    assert get_run(engine, run_id).status == reported.value
    assert_history_ok(engine)


def test_finish_before_start_is_a_conflict(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0)
    assert grant.attempt.id is not None
    assert finish(engine, grant.attempt.id, AttemptStatus.COMPLETED, now=T0) == Outcome.CONFLICT
    assert get_run(engine, run_id).status == RunStatus.LEASED


def test_finish_after_expiry_is_gone(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, max_retries=1, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=T0, ttl=10 * S)
    # Past its lease but not reaped: gone, and the run is untouched.
    assert finish(engine, grant.attempt.id, AttemptStatus.COMPLETED, now=T0 + 10 * S) == (
        Outcome.GONE
    )
    assert get_run(engine, run_id).status == RunStatus.RUNNING
    assert expire(engine, grant.attempt.id, now=T0 + 10 * S) == RunStatus.QUEUED
    assert finish(engine, grant.attempt.id, AttemptStatus.COMPLETED, now=T0 + 11 * S) == (
        Outcome.GONE
    )
    # The run's next attempt is unaffected by the stale one.
    second = must_lease(engine, add_runner(engine, "r2"), now=T0 + 12 * S)
    assert second.attempt.attempt_no == 2
    assert get_run(engine, run_id).status == RunStatus.LEASED
    assert_history_ok(engine)


@pytest.mark.parametrize(
    ("reported", "final"),
    [
        (AttemptStatus.COMPLETED, RunStatus.COMPLETED),
        (AttemptStatus.FAILED, RunStatus.CANCELLED),
        (AttemptStatus.CANCELLED, RunStatus.CANCELLED),
    ],
)
def test_result_of_a_cancelling_attempt(
    engine: Engine, seeded: Seeded, reported: AttemptStatus, final: RunStatus
) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0)
    assert grant.attempt.id is not None
    start(engine, grant.attempt.id, now=T0)
    cancel(engine, run_id, now=T0 + S)
    run = get_run(engine, run_id)
    assert (run.status, run.cancel_requested) == (RunStatus.CANCELLING, True)
    assert attempt_row(engine, grant.attempt.id).status == AttemptStatus.CANCELLING
    # A repeated cancel changes nothing.
    cancel(engine, run_id, now=T0 + 2 * S)
    assert get_run(engine, run_id).updated_at == T0 + S

    assert finish(engine, grant.attempt.id, reported, now=T0 + 3 * S) == Outcome.OK
    assert get_run(engine, run_id).status == final
    attempt = attempt_row(engine, grant.attempt.id)
    assert (attempt.status, attempt.reported_status) == (final.value, reported.value)
    # The same report again is recognised by what was reported, not the mapped status.
    assert finish(engine, grant.attempt.id, reported, now=T0 + 4 * S) == Outcome.OK
    assert_history_ok(engine)


def test_cancel_of_a_queued_run_is_immediate_and_idempotent(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    cancel(engine, run_id, now=T0 + S)
    cancel(engine, run_id, now=T0 + 2 * S)
    run = get_run(engine, run_id)
    assert (run.status, run.finished_at, run.cancel_requested) == (
        RunStatus.CANCELLED,
        T0 + S,
        True,
    )
    assert attempts_of(engine, run_id) == []
    assert_history_ok(engine)


# --- logs ----------------------------------------------------------------------------


def test_resent_log_lines_are_ignored_and_expired_leases_refused(
    engine: Engine, seeded: Seeded
) -> None:
    queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r"), now=T0, ttl=10 * S)
    assert grant.attempt.id is not None

    def append(seqs: list[int], now: datetime, text: str) -> Outcome:
        lines = [{"seq": s, "stream": "stdout", "line": text, "logged_at": now} for s in seqs]
        with write_session(engine) as session:
            key = key_of(session, grant.attempt.id)
            return outcome_of(
                lifecycle.append_logs(session, key, lines, now=now, max_bytes=1 << 20)
            )

    assert append([1, 2], T0, "first") == Outcome.OK
    assert append([2, 3], T0 + S, "again") == Outcome.OK
    assert append([4], T0 + 10 * S, "late") == Outcome.GONE
    with write_session(engine) as session:
        rows = session.exec(select(RunLog.seq, RunLog.line).order_by(col(RunLog.seq))).all()
    assert [tuple(r) for r in rows] == [(1, "first"), (2, "first"), (3, "again")]


# --- structural invariants -----------------------------------------------------------


def _insert_attempt(
    engine: Engine, *, run_id: int, runner_id: int, attempt_no: int, status: AttemptStatus
) -> None:
    with write_session(engine) as session:
        session.add(
            RunAttempt(
                run_id=run_id,
                runner_id=runner_id,
                attempt_no=attempt_no,
                lease_token_hash=f"direct-{run_id}-{runner_id}-{attempt_no}-{status.value}",
                lease_expires_at=T0 + TTL,
                status=status.value,
                leased_at=T0,
            )
        )


@pytest.mark.parametrize(
    "status", [AttemptStatus.LEASED, AttemptStatus.RUNNING, AttemptStatus.CANCELLING]
)
def test_the_database_refuses_a_second_active_attempt_for_a_run(
    engine: Engine, seeded: Seeded, status: AttemptStatus
) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    must_lease(engine, add_runner(engine, "r1"), now=T0)
    other = add_runner(engine, "r2")
    with pytest.raises(
        IntegrityError, match=unique_violation("run_attempt.run_id", "ux_attempt_active_run")
    ):
        _insert_attempt(engine, run_id=run_id, runner_id=other, attempt_no=2, status=status)
    # Finished attempts are history, not a claim: any number may sit beside a live one.
    for no, finished in enumerate([AttemptStatus.EXPIRED, AttemptStatus.FAILED], start=2):
        _insert_attempt(engine, run_id=run_id, runner_id=other, attempt_no=no, status=finished)


@pytest.mark.parametrize(
    "status", [AttemptStatus.LEASED, AttemptStatus.RUNNING, AttemptStatus.CANCELLING]
)
def test_the_database_refuses_a_second_active_attempt_for_a_runner(
    engine: Engine, seeded: Seeded, status: AttemptStatus
) -> None:
    _held, other_run = queue_runs(engine, seeded, 2, now=T0)
    runner = add_runner(engine, "r1")
    must_lease(engine, runner, now=T0)
    with pytest.raises(
        IntegrityError,
        match=unique_violation("run_attempt.runner_id", "ux_attempt_active_runner"),
    ):
        _insert_attempt(engine, run_id=other_run, runner_id=runner, attempt_no=1, status=status)
    _insert_attempt(
        engine, run_id=other_run, runner_id=runner, attempt_no=1, status=AttemptStatus.EXPIRED
    )


def test_the_database_refuses_a_duplicate_attempt_number(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    runner = add_runner(engine, "r1")
    _insert_attempt(
        engine, run_id=run_id, runner_id=runner, attempt_no=1, status=AttemptStatus.EXPIRED
    )
    with pytest.raises(
        IntegrityError,
        match=unique_violation(
            "run_attempt.run_id, run_attempt.attempt_no", "run_attempt_run_id_attempt_no_key"
        ),
    ):
        _insert_attempt(
            engine, run_id=run_id, runner_id=runner, attempt_no=1, status=AttemptStatus.FAILED
        )


# --- every transition, over a whole random history ---------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_only_take_allowed_transitions(engine: Engine, seed: int) -> None:
    """Drive runs with random interleavings of every store operation and a moving clock;
    after each step, every status change must be an edge of the state tables, terminal
    runs must never change, and the whole history must stay consistent."""
    rng = random.Random(seed)
    seeded = seed_app(engine)
    runners = [add_runner(engine, f"r{i}") for i in range(4)]
    now = T0
    queue_runs(engine, seeded, 6, max_retries=1, now=now)
    queue_runs(engine, seeded, 4, max_retries=0, priority=1, now=now)
    ttl = 10 * S
    before = _statuses(engine)
    seen: set[str] = set()
    for step in range(150):
        runs, attempts = snapshot(engine)
        run_ids = [r.id for r in runs if r.id is not None]
        attempt_ids = [a.id for a in attempts if a.id is not None]
        live_ids = [a.id for a in attempts if a.id is not None and a.status in ACTIVE]
        op = rng.choice(["lease", "start", "heartbeat", "finish", "cancel", "reap", "tick"])
        if op == "lease":
            lease(engine, rng.choice(runners), now=now, ttl=ttl)
        elif op == "start" and live_ids:
            start(engine, rng.choice(live_ids), now=now, ttl=ttl)
        elif op == "heartbeat" and live_ids:
            heartbeat(engine, rng.choice(live_ids), now=now)
        elif op == "finish" and attempt_ids:
            reported = rng.choice(
                [AttemptStatus.COMPLETED, AttemptStatus.FAILED, AttemptStatus.CANCELLED]
            )
            finish(engine, rng.choice(attempt_ids), reported, now=now)
        elif op == "cancel":
            cancel(engine, rng.choice(run_ids), now=now)
        elif op == "reap":
            expire_stale(engine, now)
        now += rng.choice([0 * S, S, 4 * S])
        after = _statuses(engine)
        _assert_allowed(before, after, f"seed {seed} step {step} ({op})", lease_step=op == "lease")
        assert history_problems(engine) == [], f"seed {seed} step {step} ({op})"
        before = after
        seen |= {status for kind, _id, status in after if kind == "run"}
    # The walk must have reached most of the machine, or it proves little.
    assert len(seen) >= 6, seen


def _statuses(engine: Engine) -> set[tuple[str, int, str]]:
    runs, attempts = snapshot(engine)
    return {("run", r.id or 0, r.status) for r in runs} | {
        ("attempt", a.id or 0, a.status) for a in attempts
    }


def _assert_allowed(
    before: set[tuple[str, int, str]],
    after: set[tuple[str, int, str]],
    where: str,
    *,
    lease_step: bool,
) -> None:
    old = {(kind, i): s for kind, i, s in before}
    for kind, i, new in after:
        prev = old.get((kind, i))
        if prev is None:
            # Every attempt is born by a lease.
            assert kind == "run" or new == AttemptStatus.LEASED, f"{where}: attempt {i} {new}"
            continue
        if prev == new:
            continue
        if kind == "run":
            src, dst = RunStatus(prev), RunStatus(new)
            # A lease may expire the runner's stale attempt inline, requeueing its run,
            # and then lease that same run again: two edges in one step.
            via_queue = RunStatus.QUEUED in RUN_TRANSITIONS[src] and (
                dst in RUN_TRANSITIONS[RunStatus.QUEUED]
            )
            assert dst in RUN_TRANSITIONS[src] or (lease_step and via_queue), (
                f"{where}: run {i} {prev}->{new}"
            )
        else:
            assert AttemptStatus(new) in ATTEMPT_TRANSITIONS[AttemptStatus(prev)], (
                f"{where}: attempt {i} {prev}->{new}"
            )
