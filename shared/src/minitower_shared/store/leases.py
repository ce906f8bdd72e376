"""The runner side of a run: lease, start, heartbeat, logs, result, and lease expiry.

A lease is live only while its attempt is active and ``lease_expires_at`` is in the
future. Every function here re-checks that inside its UPDATE, so a runner whose lease
ran out is fenced off even before the reaper has noticed.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import exists, func, or_, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from minitower_shared.clock import as_utc
from minitower_shared.models import (
    DELAYED_RUN_CONDITION,
    LIVE_RUN_CONDITION,
    App,
    AppVersion,
    AppVersionSecrets,
    Environment,
    Run,
    RunAttempt,
    RunLog,
    active_attempt,
)
from minitower_shared.retry import jittered, nominal_delay, reason_of_failure
from minitower_shared.states import (
    ACTIVE_ATTEMPT_STATUSES,
    TERMINAL_RUN_STATUSES,
    AttemptStatus,
    RunStatus,
)
from minitower_shared.store.run_endings import end_run
from minitower_shared.store.runner_registration import runnable_by

_ACTIVE = [s.value for s in ACTIVE_ATTEMPT_STATUSES]
_LIVE_RUN = [RunStatus.LEASED.value, RunStatus.RUNNING.value]


@dataclass(frozen=True)
class LeaseGrant:
    run: Run
    attempt: RunAttempt
    app: App
    version: AppVersion
    # The version's declared secrets (names): the runner fetches values only when some.
    secrets: list[str] = field(default_factory=list)


class LeaseRefusal(Enum):
    RUNNER_BUSY = "runner_busy"


class Outcome(Enum):
    OK = "ok"
    GONE = "gone"
    CONFLICT = "conflict"


def _execute(session: Session, statement: Any) -> Any:
    """Run a compare-and-set statement without the ORM's session synchronisation: it
    evaluates the WHERE clause again in Python over every object in the session, which
    costs more than the UPDATE. Functions here re-read what they return instead."""
    return session.execute(statement, execution_options={"synchronize_session": False})


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def expire_attempt(session: Session, attempt_id: int, now: datetime) -> RunStatus | None:
    """Expire one attempt whose lease has passed and move its run on.

    Returns the run's new status, or None when the attempt was not expirable (already
    finished, already expired, or its lease was extended in the meantime)."""
    row = _execute(
        session,
        update(RunAttempt)
        .where(
            col(RunAttempt.id) == attempt_id,
            col(RunAttempt.status).in_(_ACTIVE),
            col(RunAttempt.lease_expires_at) <= now,
        )
        .values(status=AttemptStatus.EXPIRED.value, finished_at=now)
        .returning(col(RunAttempt.run_id)),
    ).first()
    if row is None:
        return None
    run_id = row[0]
    if end_run(
        session,
        run_id,
        expected={RunStatus.CANCELLING},
        status=RunStatus.CANCELLED,
        now=now,
        error_message="cancelled; the runner stopped answering before it confirmed",
    ):
        return RunStatus.CANCELLED
    if _requeue_for_retry(session, run_id, reason="lost", now=now):
        return RunStatus.QUEUED
    if end_run(
        session,
        run_id,
        expected={RunStatus.LEASED, RunStatus.RUNNING},
        status=RunStatus.DEAD,
        now=now,
        error_message="lease expired and no retries are left",
    ):
        return RunStatus.DEAD
    raise RuntimeError(f"run {run_id} had an active attempt but was not in a leased state")


def _requeue_for_retry(session: Session, run_id: int, *, reason: str, now: datetime) -> bool:
    """Put a live run back in the queue when its policy retries ``reason`` and retries
    are left, not before its backoff delay. The run keeps its original queued_at, so a
    retry goes back to where it stood in the queue: retries are picked in a
    deterministic order."""
    run = session.exec(
        select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    ).one()
    if reason not in run.retry_on or run.retry_count >= run.max_retries:
        return False
    delay = jittered(
        nominal_delay(
            retry_delay=run.retry_delay,
            retry_backoff=run.retry_backoff,
            retry_max_delay=run.retry_max_delay,
            retry_no=run.retry_count + 1,
        )
    )
    # Conditional on the retry count read above: the write lock makes it current, and
    # the condition keeps the step from ever being applied twice.
    return bool(
        _rowcount(
            _execute(
                session,
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    col(Run.status).in_(_LIVE_RUN),
                    col(Run.retry_count) == run.retry_count,
                )
                .values(
                    status=RunStatus.QUEUED.value,
                    retry_count=Run.retry_count + 1,
                    not_before=now + timedelta(seconds=delay) if delay > 0 else None,
                    delayed=delay > 0,
                    updated_at=now,
                ),
            )
        )
    )


def expire_stale_attempts(
    session: Session, now: datetime, *, limit: int = 500
) -> list[tuple[int, RunStatus]]:
    """Expire up to ``limit`` attempts whose lease has passed; returns (run_id, new status)."""
    rows = session.exec(
        select(RunAttempt.id, RunAttempt.run_id)
        .where(active_attempt(), col(RunAttempt.lease_expires_at) <= now)
        .order_by(col(RunAttempt.lease_expires_at))
        .limit(limit)
    ).all()
    outcomes = []
    for attempt_id, run_id in rows:
        assert attempt_id is not None
        status = expire_attempt(session, attempt_id, now)
        if status is not None:
            outcomes.append((run_id, status))
    return outcomes


def _eligible(environment: str, team_id: int | None) -> list[Any]:
    """Queued, not delayed runs of ``environment`` that a runner bound to ``team_id``
    (None: a shared runner) may be handed: the leading terms of ix_run_queue, then the
    binding (``runnable_by``). The literal SQL is what lets SQLite use the partial index
    (see models)."""
    return [
        text("run.status = 'queued'"),
        col(Run.environment) == environment,
        text("run.delayed = 0"),
        runnable_by(team_id),
    ]


def may_lease(
    session: Session,
    *,
    runner_id: int,
    environment: str,
    now: datetime,
    team_id: int | None = None,
) -> bool:
    """Whether ``lease_next_run`` could change anything now: a run waits in the
    environment (or a delayed run's time has come), or the runner holds an attempt (to
    refuse, or to expire inline). Lets an idle long poll look without taking the write
    lock."""
    queued = session.exec(select(Run.id).where(*_eligible(environment, team_id)).limit(1)).first()
    if queued is not None or next_delayed_at(session, before=now) is not None:
        return True
    held = session.exec(
        select(RunAttempt.id).where(RunAttempt.runner_id == runner_id, active_attempt()).limit(1)
    ).first()
    return held is not None


def next_delayed_at(session: Session, *, before: datetime | None = None) -> datetime | None:
    """The earliest time a delayed run (of any environment) becomes eligible; with
    ``before``, only if it is not later than that. One seek of ix_run_delayed."""
    query = select(Run.not_before).where(text("run.status = 'queued' AND run.delayed = 1"))
    if before is not None:
        query = query.where(col(Run.not_before) <= before)
    value = session.exec(query.order_by(col(Run.not_before)).limit(1)).first()
    return None if value is None else as_utc(value)


def release_due_runs(session: Session, now: datetime) -> int:
    """Make the delayed runs whose time has come eligible for leasing; one walk of
    ix_run_delayed over the due rows only."""
    return _rowcount(
        _execute(
            session,
            update(Run)
            .where(text(DELAYED_RUN_CONDITION), col(Run.not_before) <= now)
            .values(delayed=False),
        )
    )


_PREDECESSOR = aliased(Run, name="predecessor")
# overlap = "queue": a run waits while the earlier run it names is not terminal. Built
# once: an alias made per call would be compiled again on every lease.
_PREDECESSOR_RUNNING = exists().where(
    col(_PREDECESSOR.id) == col(Run.after_run_id),
    col(_PREDECESSOR.status).not_in([s.value for s in TERMINAL_RUN_STATUSES]),
)


def _pick_next_run(session: Session, environment: str, team_id: int | None) -> int | None:
    """The id of the run to lease: highest priority, then oldest ``queued_at``, then
    lowest id, among eligible runs whose app and environment are below their
    ``max_concurrent_runs`` and whose overlap predecessor (if any) has ended.

    Flat in queue depth: one seek per app with eligible runs (a loose index scan of
    ix_run_queue), the app's best run another seek; an app at its limit is never
    walked, so its backlog costs nothing and never blocks other apps. The counts are
    read inside the caller's write transaction, so racing leases cannot both take the
    last slot."""
    apps: list[int] = []
    previous = -1
    while True:
        app_id = session.exec(
            select(Run.app_id)
            .where(*_eligible(environment, team_id), col(Run.app_id) > previous)
            .order_by(col(Run.app_id))
            .limit(1)
        ).first()
        if app_id is None:
            break
        apps.append(app_id)
        previous = app_id
    if not apps:
        return None
    live_apps: Counter[int] = Counter()
    live_envs: Counter[int] = Counter()
    for live_app, live_env in session.exec(
        select(Run.app_id, Run.environment_id).where(text(f"run.{LIVE_RUN_CONDITION}"))
    ):
        live_apps[live_app] += 1
        live_envs[live_env] += 1
    app_limits = dict(
        session.exec(
            select(App.id, App.max_concurrent_runs).where(
                col(App.id).in_(apps), col(App.max_concurrent_runs).is_not(None)
            )
        ).all()
    )
    predecessor_running = _PREDECESSOR_RUNNING
    # (-priority, queued_at, id) of each app's best run, by its team's environment.
    candidates: list[tuple[tuple[int, Any, int], int]] = []
    for app_id in apps:
        limit = app_limits.get(app_id)
        if limit is not None and live_apps[app_id] >= limit:
            continue
        row = session.exec(
            select(Run.priority, Run.queued_at, Run.id, Run.environment_id)
            .where(
                *_eligible(environment, team_id),
                col(Run.app_id) == app_id,
                col(Run.cancel_requested).is_(False),
                or_(col(Run.after_run_id).is_(None), ~predecessor_running),
            )
            .order_by(col(Run.priority).desc(), col(Run.queued_at), col(Run.id))
            .limit(1)
        ).first()
        if row is not None:
            priority, queued_at, run_id, environment_id = row
            assert run_id is not None
            candidates.append(((-priority, queued_at, run_id), environment_id))
    if not candidates:
        return None
    env_limits: dict[int | None, int | None] = dict(
        session.exec(
            select(Environment.id, Environment.max_concurrent_runs).where(
                col(Environment.id).in_({env for _, env in candidates}),
                col(Environment.max_concurrent_runs).is_not(None),
            )
        ).all()
    )
    open_candidates = [
        key
        for key, env in candidates
        if (limit := env_limits.get(env)) is None or live_envs[env] < limit
    ]
    return min(open_candidates)[2] if open_candidates else None


def lease_next_run(
    session: Session,
    *,
    runner_id: int,
    environment: str,
    lease_token_hash: str,
    now: datetime,
    ttl: timedelta,
    team_id: int | None = None,
) -> LeaseGrant | LeaseRefusal | None:
    """Claim the next queued run of ``environment`` for the runner; None when there is none.
    ``team_id`` is the runner's binding (None: a shared runner), see ``runnable_by``.

    Pick order: highest priority, then oldest ``queued_at``, then lowest id, skipping
    delayed runs and runs whose app or environment is at its concurrency limit."""
    held = session.exec(
        select(RunAttempt).where(RunAttempt.runner_id == runner_id, active_attempt())
    ).first()
    if held is not None:
        if held.lease_expires_at > now:
            return LeaseRefusal.RUNNER_BUSY
        assert held.id is not None
        expire_attempt(session, held.id, now)

    release_due_runs(session, now)
    next_queued = _pick_next_run(session, environment, team_id)
    if next_queued is None:
        return None
    claimed = _execute(
        session,
        update(Run)
        .where(col(Run.id) == next_queued, col(Run.status) == RunStatus.QUEUED.value)
        .values(status=RunStatus.LEASED.value, updated_at=now)
        .returning(col(Run.id)),
    ).first()
    if claimed is None:
        return None
    run_id = claimed[0]
    last_no = session.exec(
        select(func.max(RunAttempt.attempt_no)).where(RunAttempt.run_id == run_id)
    ).one()
    attempt = RunAttempt(
        run_id=run_id,
        runner_id=runner_id,
        attempt_no=(last_no or 0) + 1,
        lease_token_hash=lease_token_hash,
        lease_expires_at=now + ttl,
        status=AttemptStatus.LEASED.value,
        leased_at=now,
    )
    session.add(attempt)
    session.flush()
    # One read for everything the runner is told; populate_existing because the UPDATE
    # above went around the session.
    run, app, version, declared = session.exec(
        select(Run, App, AppVersion, AppVersionSecrets)
        .join(App, col(App.id) == col(Run.app_id))
        .join(AppVersion, col(AppVersion.id) == col(Run.app_version_id))
        .outerjoin(
            AppVersionSecrets,
            col(AppVersionSecrets.app_version_id) == col(Run.app_version_id),
        )
        .where(Run.id == run_id)
        .execution_options(populate_existing=True)
    ).one()
    secrets = list(declared.names) if declared is not None else []
    return LeaseGrant(run=run, attempt=attempt, app=app, version=version, secrets=secrets)


def find_attempt_for_lease(
    session: Session, *, lease_token_hash: str, runner_id: int, run_id: int
) -> RunAttempt | None:
    """The attempt this lease token belongs to, if it is this runner's and this run's."""
    attempt = session.exec(
        select(RunAttempt).where(RunAttempt.lease_token_hash == lease_token_hash)
    ).first()
    if attempt is None or attempt.runner_id != runner_id or attempt.run_id != run_id:
        return None
    return attempt


def is_live(attempt: RunAttempt, now: datetime) -> bool:
    return attempt.status in _ACTIVE and attempt.lease_expires_at > now


def start_attempt(
    session: Session, attempt: RunAttempt, *, now: datetime, ttl: timedelta
) -> Outcome:
    """``leased → running`` for the attempt and its run; repeating it is harmless.

    An attempt already ``cancelling`` stays so: the runner learns of the cancel from the
    answer and reports ``cancelled``."""
    if not is_live(attempt, now):
        return Outcome.GONE
    if attempt.status != AttemptStatus.LEASED:
        return Outcome.OK
    if not _rowcount(
        _execute(
            session,
            update(RunAttempt)
            .where(
                col(RunAttempt.id) == attempt.id,
                col(RunAttempt.status) == AttemptStatus.LEASED.value,
                col(RunAttempt.lease_expires_at) > now,
            )
            .values(status=AttemptStatus.RUNNING.value, started_at=now, lease_expires_at=now + ttl),
        )
    ):
        return Outcome.GONE
    if not _rowcount(
        _execute(
            session,
            update(Run)
            .where(col(Run.id) == attempt.run_id, col(Run.status) == RunStatus.LEASED.value)
            .values(
                status=RunStatus.RUNNING.value,
                started_at=func.coalesce(col(Run.started_at), now),
                updated_at=now,
            ),
        )
    ):
        raise RuntimeError(f"run {attempt.run_id} was not leased while its attempt was")
    session.refresh(attempt)
    return Outcome.OK


def heartbeat(session: Session, attempt: RunAttempt, *, now: datetime, ttl: timedelta) -> Outcome:
    """Extend a live lease. An expired lease is never revived."""
    if not _rowcount(
        _execute(
            session,
            update(RunAttempt)
            .where(
                col(RunAttempt.id) == attempt.id,
                col(RunAttempt.status).in_(_ACTIVE),
                col(RunAttempt.lease_expires_at) > now,
            )
            .values(lease_expires_at=now + ttl),
        )
    ):
        return Outcome.GONE
    session.refresh(attempt)
    return Outcome.OK


def append_logs(
    session: Session, attempt: RunAttempt, lines: list[dict[str, Any]], *, now: datetime
) -> Outcome:
    """Store log lines; a ``seq`` the attempt already has is ignored, so batches may be
    resent safely."""
    if not is_live(attempt, now):
        return Outcome.GONE
    if lines:
        assert attempt.id is not None
        rows = [{**line, "attempt_id": attempt.id} for line in lines]
        _execute(
            session,
            sqlite_insert(RunLog)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["attempt_id", "seq"]),
        )
    return Outcome.OK


# A runner's result on an attempt being cancelled: only work that really finished counts
# as completed; anything else ends the run cancelled.
_RESULT_WHEN_CANCELLING = {
    AttemptStatus.COMPLETED: AttemptStatus.COMPLETED,
    AttemptStatus.FAILED: AttemptStatus.CANCELLED,
    AttemptStatus.CANCELLED: AttemptStatus.CANCELLED,
}


def finish_attempt(
    session: Session,
    attempt: RunAttempt,
    *,
    reported: AttemptStatus,
    exit_code: int | None,
    error_message: str | None,
    now: datetime,
) -> Outcome:
    """Record the runner's result and end the run.

    The same result again is OK (the runner may retry after a lost answer); a different
    one is a CONFLICT; an expired or foreign lease is GONE."""
    if attempt.reported_status is not None:
        return Outcome.OK if attempt.reported_status == reported.value else Outcome.CONFLICT
    if not is_live(attempt, now):
        return Outcome.GONE
    # Read the status once, before the UPDATE: an ORM-enabled UPDATE synchronises the
    # objects in the session, so afterwards ``attempt.status`` already holds the new one.
    previous = AttemptStatus(attempt.status)
    if previous == AttemptStatus.LEASED:
        return Outcome.CONFLICT
    # Only a requested cancel ends a run cancelled: a runner giving up on its own fails it.
    if previous == AttemptStatus.RUNNING and reported == AttemptStatus.CANCELLED:
        return Outcome.CONFLICT
    final = _RESULT_WHEN_CANCELLING[reported] if previous == AttemptStatus.CANCELLING else reported
    if not _rowcount(
        _execute(
            session,
            update(RunAttempt)
            .where(
                col(RunAttempt.id) == attempt.id,
                col(RunAttempt.status) == previous.value,
                col(RunAttempt.lease_expires_at) > now,
            )
            .values(
                status=final.value,
                reported_status=reported.value,
                exit_code=exit_code,
                error_message=error_message,
                finished_at=now,
            ),
        )
    ):
        return Outcome.GONE
    if (
        final == AttemptStatus.FAILED
        and previous == AttemptStatus.RUNNING
        and _requeue_for_retry(
            session, attempt.run_id, reason=reason_of_failure(error_message), now=now
        )
    ):
        session.refresh(attempt)
        return Outcome.OK
    run_status = RunStatus(final.value)
    expected_run_status = (
        RunStatus.CANCELLING if previous == AttemptStatus.CANCELLING else RunStatus.RUNNING
    )
    if not end_run(
        session,
        attempt.run_id,
        expected={expected_run_status},
        status=run_status,
        now=now,
        exit_code=exit_code,
        error_message=error_message,
    ):
        raise RuntimeError(
            f"run {attempt.run_id} was not {expected_run_status.value} with its attempt"
        )
    session.refresh(attempt)
    return Outcome.OK
