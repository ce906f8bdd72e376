"""The lifecycle module's verdicts: each refusal names its kind and its reason, and the
guards refuse what the state tables do not allow. Real migrated SQLite file, explicit
times (no sleeping)."""

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.states import AttemptStatus, RunStatus
from minitower_shared.store import lifecycle
from minitower_shared.store.lifecycle import (
    CancelOutcome,
    Finished,
    Granted,
    LeaseKey,
    LiveAttempt,
    Refusal,
    Refused,
)
from tests.support.databases import Database
from tests.support.seed import (
    Seeded,
    add_runner,
    get_run,
    key_of,
    must_lease,
    queue_runs,
    seed_app,
)
from tests.support.statements import captured

T0 = utcnow()
S = timedelta(seconds=1)
TTL = 10 * S


def _key(engine: Engine, attempt_id: int) -> LeaseKey:
    with write_session(engine) as session:
        return key_of(session, attempt_id)


def _start(engine: Engine, key: LeaseKey, now: object = T0) -> LiveAttempt | Refused:
    with write_session(engine) as session:
        return lifecycle.start(session, key, now=now, ttl=TTL)  # type: ignore[arg-type]


def _result(
    engine: Engine, key: LeaseKey, reported: AttemptStatus, now: object = T0 + S
) -> Finished | Refused:
    with write_session(engine) as session:
        return lifecycle.report_result(
            session,
            key,
            reported=reported,
            exit_code=0,
            error_message=None,
            now=now,  # type: ignore[arg-type]
        )


@pytest.fixture
def leased(engine: Engine, seeded: Seeded) -> LeaseKey:
    queue_runs(engine, seeded, now=T0)
    grant = must_lease(engine, add_runner(engine, "r1"), now=T0, ttl=TTL)
    return _key(engine, grant.attempt.id)


def test_a_foreign_token_runner_or_run_is_gone_without_saying_whose(
    engine: Engine, leased: LeaseKey
) -> None:
    other_runner = add_runner(engine, "r2")
    for key in (
        LeaseKey(leased.run_id, leased.runner_id, "not-a-token-hash"),
        LeaseKey(leased.run_id, other_runner, leased.token_hash),
        LeaseKey(leased.run_id + 1, leased.runner_id, leased.token_hash),
    ):
        verdict = _start(engine, key)
        assert verdict == Refused(
            Refusal.GONE, "no live lease with this token for this runner and run"
        )
    assert get_run(engine, leased.run_id).status == RunStatus.LEASED


def test_an_expired_lease_is_gone_with_that_reason(engine: Engine, leased: LeaseKey) -> None:
    assert _start(engine, leased, T0 + TTL) == Refused(Refusal.GONE, "the lease expired")
    with write_session(engine) as session:
        assert lifecycle.heartbeat(session, leased, now=T0 + TTL, ttl=TTL) == Refused(
            Refusal.GONE, "the lease expired"
        )


def test_a_finished_attempt_is_gone_naming_how_it_ended(engine: Engine, leased: LeaseKey) -> None:
    assert isinstance(_start(engine, leased), LiveAttempt)
    finished = _result(engine, leased, AttemptStatus.COMPLETED)
    assert isinstance(finished, Finished) and finished.first
    assert finished.run_status == RunStatus.COMPLETED
    with write_session(engine) as session:
        assert lifecycle.heartbeat(session, leased, now=T0 + 2 * S, ttl=TTL) == Refused(
            Refusal.GONE, "the attempt has ended (completed)"
        )


