"""Shared by the maintenance tests: ``minitowerd`` as an operator runs it, over a live
state directory (database and objects) of the test's own."""

import os
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tests.support.databases import Database, Template, copy_database, database_env, sqlite_file
from tests.support.processes import script
from tests.support.rows import Rows


@dataclass
class State:
    """A database (a SQLite file, or a PostgreSQL URL) and an objects directory."""

    db: Database
    objects: Path

    @property
    def file(self) -> Path:
        """The SQLite file, for the tests about the file (marked ``sqlite_only``)."""
        return sqlite_file(self.db)

    @property
    def env(self) -> dict[str, str]:
        return {**database_env(self.db), "MINITOWER_OBJECTS_DIR": str(self.objects)}

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """Run ``sql`` (a statement both engines take, or a PRAGMA on SQLite); its rows."""
        if isinstance(self.db, Path):
            with closing(sqlite3.connect(self.db, timeout=30)) as conn, conn:
                return list(conn.execute(sql))
        with Rows(self.db) as rows:
            return rows.query(sql)


def new_state(folder: Path, template: Template | Path) -> State:
    """A state over a copy of ``template``: the engine under test's (``Template``; the
    caller drops a PostgreSQL copy with ``Template.drop``) or a SQLite file's."""
    if isinstance(template, Path):
        return State(db=copy_database(template, folder), objects=folder / "objects")
    return State(db=template.copy(folder), objects=folder / "objects")


def minitowerd(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("minitowerd"), *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit 1 and one line on stderr naming the problem, never a traceback."""
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr, done.stderr
