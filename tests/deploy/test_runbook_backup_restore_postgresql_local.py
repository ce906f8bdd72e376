"""deploy/runbooks/backup-restore-postgresql.md, local processes, as written: a backup
with pg_dump (and the objects with the local store) while the API runs, its check, a
restore into a new database after the data changed and the objects were lost, the API
over the restored database serving the backup's runs and artifacts, and the roll back
to the previous database. With each object store.

Runs in both passes: the databases are ``any_postgres_cluster``'s, its pg_dump and
pg_restore on the PATH."""

import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import SQLModel

from minitower_shared.migrate import upgrade_to_head
from tests.support.archives import make_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.postgres import BIN_DIR, PostgresCluster
from tests.support.rows import Rows
from tests.support.runbooks import local_env, read_env_file, run_step, serve_env_file

PATH = f"{BIN_DIR}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
PASSWORD = "pw-Dump-31k-never-printed"
HELLO = '[app]\nname = "hello"\nscript = "main.py"\n'


def slugs(url: str) -> list[str]:
    with Rows(url) as rows:
        return [str(slug) for (slug,) in rows.query("SELECT slug FROM team ORDER BY slug")]


@pytest.mark.parametrize("store", ["local", "postgres"])
def test_local_pg_dump_backup_restore_and_roll_back(
    tmp_path: Path, any_postgres_cluster: PostgresCluster, store: str
) -> None:
    cluster = any_postgres_cluster
    names = [cluster.create_database(), cluster.create_database()]
    live, restored = (cluster.url(name, password=PASSWORD) for name in names)
    local = {**local_env(tmp_path, PATH), "MINITOWER_BACKUP_DIR": str(tmp_path / "backups")}
    env_file = Path(local["MINITOWER_LOCAL_ENV"])
    try:
        run_step("install", "local-write-env", env=local)
        with env_file.open("a") as env:
            env.write(f"MINITOWER_DATABASE_URL={live}\nMINITOWER_OBJECT_STORE={store}\n")
        upgrade_to_head(live)
        settings = read_env_file(env_file)
        objects = Path(settings["MINITOWER_OBJECTS_DIR"])
        archive = make_archive({"Towerfile": HELLO, "main.py": "print('backed up')\n"})

        api = serve_env_file(tmp_path / "api-1", env_file)
        try:
            with httpx.Client(base_url=api.url, timeout=45) as http:
                team = TeamClient.bootstrap(http, "before", settings["MINITOWER_BOOTSTRAP_TOKEN"])
                team.deploy("hello", archive)
                runs = [team.create_run("hello")["run_id"] for _ in range(3)]
            # Online: the API keeps serving while pg_dump reads its snapshot.
            taken = run_step("backup-restore-postgresql", "pg-take-backup", env=local)
        finally:
            api.stop()
        assert PASSWORD not in taken.stdout + taken.stderr
        (backup,) = (tmp_path / "backups").iterdir()
        has_archive = (backup / "objects.tar.gz").exists()
        assert has_archive == (store == "local")
        checked = run_step("backup-restore-postgresql", "pg-check-backup", env=local)
        assert f"{backup}: checksums ok" in checked.stdout
        assert f"tables: {len(SQLModel.metadata.tables) + 1}" in checked.stdout

        # After the backup: a change it does not hold, and the local objects lost.
        with Rows(live) as rows:
            rows.execute("INSERT INTO team (slug, name, created_at) VALUES ('after', 'x', now())")
        shutil.rmtree(objects / "artifacts", ignore_errors=True)

        done = run_step(
            "backup-restore-postgresql",
            "pg-restore",
            env={**local, "MINITOWER_RESTORE_URL": restored},
        )
        assert f"/{names[1]} is up to date" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr
        assert read_env_file(env_file)["MINITOWER_DATABASE_URL"] == restored
        assert slugs(restored) == ["before"]
        assert slugs(live) == ["after", "before"]

        api = serve_env_file(tmp_path / "api-2", env_file)
        try:
            shown = run_step(
                "backup-restore-postgresql",
                "pg-check-restored",
                env={**local, "MINITOWER_SERVER_URL": api.url, "MINITOWER_API_TOKEN": team.token},
            )
            assert '"status":"ok"' in shown.stdout.replace(" ", "")
            assert all(str(run_id) in shown.stdout for run_id in runs)
            with httpx.Client(base_url=api.url, timeout=45) as http:
                runner = RunnerClient.register(
                    http, "after-restore", settings["MINITOWER_RUNNER_REGISTRATION_TOKEN"]
                )
                lease = runner.lease()
                assert lease is not None and lease.run_id == runs[0]
                assert runner.artifact(lease).content == archive
                new = TeamClient(http=http, token=team.token, team_id=team.team_id)
                assert check(new.get("/api/v1/runs", params={"limit": 1}), 200)["runs"][0][
                    "run_id"
                ] == max(runs)
                assert new.create_run("hello")["run_id"] == max(runs) + 1
        finally:
            api.stop()

        rolled = run_step("backup-restore-postgresql", "pg-roll-back", env=local)
        assert f"/{names[0]} is up to date" in rolled.stdout
        assert read_env_file(env_file)["MINITOWER_DATABASE_URL"] == live
    finally:
        for name in names:
            cluster.drop_database(name)
