"""``minitowerd prune``: removes exactly what it says, a dry run says the same and
removes nothing; runs, attempts, versions, live runs' logs, referenced objects and
young files are never touched."""

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import Template
from tests.support.maintenance import State, minitowerd, new_state
from tests.support.processes import BIN
from tests.support.runbooks import run_step

OLD = "2026-01-01 00:00:00.000000"
HOUR = 3600


@pytest.fixture
def state(tmp_path: Path, template_database: Template) -> Iterator[State]:
    """A database of the engine under test, and an objects directory."""
    state = new_state(tmp_path, template_database)
    yield state
    template_database.drop(state.db)


def seed(state: State) -> None:
    """Runs 1 (completed) and 2 (failed) finished long ago, 3 finished just now, 4 still
    running since long ago: 3 log lines each. Version 1 references ``kept.tar.gz``."""
    recent = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
    state.query(f"INSERT INTO team (id, slug, name, created_at) VALUES (1, 't', 'T', '{OLD}')")
    state.query(
        f"INSERT INTO environment (id, team_id, name, created_at) VALUES (1, 1, 'default', '{OLD}')"
    )
    state.query(
        "INSERT INTO app (id, team_id, slug, description, disabled, created_at, updated_at)"
        f" VALUES (1, 1, 'a', '', FALSE, '{OLD}', '{OLD}')"
    )
    state.query(
        "INSERT INTO app_version (id, app_id, version_no, artifact_object_key, artifact_sha256,"
        " artifact_size, entrypoint, timeout_seconds, import_paths, created_at) VALUES"
        f" (1, 1, 1, 'artifacts/kept.tar.gz', 'x', 1, 'main.py', 60, '[]', '{OLD}')"
    )
    state.query(
        "INSERT INTO runner (id, name, environment, labels, token_hash, status, created_at)"
        f" VALUES (1, 'r', 'default', '{{}}', 'h', 'online', '{OLD}')"
    )
    runs = [
        (1, "completed", OLD),
        (2, "failed", OLD),
        (3, "completed", recent),
        (4, "running", None),
    ]
    for run_id, status, finished in runs:
        finished_sql = f"'{finished}'" if finished else "NULL"
        attempt_status = "running" if finished is None else status
        state.query(
            "INSERT INTO run (id, team_id, app_id, environment_id, environment, app_version_id,"
            " run_no, status, input, priority, max_retries, retry_count, cancel_requested,"
            " queued_at, finished_at, updated_at) VALUES"
            f" ({run_id}, 1, 1, 1, 'default', 1, {run_id}, '{status}', '{{}}', 0, 0, 0, FALSE,"
            f" '{OLD}',"
            f" {finished_sql}, '{OLD}')"
        )
        state.query(
            "INSERT INTO run_attempt (id, run_id, runner_id, attempt_no, lease_token_hash,"
            f" lease_expires_at, status, leased_at) VALUES ({run_id}, {run_id}, 1, 1,"
            f" 't{run_id}', '{OLD}', '{attempt_status}', '{OLD}')"
        )
        for seq in range(3):
            state.query(
                "INSERT INTO run_log (attempt_id, seq, stream, line, logged_at) VALUES"
                f" ({run_id}, {seq}, 'stdout', 'héllo {seq}', '{OLD}')"
            )
    files = {
        "artifacts/kept.tar.gz": 2 * HOUR,  # referenced: kept however old
        "artifacts/orphan.tar.gz": 2 * HOUR,  # unreferenced and old: deleted
        "artifacts/young.tar.gz": 60,  # unreferenced but young: kept
        "tmp/upload.part": 2 * HOUR,  # an upload that died long ago: deleted
        "tmp/receiving.part": 1,  # an upload in progress: kept
    }
    for key, age in files.items():
        path = state.objects / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - age, time.time() - age))


def lines_per_run(state: State) -> dict[object, object]:
    return dict(
        state.query(
            "SELECT run_attempt.run_id, count(run_log.id) FROM run_attempt"
            " LEFT JOIN run_log ON run_log.attempt_id = run_attempt.id GROUP BY run_attempt.run_id"
        )
    )


def objects(state: State) -> list[str]:
    return sorted(p.relative_to(state.objects).as_posix() for p in state.objects.rglob("*.*"))


def without_cutoff(text: str) -> str:
    return re.sub(r"before \S+Z", "before <cutoff>", text)


def test_dry_run_says_exactly_what_the_real_run_does(tmp_path: Path, state: State) -> None:
    seed(state)
    before_files = objects(state)

    dry = minitowerd("prune", "--older-than", "7d", "--dry-run", env=state.env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert lines_per_run(state) == {1: 3, 2: 3, 3: 3, 4: 3}
    assert objects(state) == before_files

    real = minitowerd("prune", "--older-than", "7d", env=state.env, cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    assert without_cutoff(real.stdout) == without_cutoff(dry.stdout).replace(
        "would delete", "deleted"
    )
    # 'héllo n' is 8 bytes in UTF-8: 6 lines of runs 1 and 2.
    assert "deleted 6 log lines (48 bytes) of 2 runs" in real.stdout
    assert "deleted 2 unreferenced objects (200 bytes)" in real.stdout
    assert lines_per_run(state) == {1: 0, 2: 0, 3: 3, 4: 3}
    assert state.query("SELECT count(*) FROM run") == [(4,)]
    assert state.query("SELECT count(*) FROM run_attempt") == [(4,)]
    assert objects(state) == [
        "artifacts/kept.tar.gz",
        "artifacts/young.tar.gz",
        "tmp/receiving.part",
    ]

    again = minitowerd("prune", "--older-than", "7d", env=state.env, cwd=tmp_path)
    assert "deleted 0 log lines (0 bytes) of 0 runs" in again.stdout


def test_runbook_local_prune(state: State) -> None:
    seed(state)
    env = {
        **state.env,
        "MINITOWER_LOG_RETENTION": "30d",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    done = run_step("backup-restore", "local-prune", env=env)
    assert "would delete 6 log lines" in done.stdout
    assert "deleted 6 log lines" in done.stdout
    assert lines_per_run(state) == {1: 0, 2: 0, 3: 3, 4: 3}


@pytest.mark.sqlite_only(
    "VACUUMs the SQLite file; prune --vacuum refuses PostgreSQL "
    "(tests/api/test_maintenance_postgresql.py)"
)
def test_prune_with_vacuum_gives_space_back(tmp_path: Path, state: State) -> None:
    seed(state)
    done = minitowerd("prune", "--older-than", "0s", "--vacuum", env=state.env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "vacuumed the database" in done.stdout
    assert state.query("PRAGMA integrity_check") == [("ok",)]


def test_prune_refuses_a_bad_duration(tmp_path: Path, state: State) -> None:
    done = minitowerd("prune", "--older-than", "soon", env=state.env, cwd=tmp_path)
    assert done.returncode == 2
    assert "invalid duration 'soon'" in done.stderr and "Traceback" not in done.stderr
