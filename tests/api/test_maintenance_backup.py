"""``minitowerd backup`` of a live database: a real API process keeps creating runs and
taking log lines while the backup runs; the copy must hold every acknowledged run."""

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.maintenance import State, minitowerd, new_state, one_line_error
from tests.support.processes import start_api
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.volumes import small_tmpfs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.sqlite_only(
    "backs up the SQLite file; minitowerd backup refuses PostgreSQL (pg_dump; "
    "tests/api/test_maintenance_postgresql.py)"
)


class RunCreator(threading.Thread):
    """Creates runs as fast as one client can; remembers when each 201 arrived."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.acked: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            team = TeamClient(http=http, token=self.token, team_id=0)
            deadline = time.monotonic() + 60
            while not self.stop.is_set() and time.monotonic() < deadline:
                response = team.post("/api/v1/apps/hello/runs", json={})
                if response.status_code != 201:
                    self.errors.append(response.text)
                    continue
                self.acked.append((time.monotonic(), response.json()["run_id"]))


class LogWriter(threading.Thread):
    """A runner leasing runs and sending log lines and results, as fast as it can."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.finished = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            runner = RunnerClient.register(http, "load-runner", REGISTRATION_TOKEN)
            deadline = time.monotonic() + 60
            while not self.stop.is_set() and time.monotonic() < deadline:
                lease = runner.lease()
                if lease is None:
                    continue
                check(runner.start(lease), 200)
                lines = [{"seq": n, "stream": "stdout", "line": f"line {n}"} for n in range(20)]
                check(runner.logs(lease, lines), 200)
                check(runner.result(lease, "completed", exit_code=0), 200)
                self.finished += 1


# Alone: its premise is a writer that gets a few hundred writes in while the backup runs,
# which tests beside it on the same cores would starve.
@pytest.mark.serial
@pytest.mark.slow
def test_backup_under_write_load_holds_every_acknowledged_run(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path / "live", migrated_template)
    api = start_api(
        tmp_path / "live",
        state.db,
        {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            "MINITOWER_OBJECTS_DIR": str(state.objects),
        },
    )
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": ""}))
        creator, writer = RunCreator(api.url, team.token), LogWriter(api.url)
        creator.start()
        writer.start()
        # Runs and log batches first, twice what the assertions below need.
        wait_for(
            lambda: len(creator.acked) > 100 and writer.finished > 20,
            timeout=60,
            what="a hundred runs and twenty finished runs before the backup",
        )
        started = time.monotonic()
        done = minitowerd("backup", str(tmp_path / "backup"), env=state.env, cwd=tmp_path)
        # And writes after it.
        ended, finished = time.monotonic(), writer.finished
        wait_for(
            lambda: creator.acked[-1][0] > ended and writer.finished > finished,
            timeout=30,
            what="a run created and a run finished after the backup",
        )
        creator.stop.set()
        writer.stop.set()
        creator.join(30)
        writer.join(30)
    finally:
        api.stop()
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    assert creator.errors == []
    acknowledged = {run_id for at, run_id in creator.acked if at < started}
    assert len(acknowledged) > 50 and writer.finished > 10
    assert any(at > started for at, _ in creator.acked), "the load went on during the backup"

    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    restored = State(db=tmp_path / "restored" / "minitower.db", objects=tmp_path / "objects2")
    done = minitowerd("restore", str(tmp_path / "backup"), env=restored.env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert restored.query("PRAGMA integrity_check") == [("ok",)]
    run_ids = {row[0] for row in restored.query("SELECT id FROM run")}
    assert acknowledged <= run_ids
    assert len(run_ids) == manifest["runs"]
    assert restored.query("SELECT count(*) FROM run_log") == [(manifest["log_lines"],)]
    assert manifest["log_lines"] > 0
    (key,) = restored.query("SELECT artifact_object_key FROM app_version")[0]
    assert (restored.objects / str(key)).read_bytes() == (state.objects / str(key)).read_bytes()


def test_backup_writes_a_manifest_and_a_standalone_copy(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    (tmp_path / "empty").mkdir()
    done = minitowerd("backup", str(tmp_path / "empty"), env=state.env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    backup = tmp_path / "empty"
    assert sorted(p.name for p in backup.iterdir()) == ["manifest.json", "minitower.db"]
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["db_bytes"] == (backup / "minitower.db").stat().st_size
    assert manifest["schema_revision"] is not None
    with closing(sqlite3.connect(backup / "minitower.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_backup_refuses_a_destination_that_is_not_empty(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    done = minitowerd("backup", str(tmp_path / "full"), env=state.env, cwd=tmp_path)
    one_line_error(done, "is not an empty directory")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["x"]


def test_backup_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    env = {"MINITOWER_DB_PATH": str(tmp_path / "nope.db")}
    done = minitowerd("backup", str(tmp_path / "b"), env=env, cwd=tmp_path)
    one_line_error(done, "does not exist (check MINITOWER_DB_PATH)")
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "b").exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: smaller than a migrated database."""
    with small_tmpfs(tmp_path / "tiny", 64 * 1024) as mount_point:
        yield mount_point


def test_backup_on_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, migrated_template: Path, tiny_disk: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    done = minitowerd("backup", str(tiny_disk / "b"), env=state.env, cwd=tmp_path)
    one_line_error(done, "no space left on device")
    assert list(tiny_disk.iterdir()) == []
