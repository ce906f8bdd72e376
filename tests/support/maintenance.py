"""Shared by the maintenance tests: ``minitowerd`` as an operator runs it, over a live
state directory (database and objects) of the test's own."""

import os
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tests.support.databases import copy_database
from tests.support.processes import script


@dataclass
class State:
    db: Path
    objects: Path

    @property
    def env(self) -> dict[str, str]:
        return {"MINITOWER_DB_PATH": str(self.db), "MINITOWER_OBJECTS_DIR": str(self.objects)}

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(self.db, timeout=30)) as conn, conn:
            return list(conn.execute(sql))


def new_state(folder: Path, template: Path) -> State:
    return State(db=copy_database(template, folder), objects=folder / "objects")


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
