"""``minitowerd copy-to``: a SQLite deployment (1,000 runs with their attempts and logs,
two teams, tokens, versions with artifacts, a secret, a webhook, a schedule) copied into
an empty PostgreSQL database; the API over the copy serves the same runs and logs to the
same tokens, hands out the same artifacts and secrets, and numbers new rows after the
copied ones. A target with rows is refused; bad targets and a source on PostgreSQL are
one-line errors that never show the password; a damaged object fails the verdict.

The source is always a SQLite file and the target a cluster of PostgreSQL: the tests
run in both passes (``any_postgres_cluster``)."""

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi.testclient import TestClient

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.migrate import alembic_config
from tests.support.archives import make_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import copy_database
from tests.support.maintenance import minitowerd, one_line_error
from tests.support.postgres import PostgresCluster
from tests.support.rows import Rows, table
from tests.support.secrets import KEY, put_secret, run_secrets, secrets_archive
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

PASSWORD = "pw-Copy-7Hq-never-printed"
BULK_RUNS = 1000
LINES_PER_ATTEMPT = 10
HELLO = '[app]\nname = "hello"\nscript = "main.py"\n'


@dataclass
class Source:
    """A SQLite deployment's state and what was put in it."""

    db: Path
    objects: Path
    acme: str  # tokens
    globex: str
    runner: str
    hello_v2: bytes  # the archive of hello's latest version
    runs: int

    def env(self) -> dict[str, str]:
        return {"MINITOWER_DB_PATH": str(self.db), "MINITOWER_OBJECTS_DIR": str(self.objects)}

    def copy(self, folder: Path) -> "Source":
        """The same state in ``folder`` (for a test that damages it)."""
        objects = folder / "objects"
        shutil.copytree(self.objects, objects)
        db = copy_database(self.db, folder)
        return Source(**{**self.__dict__, "db": db, "objects": objects})


def sqlite_settings(source: Path, objects: Path) -> ApiSettings:
    return ApiSettings(
        db_path=source,
        objects_dir=objects,
        bootstrap_token=BOOTSTRAP_TOKEN,  # type: ignore[arg-type]
        runner_registration_token=REGISTRATION_TOKEN,  # type: ignore[arg-type]
        secrets_key=KEY,  # type: ignore[arg-type]
        lease_ttl=30,
    )


def postgres_settings(url: str, objects: Path) -> ApiSettings:
    return ApiSettings(
        database_url=url,  # type: ignore[arg-type]
        object_store="postgres",
        objects_dir=objects,  # only the upload spool: the objects are in the database
        bootstrap_token=BOOTSTRAP_TOKEN,  # type: ignore[arg-type]
        runner_registration_token=REGISTRATION_TOKEN,  # type: ignore[arg-type]
        secrets_key=KEY,  # type: ignore[arg-type]
        lease_ttl=30,
    )


def finish_one(runner: RunnerClient, lines: list[str]) -> int:
    lease = runner.lease(start=True)
    assert lease is not None
    check(
        runner.logs(
            lease,
            [{"seq": i, "stream": "stdout", "line": line} for i, line in enumerate(lines)],
        ),
        200,
    )
    check(runner.result(lease, "completed", exit_code=0), 200)
    return lease.run_id


