"""Migrated SQLite files for tests, copied from one template instead of migrated anew."""

import sqlite3
from contextlib import closing
from pathlib import Path


def copy_database(template: Path, folder: Path) -> Path:
    """A migrated SQLite file in ``folder``: SQLite's backup API copies the template
    consistently whatever its journal mode, far faster than migrating again."""
    path = folder / "db" / "minitower.db"
    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    return path
