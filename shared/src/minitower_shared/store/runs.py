"""Runs as the team sees them: creation, lookup, listing, cancellation, history."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, false, func, or_
from sqlmodel import Session, col, select

from minitower_shared.clock import as_utc
from minitower_shared.db import serialize
from minitower_shared.models import (
    App,
    AppVersion,
    Environment,
    IdempotencyKey,
    Run,
    RunAttempt,
    Runner,
)
from minitower_shared.retry import RetryPolicy
from minitower_shared.states import (
    TERMINAL_RUN_STATUSES,
    RunnerStatus,
    RunStatus,
)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class RunView:
    """A run with the names the API shows beside it."""

    run: Run
    app_slug: str
    version_no: int
    environment: str


def create_run(
    session: Session,
    *,
    app: App,
    version: AppVersion,
    environment: Environment,
    input: dict[str, Any],
    priority: int,
    retry: RetryPolicy,
    now: datetime,
    rerun_of: int | None = None,
    scheduled_for: datetime | None = None,
    schedule_id: int | None = None,
    after_run_id: int | None = None,
) -> Run:
    """Numbers runs 1, 2, … per app; the caller's write lock (on PostgreSQL, the app's
    advisory lock) makes the count safe.

    A run ``scheduled_for`` a later time is queued but delayed: not leased before then."""
    assert app.id is not None and version.id is not None and environment.id is not None
    serialize(session, f"app-runs:{app.id}")
    last = session.exec(select(func.max(Run.run_no)).where(Run.app_id == app.id)).one()
    run = Run(
        team_id=app.team_id,
        app_id=app.id,
        environment_id=environment.id,
        environment=environment.name,
        app_version_id=version.id,
        run_no=(last or 0) + 1,
        status=RunStatus.QUEUED.value,
        input=input,
        priority=priority,
        max_retries=retry.max_retries,
        retry_on=list(retry.retry_on),
        retry_delay=retry.retry_delay,
        retry_backoff=retry.retry_backoff,
        retry_max_delay=retry.retry_max_delay,
        scheduled_for=scheduled_for,
        not_before=scheduled_for,
        delayed=scheduled_for is not None and scheduled_for > now,
        schedule_id=schedule_id,
        after_run_id=after_run_id,
        queued_at=now,
        updated_at=now,
        rerun_of=rerun_of,
    )
    session.add(run)
    session.flush()
    return run


def retry_policy_of(run: Run) -> RetryPolicy:
    """The policy a run was created with (a rerun keeps its origin's)."""
    return RetryPolicy(
        max_retries=run.max_retries,
        retry_on=tuple(run.retry_on),
        retry_delay=run.retry_delay,
        retry_backoff=run.retry_backoff,
        retry_max_delay=run.retry_max_delay,
    )


def lock_idempotency_key(session: Session, *, team_id: int, app_id: int, key: str) -> None:
    """Hold the key until the transaction ends. Two first uses of one key at once (two
    API processes on PostgreSQL) then take turns: the second, once the first commits,
    finds the first's run instead of hitting the key's unique index. Call it before
    :func:`find_idempotent_run` in the write transaction; nothing to do on SQLite, whose
    write lock already serialises them."""
    serialize(session, f"idempotency-key:{team_id}:{app_id}:{key}")


def find_idempotent_run(
    session: Session, *, team_id: int, app_id: int, key: str, now: datetime
) -> Run | None:
    """The run an earlier request with this key created within the window, if any.

    An expired key is deleted so that the caller may record it again."""
    record = session.exec(
        select(IdempotencyKey).where(
            IdempotencyKey.team_id == team_id,
            IdempotencyKey.app_id == app_id,
            IdempotencyKey.key == key,
        )
    ).first()
    if record is None:
        return None
    if now - record.created_at >= IDEMPOTENCY_WINDOW:
        session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.id) == record.id))
        return None
    return session.get(Run, record.run_id)


def remember_idempotency_key(
    session: Session, *, team_id: int, app_id: int, key: str, run_id: int, now: datetime
) -> None:
    session.add(
        IdempotencyKey(team_id=team_id, app_id=app_id, key=key, run_id=run_id, created_at=now)
    )
    session.flush()


def delete_expired_idempotency_keys(session: Session, *, now: datetime) -> int:
    result = session.execute(
        delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < now - IDEMPOTENCY_WINDOW)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _view_query() -> Any:
    return (
        select(Run, App.slug, AppVersion.version_no, Run.environment)
        .join(App, col(App.id) == col(Run.app_id))
        .join(AppVersion, col(AppVersion.id) == col(Run.app_version_id))
    )


# Built once: a run's status is the API's most frequent read.
_VIEW_BY_ID = (
    _view_query()
    .where(Run.id == bindparam("the_run"), Run.team_id == bindparam("the_team"))
    .execution_options(populate_existing=True)
)


def get_run_view(session: Session, team_id: int, run_id: int) -> RunView | None:
    """The run as stored now: populate_existing, because the lifecycle's Core UPDATEs
    (a cancel in the same transaction, say) go around the session's copy."""
    row = session.exec(_VIEW_BY_ID, params={"the_run": run_id, "the_team": team_id}).first()
    return RunView(*row) if row is not None else None


