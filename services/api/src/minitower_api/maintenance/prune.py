"""``minitowerd prune --older-than DURATION``: give back the space of old logs and of
objects nothing references, while the API keeps serving.

Logs: only lines of terminal runs that finished before now - DURATION, deleted in small
write transactions (``BEGIN IMMEDIATE`` through ``write_session``) so the API's writers
wait at most one batch. Runs, attempts and versions are never deleted.

Audit log: rows older than MINITOWER_AUDIT_RETENTION (its own setting, not
``--older-than``: the audit log is usually kept far longer than logs), in batches too.
Webhook history: delivered and failed deliveries that finished before the cutoff, with
their attempts and the events no delivery needs any more, in batches likewise.

Objects: files of the object store that no app version references, e.g. left by an
upload that failed between placing its object and committing its version row, and
spooled uploads (``tmp/``) that died with their process; then the same for the objects
kept in the database (MINITOWER_OBJECT_STORE=postgres; none with the local store). The
API places and removes objects only under the database's write lock and, on PostgreSQL,
the object's own lock (routers/versions.py), so they are checked and deleted under both
too; objects written within the last ``OBJECT_MIN_AGE`` are left alone as well (an
upload being received right now).
"""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from minitower_api.maintenance import MaintenanceError, open_engine, sqlite_file
from minitower_api.maintenance.files import tree_files
from minitower_shared.clock import rfc3339, utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.store import audit as audit_store
from minitower_shared.store import maintenance as store
from minitower_shared.store import objects as object_store
from minitower_shared.store import webhooks as webhook_store

OBJECT_MIN_AGE = timedelta(hours=1)
LOG_BATCH = 2000  # lines per write transaction: a few milliseconds of the write lock
ATTEMPT_CHUNK = 500  # attempt ids per query (far below SQLite's variable limit)
OBJECT_BATCH = 200  # files unlinked per write transaction
AUDIT_BATCH = 2000  # audit rows per write transaction
WEBHOOK_BATCH = 500  # finished webhook deliveries deleted per write transaction