def bulk_runs(db: Path, template_run: int, count: int) -> None:
    """``count`` finished runs cloned from a finished one (with its attempt and logs),
    inserted directly: 1,000 runs through HTTP would take most of a minute. Every tenth
    has a second attempt, the first one lost."""
    with Rows(db) as rows:
        run = rows.select("run", "id = :id", id=template_run)[0]
        attempt = rows.select("run_attempt", "run_id = :id", id=template_run)[0]
        line = rows.select("run_log", "attempt_id = :id", id=attempt["id"])[0]
        next_no = rows.query("SELECT max(run_no) FROM run WHERE app_id = :a", a=run["app_id"])
        run_no = int(next_no[0][0])
        next_run = int(rows.query("SELECT max(id) FROM run")[0][0]) + 1
        next_attempt = int(rows.query("SELECT max(id) FROM run_attempt")[0][0]) + 1
        with rows.engine.begin() as conn:
            runs, attempts, logs = [], [], []
            for n in range(count):
                run_id = next_run + n
                run_no += 1
                runs.append(
                    {**run, "id": run_id, "run_no": run_no, "input": {"n": n, "note": "x\u00e9"}}
                )
                for attempt_no in (1, 2) if n % 10 == 0 else (1,):
                    status = "lost" if attempt_no == 1 and n % 10 == 0 else "completed"
                    attempts.append(
                        {
                            **attempt,
                            "id": next_attempt,
                            "run_id": run_id,
                            "attempt_no": attempt_no,
                            "status": status,
                            "reported_status": None if status == "lost" else "completed",
                            "lease_token_hash": f"{next_attempt:064x}",
                        }
                    )
                    for seq in range(LINES_PER_ATTEMPT):
                        logs.append(
                            {
                                **{k: v for k, v in line.items() if k != "id"},
                                "attempt_id": next_attempt,
                                "seq": seq,
                                "line": f"run {run_id} attempt {attempt_no} line {seq}",
                            }
                        )
                    next_attempt += 1
            conn.execute(table("run").insert(), runs)
            conn.execute(table("run_attempt").insert(), attempts)
            conn.execute(table("run_log").insert(), logs)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Source:
    folder = tmp_path_factory.mktemp("copy-to-source")
    db = copy_database(migrated_template, folder)
    objects = folder / "objects"
    hello_v1 = make_archive({"Towerfile": HELLO, "main.py": "print('one')\n"})
    hello_v2 = make_archive({"Towerfile": HELLO, "main.py": "print('two')\n"})
    with TestClient(create_app(sqlite_settings(db, objects))) as http:
        acme = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        globex = TeamClient.bootstrap(http, "globex", BOOTSTRAP_TOKEN)
        acme.deploy("hello", hello_v1)
        acme.deploy("hello", hello_v2)
        globex.deploy("vault", secrets_archive())
        check(put_secret(globex, "DB_URL", "postgres://secret-value"), 201)
        check(put_secret(globex, "API_KEY", "k-123"), 201)
        hook = {"url": "https://hooks.example.com/x", "events": ["run.failed"]}
        check(acme.post("/api/v1/webhooks", json=hook), 201)
        check(acme.post("/api/v1/apps/hello/schedules", json={"cron": "@daily"}), 201)
        runner = RunnerClient.register(http, "runner-1", REGISTRATION_TOKEN)
        acme.create_run("hello", input={})
        # A NUL: PostgreSQL keeps U+FFFD instead, and the checksums must agree on it.
        template_run = finish_one(runner, ["hello", "with a \x00 NUL", "\u00e9t\u00e9 \u2603"])
        globex.create_run("vault")
        finish_one(runner, ["vault"])
    bulk_runs(db, template_run, BULK_RUNS)
    return Source(
        db=db,
        objects=objects,
        acme=acme.token,
        globex=globex.token,
        runner=runner.token,
        hello_v2=hello_v2,
        runs=BULK_RUNS + 2,
    )


@pytest.fixture
def target(any_postgres_cluster: PostgresCluster) -> Iterator[str]:
    """An empty database (not migrated: copy-to migrates it); its URL with a password."""
    cluster = any_postgres_cluster
    name = cluster.create_database()
    try:
        yield cluster.url(name, password=PASSWORD)
    finally:
        cluster.drop_database(name)


