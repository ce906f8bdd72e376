"""``minitowerd`` over PostgreSQL (MINITOWER_DATABASE_URL): the commands that work on the
SQLite file itself (backup, restore, db-status, prune --vacuum) refuse with one line
naming what to use instead and exit 1, never a traceback; the URL's password is never
printed. Against a real, migrated PostgreSQL database in every pass: the session's
cluster on PostgreSQL, else one started for these tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from minitower_shared.migrate import upgrade_to_head
from tests.support.maintenance import minitowerd, one_line_error
from tests.support.postgres import PostgresCluster

PASSWORD = "pw-Zq81-never-printed"


@pytest.fixture(scope="module")
def database_url(any_postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A migrated PostgreSQL database of the module's own, its URL with a password."""
    cluster = any_postgres_cluster
    name = cluster.create_database()
    try:
        upgrade_to_head(cluster.url(name))
        yield cluster.url(name, password=PASSWORD)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MINITOWER_DATABASE_URL": database_url,
        # Not the database: set, so that nothing could fall back on a SQLite file.
        "MINITOWER_DB_PATH": str(tmp_path / "no-such" / "minitower.db"),
        "MINITOWER_OBJECTS_DIR": str(tmp_path / "objects"),
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("backup", "dest"),
            "minitowerd backup: backup is not supported on PostgreSQL yet: use pg_dump "
            "(deploy/runbooks/backup-restore-postgresql.md)",
        ),
        (
            ("restore", "src"),
            "minitowerd restore: restore is not supported on PostgreSQL yet: use pg_restore "
            "(deploy/runbooks/backup-restore-postgresql.md)",
        ),
        (
            ("db-status",),
            "minitowerd db-status: db-status is not supported on PostgreSQL yet: "
            "use PostgreSQL's own statistics views",
        ),
        (
            ("prune", "--older-than", "30d", "--vacuum"),
            "minitowerd prune: --vacuum is not supported on PostgreSQL yet: "
            "autovacuum reuses the space; VACUUM FULL returns it",
        ),
    ],
    ids=["backup", "restore", "db-status", "prune-vacuum"],
)
def test_sqlite_file_commands_refuse_postgresql_in_one_line(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    (tmp_path / "src").mkdir()
    done = minitowerd(*args, env=env, cwd=tmp_path)
    one_line_error(done, expected)
    assert done.stderr == expected + "\n"
    assert done.stdout == ""
    assert PASSWORD not in done.stdout + done.stderr
    # Refused before doing anything: no backup written, no SQLite file created.
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "no-such").exists()


def test_the_same_url_serves_the_commands_that_work_on_postgresql(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The refusals above are the engine's, not an unreachable database's: over the same
    URL, migrate and prune (without --vacuum) succeed, and do not print the password."""
    migrated = minitowerd("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "is up to date" in migrated.stdout
    pruned = minitowerd("prune", "--older-than", "30d", env=env, cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 0 log lines (0 bytes) of 0 runs" in pruned.stdout
    for done in (migrated, pruned):
        assert PASSWORD not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "no-such").exists()