def list_run_views(
    session: Session,
    team_id: int,
    *,
    app_id: int | None,
    status: str | None,
    before_id: int | None,
    offset: int,
    limit: int,
    environment: str | None = None,
) -> list[RunView]:
    """Newest first."""
    query = _view_query().where(Run.team_id == team_id)
    if app_id is not None:
        query = query.where(Run.app_id == app_id)
    if status is not None:
        query = query.where(Run.status == status)
    if environment is not None:
        query = query.where(Run.environment == environment)
    if before_id is not None:
        query = query.where(col(Run.id) < before_id)
    query = query.order_by(col(Run.id).desc()).offset(offset).limit(limit)
    return [RunView(*row) for row in session.exec(query)]


def list_attempts(session: Session, run_id: int) -> list[tuple[RunAttempt, str]]:
    rows = session.exec(
        select(RunAttempt, Runner.name)
        .join(Runner, col(Runner.id) == col(RunAttempt.runner_id))
        .where(RunAttempt.run_id == run_id)
        .order_by(col(RunAttempt.attempt_no))
    )
    return [(attempt, name) for attempt, name in rows]


def get_attempt(session: Session, run_id: int, attempt_no: int | None) -> RunAttempt | None:
    """The attempt numbered ``attempt_no``, or the latest one."""
    query = select(RunAttempt).where(RunAttempt.run_id == run_id)
    if attempt_no is not None:
        query = query.where(RunAttempt.attempt_no == attempt_no)
    return session.exec(query.order_by(col(RunAttempt.attempt_no).desc()).limit(1)).first()


def count_runs_by_status(session: Session) -> dict[str, int]:
    rows = session.exec(select(Run.status, func.count()).group_by(Run.status))
    return {status: count for status, count in rows}


@dataclass(frozen=True)
class QueueFigures:
    depth: int
    oldest_queued_at: datetime


def queue_by_environment(session: Session) -> dict[str, QueueFigures]:
    """Queued runs per environment and the oldest one's ``queued_at``: one walk of the
    partial index ix_run_queue (it covers both columns), never the run table."""
    rows = session.exec(
        select(Run.environment, func.count(), func.min(Run.queued_at))
        # A delayed run is not waiting for a runner yet: counted once it is due.
        .where(Run.status == RunStatus.QUEUED.value, col(Run.delayed) == false())
        .group_by(Run.environment)
    )
    return {
        name: QueueFigures(depth=count, oldest_queued_at=as_utc(oldest))
        for name, count, oldest in rows
    }


def statuses_of(session: Session, run_ids: list[int]) -> dict[int, str]:
    """The status of each of the runs (missing ids are left out): one query for all the
    runs live followers watch."""
    if not run_ids:
        return {}
    rows = session.exec(select(Run.id, Run.status).where(col(Run.id).in_(run_ids)))
    return {run_id: status for run_id, status in rows if run_id is not None}


@dataclass(frozen=True)
class TeamRunSummary:
    by_status: dict[str, int]
    last_day_by_status: dict[str, int]
    queued_by_environment: dict[str, QueueFigures]
    recent_failures: list[RunView]
    runners_online: int

    def count(self, statuses: frozenset[RunStatus]) -> int:
        return sum(self.by_status.get(s.value, 0) for s in statuses)


RECENT_FAILURES = 5


def summarize_team_runs(session: Session, team_id: int, *, since: datetime) -> TeamRunSummary:
    """Counts by status (all time and since ``since``), the team's queue per environment,
    its latest failures and the runners online that may serve it (shared or its own)."""
    by_status = session.exec(
        select(Run.status, func.count()).where(Run.team_id == team_id).group_by(Run.status)
    )
    recent = session.exec(
        select(Run.status, func.count())
        .where(Run.team_id == team_id, col(Run.queued_at) >= since)
        .group_by(Run.status)
    )
    queued = session.exec(
        select(Run.environment, func.count(), func.min(Run.queued_at))
        .where(Run.team_id == team_id, Run.status == RunStatus.QUEUED.value)
        .group_by(Run.environment)
    )
    failures = session.exec(
        _view_query()
        .where(
            Run.team_id == team_id,
            col(Run.status).in_([RunStatus.FAILED.value, RunStatus.DEAD.value]),
        )
        .order_by(col(Run.id).desc())
        .limit(RECENT_FAILURES)
    )
    online = session.exec(
        select(func.count())
        .select_from(Runner)
        .where(
            Runner.status == RunnerStatus.ONLINE.value,
            or_(col(Runner.team_id).is_(None), col(Runner.team_id) == team_id),
        )
    ).one()
    return TeamRunSummary(
        by_status={status: count for status, count in by_status},
        last_day_by_status={status: count for status, count in recent},
        queued_by_environment={
            name: QueueFigures(depth=count, oldest_queued_at=as_utc(oldest))
            for name, count, oldest in queued
        },
        recent_failures=[RunView(*row) for row in failures],
        runners_online=int(online),
    )


def is_terminal(status: str) -> bool:
    return status in {s.value for s in TERMINAL_RUN_STATUSES}


def last_run_status_by_app(session: Session, team_id: int, app_ids: list[int]) -> dict[int, str]:
    """The status of each app's newest run (apps without runs are left out)."""
    if not app_ids:
        return {}
    newest = (
        select(func.max(Run.id))
        .where(Run.team_id == team_id, col(Run.app_id).in_(app_ids))
        .group_by(col(Run.app_id))
    )
    rows = session.exec(select(Run.app_id, Run.status).where(col(Run.id).in_(newest)))
    return {app_id: status for app_id, status in rows}
