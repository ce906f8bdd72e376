"""``minitowerd restore``: checks the backup, refuses to clobber or to pull the
database from under a running API, keeps what it replaced; the runbook's local steps
(backup, check, restore, roll back) as written."""

import json
import os
from pathlib import Path

import pytest

from tests.support.maintenance import State, minitowerd, new_state, one_line_error
from tests.support.processes import BIN, start_api
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN

pytestmark = pytest.mark.sqlite_only(
    "restores the SQLite file; minitowerd restore refuses PostgreSQL (pg_restore; "
    "tests/api/test_maintenance_postgresql.py)"
)


def local_env(state: State, backups: Path) -> dict[str, str]:
    return {
        **state.env,
        "MINITOWER_BACKUP_DIR": str(backups),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }


def add_team(state: State, slug: str) -> None:
    state.query(f"INSERT INTO team (slug, name, created_at) VALUES ('{slug}', 'x', '2026-01-01')")


def teams(state: State) -> list[object]:
    return [row[0] for row in state.query("SELECT slug FROM team ORDER BY slug")]


def test_runbook_local_backup_restore_and_roll_back(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    env = local_env(state, tmp_path / "backups")
    add_team(state, "before")
    run_step("backup-restore", "local-take-backup", env=env)
    checked = run_step("backup-restore", "check-backup", env=env)
    assert "0 runs" in checked.stdout and "schema" in checked.stdout
    add_team(state, "after")  # a change the backup does not hold

    restored = run_step("backup-restore", "local-restore", env=env)
    assert "is up to date" in restored.stdout
    assert teams(state) == ["before"]
    assert state.query("PRAGMA integrity_check") == [("ok",)]
    kept = list(state.file.parent.glob("minitower.db.before-restore-*"))
    assert len(kept) == 1

    run_step("backup-restore", "local-roll-back", env=env)
    assert teams(state) == ["after", "before"]
    assert list(state.file.parent.glob("minitower.db.before-restore-*")) == []


def test_restore_refuses_to_replace_a_database_without_force(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    assert minitowerd("backup", str(tmp_path / "b"), env=state.env, cwd=tmp_path).returncode == 0
    add_team(state, "newer")
    done = minitowerd("restore", str(tmp_path / "b"), env=state.env, cwd=tmp_path)
    one_line_error(done, "exists: pass --force to replace it")
    assert teams(state) == ["newer"]


def test_restore_refuses_while_the_api_has_the_database_open(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    assert minitowerd("backup", str(tmp_path / "b"), env=state.env, cwd=tmp_path).returncode == 0
    api = start_api(tmp_path, state.db, {"MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN})
    try:
        done = minitowerd("restore", str(tmp_path / "b"), "--force", env=state.env, cwd=tmp_path)
        one_line_error(done, "is in use: stop the API, the reaper and the scheduler first")
        assert list(state.file.parent.glob("*.before-restore-*")) == []
    finally:
        api.stop()


def test_restore_replaces_a_damaged_database_and_keeps_it_with_its_wal(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    add_team(state, "saved")
    assert minitowerd("backup", str(tmp_path / "b"), env=state.env, cwd=tmp_path).returncode == 0
    state.file.write_bytes(b"not a database at all" * 100)
    wal = state.file.with_name(state.file.name + "-wal")
    wal.write_bytes(b"the last commits, maybe")

    done = minitowerd("restore", str(tmp_path / "b"), "--force", env=state.env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert teams(state) == ["saved"]
    assert not wal.exists()
    (kept,) = state.file.parent.glob("minitower.db.before-restore-*[0-9TZ]")
    assert kept.read_bytes().startswith(b"not a database")
    assert kept.with_name(kept.name + "-wal").read_bytes() == b"the last commits, maybe"


def test_restore_refuses_a_damaged_backup(tmp_path: Path, migrated_template: Path) -> None:
    state = new_state(tmp_path, migrated_template)
    assert minitowerd("backup", str(tmp_path / "b"), env=state.env, cwd=tmp_path).returncode == 0
    with (tmp_path / "b" / "minitower.db").open("r+b") as db:
        db.seek(5000)
        db.write(b"\xff" * 16)
    target = State(db=tmp_path / "new" / "minitower.db", objects=tmp_path / "new-objects")
    done = minitowerd("restore", str(tmp_path / "b"), env=target.env, cwd=tmp_path)
    one_line_error(done, "is damaged: minitower.db differs from its manifest")
    assert not target.file.exists()


def test_restore_of_an_older_schema_says_to_migrate(
    tmp_path: Path, migrated_template: Path
) -> None:
    state = new_state(tmp_path, migrated_template)
    assert minitowerd("backup", str(tmp_path / "b"), env=state.env, cwd=tmp_path).returncode == 0
    manifest_path = tmp_path / "b" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # As a backup taken before the newest migration would say (the database itself is
    # only checked against its sha256).
    manifest["schema_revision"] = "0000-older"
    manifest_path.write_text(json.dumps(manifest))
    target = State(db=tmp_path / "new" / "minitower.db", objects=tmp_path / "new-objects")
    done = minitowerd("restore", str(tmp_path / "b"), env=target.env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "unknown to this MiniTower" in done.stdout
