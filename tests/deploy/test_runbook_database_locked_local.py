"""deploy/runbooks/database-locked.md, local processes: a live ``minitowerd`` with a
short busy timeout whose database this test locks (``BEGIN IMMEDIATE`` on a connection
of its own). Writes answer 503 database_busy with Retry-After while the lock is held;
the runbook's diagnosis finds the holder and says the checkpoint is blocked; once the
lock is released, writes go through and the checkpoint and integrity check pass."""

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from minitower_shared.migrate import head_revision
from tests.support.clients import TeamClient, check
from tests.support.processes import LiveApi
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN


@pytest.fixture
def api(make_live_api: Callable[[dict[str, str]], LiveApi]) -> LiveApi:
    return make_live_api(
        {"MINITOWER_DB_BUSY_TIMEOUT": "500ms", "MINITOWER_SLOW_QUERY_THRESHOLD": "0"}
    )


class LockHolder:
    """A write lock on the database, held by a thread of this test until released."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._locked = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with closing(sqlite3.connect(self._db_path, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            self._locked.set()
            self._release.wait(60)
            conn.execute("ROLLBACK")

    def __enter__(self) -> "LockHolder":
        self._thread.start()
        assert self._locked.wait(10), "the test could not take the lock"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        self._thread.join(10)


def test_a_held_lock_is_found_by_the_runbook_and_writes_recover(
    api: LiveApi, tmp_path: Path
) -> None:
    db_path = Path(api.env["MINITOWER_DB_PATH"])
    with api.client() as http:
        team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        env = {
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / ".config"),
            "MINITOWER_SERVER_URL": api.url,
            "MINITOWER_API_TOKEN": team.token,
            "MINITOWER_DB_PATH": str(db_path),
            "MINITOWER_DB_BUSY_TIMEOUT": "500ms",
            "MINITOWER_ENV": "dev",
        }
        with LockHolder(db_path):
            refused = team.post("/api/v1/tokens", json={"name": "during the lock"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "database_busy"
            assert refused.headers["retry-after"].isdigit()
            check(http.get("/ready"), 200)

            holders = run_step("database-locked", "local-who-holds-db", env=env).stdout
            assert str(os.getpid()) in holders and "minitowerd" in holders, holders
            status = run_step("database-locked", "local-db-status", env=env).stdout
            assert "journal mode:    wal" in status
            assert f"schema revision: {head_revision()}" in status
            blocked = run_step("database-locked", "local-checkpoint", env=env, check=False)
            assert blocked.returncode == 1, blocked
            assert "checkpoint:      blocked" in blocked.stdout

        written = run_step("database-locked", "verify-writes", env=env)
        assert written.stdout.strip().endswith("revoked"), written.stdout
        healthy = run_step("database-locked", "local-checkpoint", env=env).stdout
        assert "checkpoint:      done" in healthy and "wal:             0 bytes" in healthy
        assert "integrity:       ok" in healthy
        by_hand = run_step("database-locked", "local-sqlite3-checkpoint", env=env).stdout
        assert by_hand.split() == ["5000", "0|0|0", "ok"]
    assert api.events("database busy", service="api", level="warning")
    assert api.events("slow query", service="api", level="warning")