@dataclass
class PruneReport:
    cutoff: datetime
    dry_run: bool
    runs: int = 0
    log_lines: int = 0
    log_bytes: int = 0
    objects: list[tuple[str, int]] = field(default_factory=list)
    webhook_deliveries: int = 0
    vacuum: tuple[int, int] | None = None  # database bytes before and after
    audit_cutoff: datetime | None = None
    audit_rows: int = 0

    @property
    def object_bytes(self) -> int:
        return sum(size for _, size in self.objects)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def prune_logs(engine: Engine, report: PruneReport) -> None:
    with read_session(engine) as session:
        attempts = store.attempts_of_runs_finished_before(session, report.cutoff)
    run_of = dict(attempts)
    for chunk in _chunks(sorted(run_of), ATTEMPT_CHUNK):
        with read_session(engine) as session:
            volumes = store.logs_by_attempt(session, chunk)
        if not volumes:
            continue
        report.runs += len({run_of[attempt] for attempt in volumes})
        expected = sum(v.lines for v in volumes.values())
        if report.dry_run:
            report.log_lines += expected
            report.log_bytes += sum(v.bytes for v in volumes.values())
            continue
        ids = sorted(volumes)
        # Bounded: each batch deletes LOG_BATCH lines until none are left, and terminal
        # runs' attempts gain no new lines.
        for _ in range(expected // LOG_BATCH + 2):
            with write_session(engine) as session:
                deleted = store.delete_logs(session, ids, limit=LOG_BATCH)
            report.log_lines += deleted.lines
            report.log_bytes += deleted.bytes
            if deleted.lines < LOG_BATCH:
                break


def prune_audit(engine: Engine, report: PruneReport) -> None:
    assert report.audit_cutoff is not None
    with read_session(engine) as session:
        expected = audit_store.count_older_than(session, report.audit_cutoff)
    if report.dry_run:
        report.audit_rows = expected
        return
    # Bounded like the logs: the rows older than the cutoff only ever get fewer.
    for _ in range(expected // AUDIT_BATCH + 2):
        with write_session(engine) as session:
            deleted = audit_store.delete_older_than(session, report.audit_cutoff, limit=AUDIT_BATCH)
        report.audit_rows += deleted
        if deleted < AUDIT_BATCH:
            break


def prune_webhook_history(engine: Engine, report: PruneReport) -> None:
    """Delivered and failed webhook deliveries that finished before the cutoff, with
    their attempts and events; pending ones are never touched."""
    if report.dry_run:
        with read_session(engine) as session:
            report.webhook_deliveries = len(
                webhook_store.finished_deliveries_before(session, report.cutoff, limit=None)
            )
        return
    # Bounded: every batch deletes what it found, and finished deliveries only get older.
    while True:
        with write_session(engine) as session:
            ids = webhook_store.finished_deliveries_before(
                session, report.cutoff, limit=WEBHOOK_BATCH
            )
            report.webhook_deliveries += webhook_store.delete_deliveries(session, ids)
        if len(ids) < WEBHOOK_BATCH:
            break


def _candidates(objects_dir: Path, referenced: set[str], now: float) -> list[tuple[Path, str]]:
    """Files no version references and nobody touched for OBJECT_MIN_AGE."""
    oldest = now - OBJECT_MIN_AGE.total_seconds()
    found = []
    for path in tree_files(objects_dir):
        key = path.relative_to(objects_dir).as_posix()
        try:
            if key not in referenced and path.stat().st_mtime < oldest:
                found.append((path, key))
        except FileNotFoundError:
            continue
    return found


def prune_objects(engine: Engine, objects_dir: Path, report: PruneReport) -> None:
    now = time.time()
    with read_session(engine) as session:
        referenced = store.referenced_object_keys(session)
    candidates = _candidates(objects_dir, referenced, now)
    if report.dry_run:
        report.objects = [(key, path.stat().st_size) for path, key in candidates]
        return
    for start in range(0, len(candidates), OBJECT_BATCH):
        batch = candidates[start : start + OBJECT_BATCH]
        with write_session(engine) as session:
            # Again under the locks: no version can come to reference one now.
            object_store.hold(session, *(key for _, key in batch))
            referenced = store.referenced_object_keys(session)
            for path, key in batch:
                if key in referenced:
                    continue
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
                report.objects.append((key, size))


def prune_stored_objects(engine: Engine, report: PruneReport, now: datetime) -> None:
    """The objects kept in the database that no app version references."""
    with read_session(engine) as session:
        candidates = object_store.unreferenced_objects(session, now - OBJECT_MIN_AGE)
    if report.dry_run:
        report.objects += candidates
        return
    for start in range(0, len(candidates), OBJECT_BATCH):
        batch = [key for key, _ in candidates[start : start + OBJECT_BATCH]]
        with write_session(engine) as session:
            object_store.hold(session, *batch)
            referenced = store.referenced_object_keys(session)
            for key in batch:
                size = None if key in referenced else object_store.delete_object(session, key)
                if size is not None:
                    report.objects.append((key, size))


def vacuum(db_path: Path) -> tuple[int, int]:
    before = db_path.stat().st_size
    with closing(sqlite3.connect(db_path, timeout=30, isolation_level=None)) as conn:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return before, db_path.stat().st_size


def prune(
    database: str | Path,
    objects_dir: Path,
    *,
    older_than: timedelta,
    dry_run: bool,
    vacuum_after: bool = False,
    now: datetime | None = None,
    audit_retention: timedelta = timedelta(days=365),
) -> PruneReport:
    if isinstance(database, Path) and not database.is_file():
        raise MaintenanceError(f"database {database} does not exist (check MINITOWER_DB_PATH)")
    # Checked first: a refusal after the deletes would read as a failed prune.
    vacuum_file = (
        sqlite_file(database, "--vacuum", "autovacuum reuses the space; VACUUM FULL returns it")
        if vacuum_after and not dry_run
        else None
    )
    now = now or utcnow()
    report = PruneReport(
        cutoff=now - older_than, dry_run=dry_run, audit_cutoff=now - audit_retention
    )
    engine = open_engine(database)
    try:
        prune_logs(engine, report)
        prune_webhook_history(engine, report)
        prune_objects(engine, objects_dir, report)
        prune_stored_objects(engine, report, now)
        prune_audit(engine, report)
    finally:
        engine.dispose()
    if vacuum_file is not None:
        report.vacuum = vacuum(vacuum_file)
    return report


def summary(report: PruneReport) -> list[str]:
    verb = "would delete" if report.dry_run else "deleted"
    lines = [
        f"{verb} {report.log_lines} log lines ({report.log_bytes} bytes) of {report.runs} "
        f"runs finished before {rfc3339(report.cutoff)}",
        f"{verb} {report.webhook_deliveries} finished webhook deliveries (with their "
        "attempts) that ended before then",
        f"{verb} {len(report.objects)} unreferenced objects ({report.object_bytes} bytes) "
        f"older than {OBJECT_MIN_AGE.total_seconds() / 3600:g} h",
    ]
    lines += [f"  {key} ({size} bytes)" for key, size in report.objects]
    if report.audit_cutoff is not None:
        lines.append(
            f"{verb} {report.audit_rows} audit log rows recorded before "
            f"{rfc3339(report.audit_cutoff)} (MINITOWER_AUDIT_RETENTION)"
        )
    if report.vacuum is not None:
        before, after = report.vacuum
        lines.append(f"vacuumed the database: {before} -> {after} bytes")
    return lines