def test_result_conflicts_say_what_to_do(engine: Engine, leased: LeaseKey) -> None:
    assert _result(engine, leased, AttemptStatus.COMPLETED) == Refused(
        Refusal.CONFLICT, "the attempt has not started; call start first"
    )
    assert isinstance(_start(engine, leased), LiveAttempt)
    assert _result(engine, leased, AttemptStatus.CANCELLED) == Refused(
        Refusal.CONFLICT, "the run was not cancelled: report completed or failed"
    )
    assert isinstance(_result(engine, leased, AttemptStatus.FAILED), Finished)
    assert _result(engine, leased, AttemptStatus.COMPLETED) == Refused(
        Refusal.CONFLICT, "this attempt already reported 'failed', not 'completed'"
    )
    again = _result(engine, leased, AttemptStatus.FAILED)
    assert isinstance(again, Finished) and not again.first
    assert again.run_status == RunStatus.FAILED


def test_a_busy_runner_is_refused_and_keeps_its_lease(engine: Engine, seeded: Seeded) -> None:
    queue_runs(engine, seeded, 2, now=T0)
    runner = add_runner(engine, "r1")
    must_lease(engine, runner, now=T0, ttl=TTL)
    with write_session(engine) as session:
        verdict = lifecycle.lease(
            session,
            runner_id=runner,
            environment="default",
            lease_token_hash="second",
            now=T0 + S,
            ttl=TTL,
        )
    assert verdict == Refused(
        Refusal.BUSY, "this runner already holds a live lease; finish it first"
    )


def test_cancel_reports_the_status_before_and_after(engine: Engine, seeded: Seeded) -> None:
    started, waiting = queue_runs(engine, seeded, 2, now=T0)
    grant = must_lease(engine, add_runner(engine, "r1"), now=T0, ttl=TTL)
    assert grant.run.id == started
    key = _key(engine, grant.attempt.id)
    assert isinstance(_start(engine, key), LiveAttempt)
    with write_session(engine) as session:
        assert lifecycle.cancel(session, waiting, T0) == CancelOutcome(
            RunStatus.QUEUED, RunStatus.CANCELLED
        )
        assert lifecycle.cancel(session, started, T0) == CancelOutcome(
            RunStatus.RUNNING, RunStatus.CANCELLING
        )
        repeat = lifecycle.cancel(session, started, T0)
        assert repeat == CancelOutcome(RunStatus.CANCELLING, RunStatus.CANCELLING)
        assert not repeat.changed
        assert lifecycle.cancel(session, 10_000, T0) is None
    # The runner hears of the cancel on its next call.
    with write_session(engine) as session:
        beat = lifecycle.heartbeat(session, key, now=T0 + S, ttl=TTL)
    assert isinstance(beat, LiveAttempt) and beat.cancel_requested


def test_end_run_takes_only_edges_of_the_state_table(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded, now=T0)
    with write_session(engine) as session, pytest.raises(ValueError, match="RUN_TRANSITIONS"):
        # queued → completed is not an edge: a run completes only from running/cancelling.
        lifecycle.end_run(
            session, run_id, expected={RunStatus.QUEUED}, status=RunStatus.COMPLETED, now=T0
        )
    assert get_run(engine, run_id).status == RunStatus.QUEUED


def test_a_lease_that_starts_its_attempt_is_six_statements_on_postgresql(
    postgres_database: Database,
) -> None:
    """Each is a round trip (bench/README.md): the runner's lock, the look for a held
    attempt with the release of due runs, the pick, the claim with the grant's read,
    the attempt's insert, and the start's two updates."""
    engine = create_db_engine(postgres_database, pool_size=2)
    try:
        queue_runs(engine, seed_app(engine), 2, now=T0)
        runner = add_runner(engine, "r")
        with (
            write_session(engine) as session,
            captured(engine, ("SELECT", "INSERT", "UPDATE", "WITH")) as statements,
        ):
            grant = lifecycle.lease(
                session,
                runner_id=runner,
                environment="default",
                lease_token_hash="hash",
                now=T0,
                ttl=TTL,
                start_it=True,
            )
        assert isinstance(grant, Granted) and grant.attempt.status == AttemptStatus.RUNNING
        assert get_run(engine, grant.run.id).status == RunStatus.RUNNING
        assert len(statements) == 6, [sql.split()[:3] for sql, _ in statements]
    finally:
        engine.dispose()
