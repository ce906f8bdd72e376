"""The tests' databases: SQLite files (the default) or PostgreSQL databases
(``MINITOWER_TEST_DATABASE=postgresql``), each test's copied from one migrated template
instead of migrated anew.

A database is named the way the settings and ``create_db_engine`` take it: a ``Path``
for a SQLite file, a URL string for PostgreSQL (``database_env`` gives the variables a
process started by a test needs)."""

import os
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from minitower_shared.migrate import upgrade_to_head
from tests.support.postgres import PostgresCluster

ENGINE = os.environ.get("MINITOWER_TEST_DATABASE", "sqlite")
if ENGINE not in ("sqlite", "postgresql"):
    raise RuntimeError(f"MINITOWER_TEST_DATABASE must be sqlite or postgresql, not {ENGINE!r}")
ON_POSTGRESQL = ENGINE == "postgresql"

Database = str | Path


def copy_database(template: Path, folder: Path) -> Path:
    """A migrated SQLite file in ``folder``: SQLite's backup API copies the template
    consistently whatever its journal mode, far faster than migrating again."""
    path = folder / "db" / "minitower.db"
    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    return path


@dataclass(frozen=True)
class Template:
    """A database migrated to head; ``copy`` makes a test's own."""

    sqlite_path: Path | None = None
    cluster: PostgresCluster | None = None
    name: str = ""

    @classmethod
    def migrate(cls, folder: Path, cluster: PostgresCluster | None) -> "Template":
        if cluster is None:
            path = folder / "minitower.db"
            upgrade_to_head(path)
            return cls(sqlite_path=path)
        name = cluster.create_database()
        upgrade_to_head(cluster.url(name))
        return cls(cluster=cluster, name=name)

    def copy(self, folder: Path) -> Database:
        if self.cluster is None:
            assert self.sqlite_path is not None
            return copy_database(self.sqlite_path, folder)
        return self.cluster.url(self.cluster.create_database(template=self.name))

    def drop(self, database: Database) -> None:
        """Remove a copy (a SQLite file goes with its test's temporary folder)."""
        if self.cluster is not None and isinstance(database, str):
            self.cluster.drop_database(database.rsplit("/", 1)[1])


def database_settings(database: Database, folder: Path) -> dict[str, object]:
    """The settings' keyword arguments that point a service at ``database``."""
    if isinstance(database, Path):
        return {"db_path": database}
    return {"database_url": database, "db_path": folder / "unused.db"}


def object_store(database: Database) -> Literal["local", "postgres"]:
    """The object store of an API over ``database``: on PostgreSQL the database's own, so
    that every test of uploads and downloads covers it there."""
    return "local" if isinstance(database, Path) else "postgres"


def database_env(database: Database) -> dict[str, str]:
    """The environment that points a MiniTower process at ``database``."""
    if isinstance(database, Path):
        return {"MINITOWER_DB_PATH": str(database)}
    return {"MINITOWER_DATABASE_URL": database}


def sqlite_file(database: Database) -> Path:
    """The SQLite file of a test marked ``sqlite_only``."""
    if not isinstance(database, Path):
        pytest.fail("this test reads the SQLite file itself: mark it sqlite_only(reason)")
    return database


def unique_violation(sqlite_columns: str, postgresql_constraint: str) -> str:
    """The pattern of the IntegrityError a unique index raises, named as each engine
    names it: SQLite by its columns (``run_attempt.run_id``), PostgreSQL by the index."""
    if ON_POSTGRESQL:
        return f'unique constraint "{postgresql_constraint}"'
    return f"(?m)UNIQUE constraint failed: {re.escape(sqlite_columns)}$"


def database_from_arg(value: str) -> Database:
    """A database passed to a worker process as a string, named again as a Database."""
    return value if "://" in value else Path(value)


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
