"""Scheduler ticks: each scheduler's last tick and the totals of what its ticks did, as
``reaper_passes`` for the reaper. A tick is recorded inside its own write transaction."""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, func

from minitower_shared.clock import as_utc
from minitower_shared.dialect import upsert_insert
from minitower_shared.models import SchedulerPass
from minitower_shared.store.schedules import FireWork

_COUNTERS = ("ticks", "runs_fired", "fires_skipped")


@dataclass(frozen=True)
class SchedulerSummary:
    last_tick_at: datetime | None
    schedulers: int
    ticks: int
    runs_fired: int
    fires_skipped: int


def record_tick(
    session: Session, *, name: str, at: datetime, duration_ms: float, work: FireWork
) -> None:
    table = SchedulerPass.__table__  # type: ignore[attr-defined]
    statement = upsert_insert(session.get_bind().dialect.name, table).values(
        name=name,
        last_tick_at=at,
        last_tick_duration_ms=duration_ms,
        ticks=1,
        runs_fired=work.runs_fired,
        fires_skipped=work.fires_skipped,
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={
                "last_tick_at": statement.excluded.last_tick_at,
                "last_tick_duration_ms": statement.excluded.last_tick_duration_ms,
                **{c: table.c[c] + statement.excluded[c] for c in _COUNTERS},
            },
        )
    )


def summary(session: Session) -> SchedulerSummary:
    table = SchedulerPass.__table__  # type: ignore[attr-defined]
    totals = [func.coalesce(func.sum(table.c[c]), 0) for c in _COUNTERS]
    row = session.execute(sa.select(func.max(table.c.last_tick_at), func.count(), *totals)).one()
    return SchedulerSummary(
        last_tick_at=None if row[0] is None else as_utc(row[0]),
        schedulers=int(row[1]),
        **{c: int(total) for c, total in zip(_COUNTERS, row[2:], strict=True)},
    )
