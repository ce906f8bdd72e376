"""``minitowerd restore SRC``: put a backup back, with the API and the reaper stopped.

The replaced database is kept beside the new one (``<name>.before-restore-<time>``), so
a restore can be rolled back by moving it back. Objects are content-addressed: restoring
only adds the backup's objects that are missing and never removes one, so the kept
database still finds every object it references."""

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from minitower_api.maintenance import MaintenanceError
from minitower_api.maintenance.files import (
    check_integrity,
    copy_durably,
    fsync_dir,
    tree_files,
)
from minitower_api.maintenance.manifest import DATABASE, OBJECTS, Manifest
from minitower_shared.digests import sha256_file
from minitower_shared.migrate import alembic_config, head_revision

# How long to wait for the write lock before deciding someone is using the database.
IN_USE_TIMEOUT = 2.0
SIDECARS = ("-wal", "-shm", "-journal")
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class RestoreReport:
    manifest: Manifest
    db_path: Path
    kept_aside: Path | None
    objects_added: int
    objects_present: int
    notice: str | None


def verify_backup(src: Path) -> Manifest:
    manifest = Manifest.read(src)
    db = src / DATABASE
    if not db.is_file():
        raise MaintenanceError(f"backup {src} has no {DATABASE}")
    if db.stat().st_size != manifest.db_bytes or sha256_file(db) != manifest.db_sha256:
        raise MaintenanceError(f"backup {src} is damaged: {DATABASE} differs from its manifest")
    check_integrity(db)
    found = len(tree_files(src / OBJECTS))
    if found != manifest.objects_count:
        raise MaintenanceError(
            f"backup {src} is damaged: {found} objects, its manifest lists {manifest.objects_count}"
        )
    return manifest


def close_for_replacement(db_path: Path) -> bool:
    """Refuse if another process has the database open; otherwise fold its WAL into the
    file (leaving the database in rollback-journal mode, with no -wal to lose) and answer
    True. A damaged database (the usual reason to restore) cannot be folded: answer
    False, and its -wal and -shm must be kept aside with it.

    Leaving WAL mode needs the only connection to the file: SQLite answers "database is
    locked" while the API or the reaper holds one, even an idle one in their pools."""
    with db_path.open("rb") as file:
        # Opening a file that is not a database can make SQLite drop its -wal: look first.
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            return False
    try:
        with closing(sqlite3.connect(db_path, timeout=IN_USE_TIMEOUT)) as conn:
            (mode,) = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise MaintenanceError(
                f"database {db_path} is in use: stop the API, the reaper and the scheduler first "
                "(compose: docker compose stop api reaper scheduler)"
            ) from exc
        raise MaintenanceError(f"cannot open database {db_path}: {exc}") from exc
    except sqlite3.DatabaseError:
        return False  # "file is not a database", "database disk image is malformed"
    if mode != "delete":
        raise MaintenanceError(
            f"database {db_path} is in use: stop the API, the reaper and the scheduler first "
            "(compose: docker compose stop api reaper scheduler)"
        )
    return True


def restore_objects(src: Path, objects_dir: Path) -> tuple[int, int]:
    """Add the backup's objects that are missing; (added, already present)."""
    staging = objects_dir / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    added = present = 0
    for path in tree_files(src):
        final = objects_dir / path.relative_to(src)
        if final.exists():
            present += 1
            continue
        temp = staging / f"restore-{os.getpid()}-{final.name}"
        copy_durably(path, temp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        added += 1
    return added, present


def schema_notice(revision: str | None) -> str | None:
    """What the operator must do about the backup's schema revision, if anything."""
    head = head_revision()
    if revision == head:
        return None
    if revision is None:
        return "the backup has no schema revision: run `minitowerd migrate` before starting"
    try:
        ScriptDirectory.from_config(alembic_config("unused")).get_revision(revision)
    except CommandError:
        return (
            f"the backup's schema revision {revision} is unknown to this MiniTower "
            f"(head {head}): it comes from a newer version; run that version instead"
        )
    return (
        f"the backup's schema is at revision {revision}, this MiniTower's at {head}: "
        "run `minitowerd migrate` before starting the API and the reaper"
    )


def restore_backup(src: Path, db_path: Path, objects_dir: Path, *, force: bool) -> RestoreReport:
    manifest = verify_backup(src)
    exists = db_path.exists()
    if exists and not force:
        raise MaintenanceError(
            f"database {db_path} exists: pass --force to replace it (it is kept as "
            f"{db_path.name}.before-restore-<time>)"
        )
    folded = close_for_replacement(db_path) if exists else True
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # Objects first: the restored database must never reference an object not yet there.
    added, present = restore_objects(src / OBJECTS, objects_dir)
    temp = db_path.with_name(f".{db_path.name}.restoring")
    copy_durably(src / DATABASE, temp)
    kept: Path | None = None
    if exists:
        stat = db_path.stat()
        # Keep the owner of the file it replaces (a root operator restoring for a
        # service user).
        if os.geteuid() == 0:
            os.chown(temp, stat.st_uid, stat.st_gid)
        os.chmod(temp, stat.st_mode & 0o777)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
        os.replace(db_path, kept)
    # A -wal left beside the path would be replayed into the restored file. Folded, it
    # holds nothing; beside a damaged file it may hold the last commits: keep it with it.
    for suffix in SIDECARS:
        sidecar = db_path.with_name(db_path.name + suffix)
        if not folded and kept is not None and sidecar.exists():
            os.replace(sidecar, kept.with_name(kept.name + suffix))
        else:
            sidecar.unlink(missing_ok=True)
    os.replace(temp, db_path)
    fsync_dir(db_path.parent)
    return RestoreReport(
        manifest=manifest,
        db_path=db_path,
        kept_aside=kept,
        objects_added=added,
        objects_present=present,
        notice=schema_notice(manifest.schema_revision),
    )


def summary(report: RestoreReport) -> list[str]:
    m = report.manifest
    lines = [
        f"restored {report.db_path} from the backup of {m.created_at} "
        f"({m.runs} runs, {m.versions} versions, schema revision {m.schema_revision})",
        f"  objects: {report.objects_added} added, {report.objects_present} already present",
    ]
    if report.kept_aside is not None:
        lines.append(f"  the replaced database is kept as {report.kept_aside}")
    lines.append(report.notice or "  schema is current: start the API and the reaper")
    return lines
