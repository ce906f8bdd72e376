"""File helpers of the maintenance commands: hashing, durable copies, SQLite checks."""

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from minitower_api.maintenance import MaintenanceError


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_durably(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` (data and mtime) and flush it to disk; its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    fsync_file(target)
    return target.stat().st_size


def tree_files(root: Path, *, skip: tuple[str, ...] = ()) -> list[Path]:
    """Every regular file under ``root`` (none if it is missing), skipping the top-level
    folders named in ``skip``, in a stable order."""
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and path.relative_to(root).parts[0] not in skip
    )


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that can neither change the file nor leave -wal/-shm files beside
    it: for checking copies that nothing else has open."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def check_integrity(path: Path) -> None:
    """``PRAGMA integrity_check`` of a database file nothing else has open."""
    try:
        with closing(open_readonly(path)) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise MaintenanceError(f"{path} is not a usable SQLite database: {exc}") from exc
    if problems != ["ok"]:
        raise MaintenanceError(f"{path} fails PRAGMA integrity_check: {problems[0]}")
