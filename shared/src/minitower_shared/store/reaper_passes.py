"""Reaper passes: each reaper's last pass and the running totals of what its passes did.

The reaper records its pass inside the pass's own write transaction, so a pass that rolls
back is not counted and the totals always match the transitions really made.
"""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from minitower_shared.clock import as_utc
from minitower_shared.dialect import upsert_insert
from minitower_shared.models import ReaperPass


@dataclass(frozen=True)
class PassWork:
    """What one pass changed."""

    leases_expired: int = 0
    runs_retried: int = 0
    runs_buried: int = 0
    runs_cancelled: int = 0
    runners_marked_offline: int = 0


@dataclass(frozen=True)
class ReaperSummary:
    """Every reaper's passes together: the freshest pass (None before any) and the sums."""

    last_pass_at: datetime | None
    last_pass_duration_ms: float | None
    reapers: int
    passes: int
    leases_expired: int
    runs_retried: int
    runs_buried: int
    runs_cancelled: int
    runners_marked_offline: int


_COUNTERS = (
    "passes",
    "leases_expired",
    "runs_retried",
    "runs_buried",
    "runs_cancelled",
    "runners_marked_offline",
)


def record_pass(
    session: Session, *, name: str, at: datetime, duration_ms: float, work: PassWork
) -> None:
    """Set ``name``'s last pass and add ``work`` to its totals: one UPSERT on the primary
    key, the first pass of a new name inserting its row."""
    table = ReaperPass.__table__  # type: ignore[attr-defined]
    statement = upsert_insert(session.get_bind().dialect.name, table).values(
        name=name,
        last_pass_at=at,
        last_pass_duration_ms=duration_ms,
        passes=1,
        leases_expired=work.leases_expired,
        runs_retried=work.runs_retried,
        runs_buried=work.runs_buried,
        runs_cancelled=work.runs_cancelled,
        runners_marked_offline=work.runners_marked_offline,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={
                "last_pass_at": statement.excluded.last_pass_at,
                "last_pass_duration_ms": statement.excluded.last_pass_duration_ms,
                **{name: table.c[name] + statement.excluded[name] for name in _COUNTERS},
            },
        )
    )


def summary(session: Session) -> ReaperSummary:
    """One aggregate over the table (a row per reaper process ever started: small)."""
    table = ReaperPass.__table__  # type: ignore[attr-defined]
    totals = [func.coalesce(func.sum(table.c[name]), 0) for name in _COUNTERS]
    row = session.execute(sa.select(func.max(table.c.last_pass_at), func.count(), *totals)).one()
    last_at = None if row[0] is None else as_utc(row[0])
    duration = None
    if last_at is not None:
        duration = session.exec(
            select(ReaperPass.last_pass_duration_ms)
            .order_by(col(ReaperPass.last_pass_at).desc())
            .limit(1)
        ).first()
    return ReaperSummary(
        last_pass_at=last_at,
        last_pass_duration_ms=duration,
        reapers=int(row[1]),
        **{name: int(total) for name, total in zip(_COUNTERS, row[2:], strict=True)},
    )
