"""The scheduler: fire the cron schedules that are due, then sleep until the next one.

Each tick is one write transaction of the shared store (``fire_due_schedules``), so two
schedulers at once, or one killed in the middle of a tick, never fire a due time twice.
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from minitower_api.params import prepare_input
from minitower_scheduler.settings import SchedulerSettings
from minitower_shared.clock import utcnow
from minitower_shared.db import announce_queued, read_session, write_session
from minitower_shared.store import scheduler_passes as pass_store
from minitower_shared.store import schedules as schedule_store
from minitower_shared.store.schedules import FireWork

log = logging.getLogger("minitower.scheduler")

BATCH = 200


def tick(
    session: Session,
    now: datetime,
    *,
    max_catchup: int,
    grace: timedelta,
    name: str | None = None,
) -> FireWork:
    """Fire what is due as of ``now`` and record the tick as scheduler ``name``'s."""
    started = time.perf_counter()
    work = schedule_store.fire_due_schedules(
        session,
        now,
        max_catchup=max_catchup,
        grace=grace,
        prepare_input=prepare_input,
        limit=BATCH,
    )
    if work.runs_fired:
        announce_queued(session)
    pass_store.record_tick(
        session,
        name=name or scheduler_name(),
        at=now,
        duration_ms=(time.perf_counter() - started) * 1000,
        work=work,
    )
    return work


def scheduler_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_forever(
    engine: Engine,
    settings: SchedulerSettings,
    *,
    stop: threading.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Tick, then sleep until the next due time (at most the check interval), until
    ``stop`` is set."""
    log.info(
        "scheduler started", extra={"check_interval_seconds": settings.schedule_check_interval}
    )
    grace = timedelta(seconds=settings.schedule_misfire_grace)
    while not stop.is_set():
        try:
            with write_session(engine) as session:
                work = tick(
                    session,
                    settings.clock_now(clock()),
                    max_catchup=settings.schedule_max_catchup,
                    grace=grace,
                    name=settings.scheduler_name,
                )
            with read_session(engine) as session:
                due = schedule_store.oldest_due_at(session)
        except OperationalError as exc:
            log.warning("scheduler tick failed, will retry", extra={"error": str(exc.orig)})
            stop.wait(min(settings.schedule_check_interval, 1.0))
            continue
        if work.runs_fired or work.fires_skipped:
            log.info(
                "schedules fired",
                extra={"runs_fired": work.runs_fired, "fires_skipped": work.fires_skipped},
            )
        pause = settings.schedule_check_interval
        if due is not None:
            until = (due - settings.clock_now(clock())).total_seconds() / settings.test_clock_speed
            pause = min(pause, max(until, 0.0))
        stop.wait(pause)
    log.info("scheduler stopped")
