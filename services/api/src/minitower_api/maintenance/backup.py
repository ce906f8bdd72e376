"""``minitowerd backup DEST``: an online, consistent copy of the database and objects.

The database is copied with SQLite's backup API in one step: the copy reads one
snapshot inside one read transaction, which in WAL mode never blocks the API's or the
reaper's writers (and is never blocked by them). A stepped copy (``pages=N``) would let
writers in between, but any write by another connection restarts it from the first
page, so under steady load it may never finish. ``VACUUM INTO`` also reads one
snapshot, but rebuilds every table and index and took longer (bench/README.md).

Objects are copied after the snapshot: the API renames an object into place inside the
write transaction that inserts the version row referring to it (routers/versions.py,
``_store_version``) and never deletes a referenced one, so every object the snapshot
references is already on disk when the copy of the objects starts.
"""

import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlmodel import Session

from minitower_api.maintenance import MaintenanceError
from minitower_api.maintenance.files import (
    check_integrity,
    copy_durably,
    fsync_dir,
    fsync_file,
    tree_files,
)
from minitower_api.maintenance.manifest import DATABASE, OBJECTS, Manifest, minitower_version
from minitower_shared.clock import rfc3339, utcnow
from minitower_shared.db_limits import DEFAULT_BUSY_TIMEOUT
from minitower_shared.digests import sha256_file
from minitower_shared.migrate import current_revision
from minitower_shared.store import maintenance as store

# The object store's folder of uploads being received: never part of a backup.
TEMPORARY_OBJECTS = "tmp"


@dataclass(frozen=True)
class BackupReport:
    path: Path
    manifest: Manifest
    seconds: float


def check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise MaintenanceError(f"{dest} exists and is not an empty directory: choose a new one")


def snapshot_database(db_path: Path, target: Path) -> None:
    """Copy one consistent snapshot of the live database to ``target``, a standalone
    file (rollback journal, no -wal beside it)."""
    source = sqlite3.connect(db_path, timeout=DEFAULT_BUSY_TIMEOUT)
    with closing(source), closing(sqlite3.connect(target, isolation_level=None)) as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    fsync_file(target)


def describe_snapshot(path: Path) -> tuple[store.RowCounts, set[str], str | None]:
    """Row counts, referenced object keys and schema revision of a database copy."""
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true")
    try:
        with Session(engine) as session:
            counts = store.count_rows(session)
            keys = store.referenced_object_keys(session)
        return counts, keys, current_revision(engine)
    finally:
        engine.dispose()


def copy_objects(objects_dir: Path, target: Path) -> tuple[int, int]:
    """Copy every stored object (not uploads in progress); (count, bytes)."""
    count = size = 0
    for path in tree_files(objects_dir, skip=(TEMPORARY_OBJECTS,)):
        try:
            size += copy_durably(path, target / path.relative_to(objects_dir))
        except FileNotFoundError:
            # Only an unreferenced object can vanish (a failed upload cleaning up after
            # itself, or prune); the snapshot's objects are never deleted.
            continue
        count += 1
    return count, size


def take_backup(db_path: Path, objects_dir: Path, dest: Path) -> BackupReport:
    started = time.monotonic()
    if not db_path.is_file():
        raise MaintenanceError(f"database {db_path} does not exist (check MINITOWER_DB_PATH)")
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Built beside DEST and renamed at the end, so a backup that failed half-way never
    # looks like a complete one. Readable by others (0755/0644) so that the service's
    # user in a container can read a backup an operator copied out (see the runbook).
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        os.chmod(work, 0o755)  # noqa: S103 - see above
        created_at = rfc3339(utcnow())
        assert created_at is not None
        try:
            snapshot_database(db_path, work / DATABASE)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):  # SQLITE_FULL: "database or disk is full"
                raise MaintenanceError(f"no space left on device writing {dest}") from exc
            raise
        check_integrity(work / DATABASE)
        counts, keys, revision = describe_snapshot(work / DATABASE)
        objects_count, objects_bytes = copy_objects(objects_dir, work / OBJECTS)
        missing = sorted(key for key in keys if not (work / OBJECTS / key).is_file())
        manifest = Manifest(
            created_at=created_at,
            minitower_version=minitower_version(),
            schema_revision=revision,
            db_sha256=sha256_file(work / DATABASE),
            db_bytes=(work / DATABASE).stat().st_size,
            objects_count=objects_count,
            objects_bytes=objects_bytes,
            runs=counts.runs,
            versions=counts.versions,
            log_lines=counts.log_lines,
            missing_objects=missing,
        )
        fsync_file(manifest.write(work))
        for folder in sorted({p.parent for p in work.rglob("*")} | {work}, reverse=True):
            fsync_dir(folder)
        if dest.exists():
            dest.rmdir()  # checked empty above
        os.rename(work, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BackupReport(path=dest, manifest=manifest, seconds=time.monotonic() - started)


def summary(report: BackupReport) -> list[str]:
    m = report.manifest
    lines = [
        f"backup written to {report.path.resolve()}",
        f"  database: {m.db_bytes} bytes, sha256 {m.db_sha256}, schema revision "
        f"{m.schema_revision}, integrity ok",
        f"  rows: {m.runs} runs, {m.versions} versions, {m.log_lines} log lines",
        f"  objects: {m.objects_count} files, {m.objects_bytes} bytes",
        f"  took {report.seconds:.2f} s",
    ]
    if m.missing_objects:
        lines.append(
            f"  warning: {len(m.missing_objects)} objects that versions reference were "
            f"already missing from the object store, e.g. {m.missing_objects[0]}"
        )
    return lines
