"""Queries of the operators' maintenance commands (backup, restore, prune).

Prune deletes only log lines of terminal runs: a terminal run never changes again and
its attempts are no longer live, so no runner can add a line to them after the query
that chose them (``append_logs`` refuses attempts that are not live)."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from minitower_shared.dialect import utf8_length
from minitower_shared.models import AppVersion, Run, RunAttempt, RunLog
from minitower_shared.states import TERMINAL_RUN_STATUSES


@dataclass(frozen=True)
class RowCounts:
    runs: int
    versions: int
    log_lines: int


@dataclass(frozen=True)
class LogVolume:
    lines: int
    bytes: int


def count_rows(session: Session) -> RowCounts:
    def count(model: type[Run] | type[AppVersion] | type[RunLog]) -> int:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())

    return RowCounts(runs=count(Run), versions=count(AppVersion), log_lines=count(RunLog))


def referenced_object_keys(session: Session) -> set[str]:
    """Every object key an app version points at."""
    return set(session.execute(select(col(AppVersion.artifact_object_key)).distinct()).scalars())


def attempts_of_runs_finished_before(session: Session, cutoff: datetime) -> list[tuple[int, int]]:
    """(attempt id, run id) of every attempt of the terminal runs that finished before
    ``cutoff``, in attempt id order."""
    statuses = sorted(status.value for status in TERMINAL_RUN_STATUSES)
    rows = session.execute(
        select(col(RunAttempt.id), col(RunAttempt.run_id))
        .join(Run, col(Run.id) == col(RunAttempt.run_id))
        .where(col(Run.status).in_(statuses), col(Run.finished_at) < cutoff)
        .order_by(col(RunAttempt.id))
    )
    return [(int(attempt_id), int(run_id)) for attempt_id, run_id in rows]


# A line's size as stored (UTF-8 bytes), not its length in characters.
_LINE_BYTES = utf8_length(col(RunLog.line))


def logs_by_attempt(session: Session, attempt_ids: list[int]) -> dict[int, LogVolume]:
    """How many log lines, and how many bytes of text, each of these attempts holds
    (attempts without lines are left out)."""
    rows = session.execute(
        select(col(RunLog.attempt_id), func.count(), func.sum(_LINE_BYTES))
        .where(col(RunLog.attempt_id).in_(attempt_ids))
        .group_by(col(RunLog.attempt_id))
    )
    return {
        int(attempt_id): LogVolume(lines=int(lines), bytes=int(size))
        for attempt_id, lines, size in rows
    }


def delete_logs(session: Session, attempt_ids: list[int], *, limit: int) -> LogVolume:
    """Delete at most ``limit`` log lines of these attempts; what was deleted."""
    chosen = (
        select(col(RunLog.id)).where(col(RunLog.attempt_id).in_(attempt_ids)).limit(limit)
    ).scalar_subquery()
    sizes = session.execute(
        delete(RunLog)
        .where(col(RunLog.id).in_(chosen))
        .returning(_LINE_BYTES)
        .execution_options(synchronize_session=False)
    ).scalars()
    deleted = list(sizes)
    return LogVolume(lines=len(deleted), bytes=sum(int(size) for size in deleted))
