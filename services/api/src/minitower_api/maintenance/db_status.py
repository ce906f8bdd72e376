"""``minitowerd db-status``: what an operator needs to see when the database is slow or
locked, without the sqlite3 shell (the API image has none).

Read-only unless asked: ``checkpoint`` folds the WAL back into the database and
truncates it (``PRAGMA wal_checkpoint(TRUNCATE)``), ``integrity`` runs
``PRAGMA integrity_check`` (it reads every page: seconds per GB).
"""

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from minitower_api.maintenance import MaintenanceError


@dataclass(frozen=True)
class DbStatus:
    path: Path
    journal_mode: str
    busy_timeout_ms: int
    page_size: int
    page_count: int
    freelist_count: int
    wal_bytes: int
    schema_revision: str
    checkpoint: tuple[int, int, int] | None = None
    integrity: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.integrity in (None, ["ok"]) and (
            self.checkpoint is None or not self.checkpoint[0]
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def db_status(
    db_path: Path, *, busy_timeout: float, checkpoint: bool = False, integrity: bool = False
) -> DbStatus:
    if not db_path.exists():
        raise MaintenanceError(f"database {db_path} does not exist")
    # Autocommit, so that nothing here holds a transaction open past its statement.
    conn = sqlite3.connect(db_path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")

        def pragma(name: str) -> int | str:
            value: int | str = conn.execute(f"PRAGMA {name}").fetchone()[0]
            return value

        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = str(row[0]) if row else "none"
        except sqlite3.OperationalError:
            revision = "none (run minitowerd migrate)"
        done: tuple[int, int, int] | None = None
        if checkpoint:
            busy, log_frames, moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            done = (int(busy), int(log_frames), int(moved))
        problems: list[str] | None = None
        if integrity:
            problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        return DbStatus(
            path=db_path,
            journal_mode=str(pragma("journal_mode")),
            busy_timeout_ms=int(pragma("busy_timeout")),
            page_size=int(pragma("page_size")),
            page_count=int(pragma("page_count")),
            freelist_count=int(pragma("freelist_count")),
            wal_bytes=_file_size(db_path.with_name(db_path.name + "-wal")),
            schema_revision=revision,
            checkpoint=done,
            integrity=problems,
        )
    finally:
        conn.close()


def describe(status: DbStatus) -> list[str]:
    lines = [
        f"database:        {status.path}",
        f"journal mode:    {status.journal_mode}",
        f"busy timeout:    {status.busy_timeout_ms} ms",
        f"size:            {status.page_count * status.page_size} bytes "
        f"({status.page_count} pages of {status.page_size}, {status.freelist_count} free)",
        f"wal:             {status.wal_bytes} bytes",
        f"schema revision: {status.schema_revision}",
    ]
    if status.checkpoint is not None:
        busy, log_frames, moved = status.checkpoint
        outcome = "blocked by a reader or writer" if busy else "done"
        lines.append(f"checkpoint:      {outcome} ({moved} of {log_frames} frames moved)")
    if status.integrity is not None:
        lines.append(f"integrity:       {'; '.join(status.integrity[:10])}")
    return lines
