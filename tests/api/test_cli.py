"""``minitowerd`` as an operator runs it: migrate, and clear start-up errors."""

import sqlite3
from pathlib import Path

import pytest

from minitower_shared.migrate import head_revision
from tests.support.maintenance import minitowerd


def test_migrate_creates_the_schema_and_is_safe_to_repeat(tmp_path: Path) -> None:
    db = tmp_path / "state" / "minitower.db"
    env = {"MINITOWER_DB_PATH": str(db)}
    for _ in range(2):
        done = minitowerd("migrate", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout
    with sqlite3.connect(db) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert revision == head_revision()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MINITOWER_BOOTSTRAP_TOKEN": "short"}, "MINITOWER_BOOTSTRAP_TOKEN must be at least 16"),
        (
            {"MINITOWER_RUNNER_REGISTRATION_TOKEN": "short"},
            "MINITOWER_RUNNER_REGISTRATION_TOKEN must be at least 16",
        ),
        ({"MINITOWER_LEASE_TTL": "2x"}, "MINITOWER_LEASE_TTL: invalid duration '2x'"),
        ({"MINITOWER_LISTEN_ADDR": "8080"}, "MINITOWER_LISTEN_ADDR: must be host:port"),
        ({"MINITOWER_LOG_FORMAT": "xml"}, "MINITOWER_LOG_FORMAT: Input should be"),
        ({"MINITOWER_MAX_HEADER_BYTES": "100"}, "MINITOWER_MAX_HEADER_BYTES: Input should be"),
        ({"MINITOWER_HEADER_TIMEOUT": "0"}, "MINITOWER_HEADER_TIMEOUT: Input should be"),
        ({"MINITOWER_MAX_CONNECTIONS": "none"}, "MINITOWER_MAX_CONNECTIONS: Input should be"),
    ],
)
def test_bad_configuration_is_one_clear_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    done = minitowerd(env={"MINITOWER_DB_PATH": str(tmp_path / "x.db"), **env}, cwd=tmp_path)
    assert done.returncode == 2
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_dev_mode_allows_short_secrets(tmp_path: Path) -> None:
    env = {
        "MINITOWER_ENV": "dev",
        "MINITOWER_BOOTSTRAP_TOKEN": "short",
        "MINITOWER_DB_PATH": str(tmp_path / "x.db"),
    }
    done = minitowerd("migrate", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
