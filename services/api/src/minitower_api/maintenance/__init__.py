"""Operators' maintenance commands of ``minitowerd``: backup, restore, prune.

Each command's logic lives in its own module; ``minitower_api.cli`` only registers them.
They raise :class:`MaintenanceError` for anything the operator has to fix, with a message
that fits on one line."""

from pathlib import Path

from sqlalchemy import Engine

from minitower_shared.db import create_db_engine
from minitower_shared.db_limits import DEFAULT_BUSY_TIMEOUT


class MaintenanceError(Exception):
    """A refusal or failure the operator can act on; its message is one line."""


def open_engine(database: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """An engine for one maintenance command: a SQLite file must exist already (a
    command never creates one); a PostgreSQL URL is opened as given."""
    if isinstance(database, Path) and not database.exists():
        raise MaintenanceError(f"database {database} does not exist")
    return create_db_engine(database, pool_size=1, busy_timeout=busy_timeout)


def sqlite_file(database: str | Path, command: str, instead: str) -> Path:
    """The SQLite file of a command that works on the file itself; PostgreSQL is refused
    with what to use ``instead``."""
    if not isinstance(database, Path):
        raise MaintenanceError(f"{command} is not supported on PostgreSQL yet: {instead}")
    return database
