"""The reaper: expire lost leases, retry or bury their runs, mark silent runners offline.

Each pass is one small write transaction (``tick``), built only from the shared store's
conditional UPDATEs, so two reapers at once, or a reaper racing the API, never apply a
transition twice.
"""

import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from minitower_shared.clock import utcnow
from minitower_shared.db import announce_queued, write_session
from minitower_shared.states import RunStatus
from minitower_shared.store import lifecycle
from minitower_shared.store import reaper_passes as pass_store
from minitower_shared.store import runners as runner_store
from minitower_shared.store import runs as run_store
from minitower_shared.store.reaper_passes import PassWork

log = logging.getLogger("minitower.reaper")

BATCH = 500


@dataclass
class TickResult:
    expired: list[tuple[int, RunStatus]] = field(default_factory=list)
    runners_offline: int = 0
    idempotency_keys_deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.expired or self.runners_offline or self.idempotency_keys_deleted)


def tick(
    session: Session, now: datetime, *, runner_offline_after: timedelta, name: str | None = None
) -> TickResult:
    """One pass over the database as of ``now``, recorded as reaper ``name``'s last pass
    (default :func:`reaper_name`) in the same transaction."""
    started = time.perf_counter()
    result = TickResult(
        expired=lifecycle.expire_stale(session, now, limit=BATCH),
        runners_offline=runner_store.mark_silent_runners_offline(
            session, seen_before=now - runner_offline_after
        ),
        idempotency_keys_deleted=run_store.delete_expired_idempotency_keys(session, now=now),
    )
    outcomes = Counter(status for _run_id, status in result.expired)
    if outcomes[RunStatus.QUEUED]:
        announce_queued(session)  # retries: runners long-polling anywhere look at once
    pass_store.record_pass(
        session,
        name=name or reaper_name(),
        at=now,
        duration_ms=(time.perf_counter() - started) * 1000,
        work=PassWork(
            leases_expired=len(result.expired),
            runs_retried=outcomes[RunStatus.QUEUED],
            runs_buried=outcomes[RunStatus.DEAD],
            runs_cancelled=outcomes[RunStatus.CANCELLED],
            runners_marked_offline=result.runners_offline,
        ),
    )
    return result


def reaper_name() -> str:
    """This process's default name in ``reaper_pass`` (when ``MINITOWER_REAPER_NAME`` is
    unset): unique among the live reapers sharing one database file."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_forever(
    engine: Engine,
    *,
    interval: float,
    runner_offline_after: timedelta,
    stop: threading.Event,
    name: str | None = None,
) -> None:
    """Tick every ``interval`` seconds until ``stop`` is set."""
    log.info("reaper started", extra={"interval_seconds": interval})
    while not stop.is_set():
        try:
            with write_session(engine) as session:
                result = tick(
                    session, utcnow(), runner_offline_after=runner_offline_after, name=name
                )
        except OperationalError as exc:
            # The database was busy past its timeout or briefly unavailable: the next
            # pass catches up, since nothing expires twice.
            log.warning("reaper pass failed, will retry", extra={"error": str(exc.orig)})
            stop.wait(interval)
            continue
        for run_id, status in result.expired:
            log.info("lease expired", extra={"run_id": run_id, "status": status.value})
        if result.runners_offline:
            log.info("runners marked offline", extra={"count": result.runners_offline})
        # A full batch means more may be waiting: go again without sleeping.
        if len(result.expired) < BATCH:
            stop.wait(interval)
    log.info("reaper stopped")