def all_runs(http: httpx.Client | TestClient, token: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    runs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        page = check(http.get("/api/v1/runs", params=params, headers=headers), 200)
        runs.extend(page["runs"])
        cursor = page["next_cursor"]
        if cursor is None:
            return runs


def logs_of(http: TestClient, token: str, run_id: int, attempt: int) -> list[dict[str, Any]] | None:
    """An attempt's lines; None when the run has no such attempt."""
    headers = {"Authorization": f"Bearer {token}"}
    params = {"attempt": str(attempt)}
    response = http.get(f"/api/v1/runs/{run_id}/logs", params=params, headers=headers)
    if response.status_code == 404:
        return None
    logs: list[dict[str, Any]] = check(response, 200)["logs"]
    return logs


def served(settings: ApiSettings, source: Source, sample: list[int]) -> dict[str, Any]:
    """What the API over ``settings`` answers the source's tokens."""
    with TestClient(create_app(settings)) as http:
        runs = all_runs(http, source.acme) + all_runs(http, source.globex)
        logs = {
            (run_id, n): logs_of(http, source.acme, run_id, n) for run_id in sample for n in (1, 2)
        }
        return {"runs": runs, "logs": logs}


def test_round_trip_of_1000_runs_with_their_logs(
    source: Source, target: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    done = minitowerd("copy-to", target, env=source.env(), cwd=tmp_path)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"copied {source.db} to postgresql+psycopg://postgres:***@")
    counts = {line.split()[0]: line.split()[1:4] for line in lines[2:] if line.endswith(" ok")}
    assert counts["run"][:2] == [str(source.runs)] * 2
    attempts = source.runs + BULK_RUNS // 10
    assert counts["run_attempt"][:2] == [str(attempts)] * 2
    # 3 + 1 lines of the runs through the API, then the bulk runs' attempts.
    assert counts["run_log"][:2] == [str(4 + (attempts - 2) * LINES_PER_ATTEMPT)] * 2
    assert counts["team_token"][:2] == ["2", "2"]
    assert counts["secret"][:2] == ["2", "2"]
    assert "objects: 3 in the PostgreSQL store" in done.stdout
    assert "3 re-read with their SHA-256" in done.stdout
    assert lines[-1].startswith("verified: every table's rows and checksum match")
    print(f"\ncopy-to of {source.runs} runs: {took:.1f} s\n{done.stdout}")

    # The API over the copy answers the same tokens with the same runs and logs: acme's
    # first run (through the API), bulk runs with two attempts and with one, the last.
    sample = [1, 3, 4, 500, source.runs]
    before = served(sqlite_settings(source.db, source.objects), source, sample)
    after = served(postgres_settings(target, tmp_path / "spool"), source, sample)
    assert len(after["runs"]) == source.runs
    assert after["runs"] == before["runs"]
    assert sum(page is not None for page in before["logs"].values()) == len(sample) + 1
    for key, lines_before in before["logs"].items():
        expected = lines_before and [
            {**line, "line": line["line"].replace("\x00", "\ufffd")} for line in lines_before
        ]
        assert after["logs"][key] == expected, key
    assert {"with a \ufffd NUL"} <= {line["line"] for line in after["logs"][(1, 1)] or []}

    # New rows are numbered after the copied ones; the runner's token, the artifacts in
    # the database and the secrets (same key) serve a new run to completion.
    with TestClient(create_app(postgres_settings(target, tmp_path / "spool"))) as http:
        acme = TeamClient(http=http, token=source.acme, team_id=1)
        globex = TeamClient(http=http, token=source.globex, team_id=2)
        runner = RunnerClient(http=http, token=source.runner, runner_id=1, name="runner-1")
        created = globex.create_run("vault")
        assert created["run_id"] == max(r["run_id"] for r in after["runs"]) + 1
        lease = runner.lease(start=True)
        assert lease is not None and lease.run_id == created["run_id"]
        secrets = check(run_secrets(runner, lease), 200)["secrets"]
        assert secrets == {"DB_URL": "postgres://secret-value", "API_KEY": "k-123"}
        check(runner.result(lease, "completed", exit_code=0), 200)
        hello = acme.create_run("hello")
        assert (
            hello["run_no"]
            == max(r["run_no"] for r in after["runs"] if r["app_slug"] == "hello") + 1
        )
        lease = runner.lease(start=True)
        assert lease is not None and lease.run_id == hello["run_id"]
        artifact = runner.artifact(lease)
        assert artifact.status_code == 200 and artifact.content == source.hello_v2
        check(runner.result(lease, "completed", exit_code=0), 200)
        assert acme.run(hello["run_id"])["status"] == "completed"
        new_version = acme.deploy("hello", make_archive({"Towerfile": HELLO, "main.py": "3"}))
        assert new_version["version_no"] == 3

    # A second copy into the same database is refused, and changes nothing.
    again = minitowerd("copy-to", target, env=source.env(), cwd=tmp_path)
    one_line_error(again, "is not empty (table audit_event has rows): copy-to fills only an")
    assert PASSWORD not in again.stderr
    with Rows(target) as rows:
        assert rows.query("SELECT count(*) FROM run") == [(source.runs + 2,)]


def test_refuses_a_target_with_rows_before_migrating_it(
    source: Source, any_postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    cluster = any_postgres_cluster
    name = cluster.create_database()
    try:
        url = cluster.url(name, password=PASSWORD)
        with Rows(url) as rows:
            rows.execute("CREATE TABLE team (id integer, slug text)")
            rows.execute("INSERT INTO team VALUES (1, 'theirs')")
        done = minitowerd("copy-to", url, env=source.env(), cwd=tmp_path)
        one_line_error(done, "is not empty (table team has rows)")
        assert PASSWORD not in done.stderr
        with Rows(url) as rows:
            assert rows.query("SELECT to_regclass('alembic_version') IS NULL") == [(True,)]
    finally:
        cluster.drop_database(name)


@pytest.mark.parametrize(
    ("target_of", "expected"),
    [
        (lambda url: "sqlite:////tmp/x.db", "the target must be a PostgreSQL URL"),
        (lambda url: "not a url", "the target must be a PostgreSQL URL"),
        (
            lambda url: url.replace(url.rsplit(":", 1)[1].split("/")[0], "1"),
            "database error: connection failed",
        ),
        (lambda url: url.rsplit("/", 1)[0] + "/no_such_db", 'database "no_such_db" does not exist'),
    ],
    ids=["sqlite", "garbage", "unreachable", "no-database"],
)
def test_bad_targets_are_one_line_errors_without_the_password(
    source: Source, target: str, tmp_path: Path, target_of: Any, expected: str
) -> None:
    done = minitowerd("copy-to", target_of(target), env=source.env(), cwd=tmp_path)
    one_line_error(done, expected)
    assert PASSWORD not in done.stdout + done.stderr


def test_the_source_must_be_sqlite(source: Source, target: str, tmp_path: Path) -> None:
    env = {**source.env(), "MINITOWER_DATABASE_URL": target}
    done = minitowerd("copy-to", target, env=env, cwd=tmp_path)
    one_line_error(done, "copy-to copies a SQLite database: unset MINITOWER_DATABASE_URL")
    assert PASSWORD not in done.stdout + done.stderr


def test_a_damaged_object_fails_the_verdict(source: Source, target: str, tmp_path: Path) -> None:
    damaged = source.copy(tmp_path / "state")
    (artifact,) = [
        p for p in (damaged.objects / "artifacts").rglob("*.tar.gz") if p.stat().st_size > 0
    ][:1]
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    done = minitowerd("copy-to", target, env=damaged.env(), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "objects whose SHA-256 differs (1): artifacts/" in done.stdout
    assert done.stdout.splitlines()[-1] == "NOT verified: see above"


def test_objects_local_leaves_the_objects_on_their_volume(
    source: Source, target: str, tmp_path: Path
) -> None:
    done = minitowerd("copy-to", target, "--objects", "local", env=source.env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "objects: not copied (--objects local)" in done.stdout
    with Rows(target) as rows:
        assert rows.query("SELECT count(*) FROM stored_object") == [(0,)]
        assert rows.query("SELECT count(*) FROM run") == [(source.runs,)]
    # The API over the copy, with the local store, serves the same artifacts.
    settings = postgres_settings(target, source.objects).model_copy(
        update={"object_store": "local"}
    )
    with TestClient(create_app(settings)) as http:
        runner = RunnerClient(http=http, token=source.runner, runner_id=1, name="runner-1")
        TeamClient(http=http, token=source.acme, team_id=1).create_run("hello")
        lease = runner.lease(start=True)
        assert lease is not None
        assert runner.artifact(lease).content == source.hello_v2
        check(runner.result(lease, "completed", exit_code=0), 200)


def test_writes_to_the_source_during_the_copy_fail_the_verdict(
    source: Source, target: str, tmp_path: Path
) -> None:
    """A service left running (here: a writer committing every 10 ms, as a reaper's
    passes would) writes what the copy's snapshot misses: the copy says so and exits 1."""
    busy = source.copy(tmp_path / "state")
    stop = threading.Event()

    def write() -> None:
        with closing(sqlite3.connect(busy.db, timeout=30, isolation_level=None)) as conn:
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO reaper_pass (name, last_pass_at, last_pass_duration_ms, passes, "
                    "leases_expired, runs_retried, runs_buried, runs_cancelled, "
                    "runners_marked_offline) VALUES ('r', '2026-01-01', 0, 1, 0, 0, 0, 0, 0) "
                    "ON CONFLICT (name) DO UPDATE SET passes = passes + 1"
                )
                time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = minitowerd("copy-to", target, env=busy.env(), cwd=tmp_path)
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the source was written during the copy" in done.stdout
    assert done.stdout.splitlines()[-1] == "NOT verified: see above"


def test_a_source_behind_the_schema_or_missing_is_refused_before_the_target_is_touched(
    target: str, tmp_path: Path
) -> None:
    behind = tmp_path / "behind.db"
    command.upgrade(alembic_config(behind), "0008_audit")
    env = {"MINITOWER_DB_PATH": str(behind), "MINITOWER_OBJECTS_DIR": str(tmp_path / "objects")}
    done = minitowerd("copy-to", target, env=env, cwd=tmp_path)
    one_line_error(done, f"database {behind} is at schema revision 0008_audit, this MiniTower at ")
    assert "run `minitowerd migrate` on it first" in done.stderr
    missing = {**env, "MINITOWER_DB_PATH": str(tmp_path / "no-such.db")}
    done = minitowerd("copy-to", target, env=missing, cwd=tmp_path)
    one_line_error(done, f"database {tmp_path / 'no-such.db'} does not exist")
    assert not (tmp_path / "no-such.db").exists()
    with Rows(target) as rows:
        assert rows.query("SELECT to_regclass('alembic_version') IS NULL") == [(True,)]
