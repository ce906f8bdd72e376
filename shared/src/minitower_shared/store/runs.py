"""Runs as the team sees them: creation, lookup, listing, cancellation, history."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, text, update
from sqlmodel import Session, col, select

from minitower_shared.clock import as_utc
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
    AttemptStatus,
    RunStatus,
    run_sources,
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
    scheduled_for: datetime | None = None,
    schedule_id: int | None = None,
    after_run_id: int | None = None,
) -> Run:
    """Numbers runs 1, 2, … per app; the caller's write lock makes the count safe.

    A run ``scheduled_for`` a later time is queued but delayed: not leased before then."""
    assert app.id is not None and version.id is not None and environment.id is not None
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
    )
    session.add(run)
    session.flush()
    return run


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


def get_run_view(session: Session, team_id: int, run_id: int) -> RunView | None:
    row = session.exec(_view_query().where(Run.id == run_id, Run.team_id == team_id)).first()
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
) -> list[RunView]:
    """Newest first."""
    query = _view_query().where(Run.team_id == team_id)
    if app_id is not None:
        query = query.where(Run.app_id == app_id)
    if status is not None:
        query = query.where(Run.status == status)
    if before_id is not None:
        query = query.where(col(Run.id) < before_id)
    query = query.order_by(col(Run.id).desc()).offset(offset).limit(limit)
    return [RunView(*row) for row in session.exec(query)]


def cancel_run(session: Session, run_id: int, now: datetime) -> None:
    """Idempotent. A queued run is cancelled at once; a leased or running one (and its
    attempt) moves to ``cancelling`` and its runner is told on its next heartbeat.
    Cancelling or terminal runs are left as they are."""
    cancelled = session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == RunStatus.QUEUED.value)
        .values(
            status=RunStatus.CANCELLED.value,
            cancel_requested=True,
            finished_at=now,
            updated_at=now,
            error_message="cancelled before it was leased",
        )
    )
    if cancelled.rowcount:  # type: ignore[attr-defined]
        return
    cancelling = session.execute(
        update(Run)
        .where(
            col(Run.id) == run_id,
            col(Run.status).in_(
                [s.value for s in run_sources(RunStatus.CANCELLING)],
            ),
        )
        .values(status=RunStatus.CANCELLING.value, cancel_requested=True, updated_at=now)
    )
    if cancelling.rowcount:  # type: ignore[attr-defined]
        session.execute(
            update(RunAttempt)
            .where(
                col(RunAttempt.run_id) == run_id,
                col(RunAttempt.status).in_([AttemptStatus.LEASED, AttemptStatus.RUNNING]),
            )
            .values(status=AttemptStatus.CANCELLING.value)
        )


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
        .where(Run.status == RunStatus.QUEUED.value, text("run.delayed = 0"))
        .group_by(Run.environment)
    )
    return {
        name: QueueFigures(depth=count, oldest_queued_at=as_utc(oldest))
        for name, count, oldest in rows
    }
