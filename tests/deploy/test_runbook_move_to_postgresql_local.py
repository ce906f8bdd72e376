"""deploy/runbooks/move-to-postgresql.md, local processes: an install.md deployment on
SQLite (API, reaper, scheduler, a runner) with finished runs and one in progress is moved
to PostgreSQL by the runbook's steps as written, with a short outage of the API, the
reaper and the scheduler while the runner keeps going. After the move the same tokens
see the same runs and logs, the run in progress finishes with all its lines, and a new
run completes (the CLI, its artifact from the PostgreSQL object store); the roll back
step points the services at the SQLite file again.

Runs in both passes: the target is a database of ``any_postgres_cluster``."""

import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.databases import database_env
from tests.support.postgres import PostgresCluster
from tests.support.processes import (
    LiveApi,
    Process,
    fast_runner_env,
    free_port,
    spawn,
    start_reaper,
    start_runner,
    start_scheduler,
    wait_ready,
)
from tests.support.rows import Rows
from tests.support.runbooks import local_env, read_env_file, run_step
from tests.support.waiting import wait_for

PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
PASSWORD = "pw-Move-55x-never-printed"
HELLO = '[app]\nname = "hello"\nscript = "main.py"\n'
SLOW_TOWERFILE = '[app]\nname = "slow"\nscript = "main.py"\n'
# Long enough to span the outage: the runner reports its ticks before, during (retried)
# and after it.
SLOW = "import time\nfor i in range(12):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n"


def services(folder: Path, env_file: Path, port: int) -> tuple[LiveApi, Process, Process]:
    """The API (on ``port``, where the runner looks for it), the reaper and the scheduler
    over the database the env file names."""
    settings = read_env_file(env_file)
    settings["MINITOWER_LISTEN_ADDR"] = f"127.0.0.1:{port}"
    database: str | Path = settings.get("MINITOWER_DATABASE_URL") or Path(
        settings["MINITOWER_DB_PATH"]
    )
    folder.mkdir()
    env = {**database_env(database), "MINITOWER_LOG_LEVEL": "warning", **settings}
    process = spawn("minitowerd", [], env, folder / "minitowerd.log")
    api = LiveApi(proc=process.proc, log_path=process.log_path, url=f"http://127.0.0.1:{port}")
    try:
        wait_ready(api.url, api)
    except BaseException:
        api.stop()
        raise
    fast = {"MINITOWER_EXPIRY_CHECK_INTERVAL": "0.5s", "MINITOWER_SCHEDULE_CHECK_INTERVAL": "1s"}
    reaper = start_reaper(folder, database, {**settings, **fast}, "reaper")
    scheduler = start_scheduler(folder, database, {**settings, **fast}, "scheduler")
    return api, reaper, scheduler


def stop(*processes: Process) -> None:
    for process in processes:
        process.stop()


def logs_of(team: TeamClient, run_id: int) -> list[str]:
    return [line["line"] for line in check(team.get(f"/api/v1/runs/{run_id}/logs"), 200)["logs"]]


def finished_runs(team: TeamClient) -> list[dict[str, Any]]:
    runs = check(team.get("/api/v1/runs", params={"limit": 200}), 200)["runs"]
    return [run for run in runs if run["status"] == "completed"]


def test_local_move_to_postgresql_with_a_short_outage(
    tmp_path: Path, any_postgres_cluster: PostgresCluster
) -> None:
    cluster = any_postgres_cluster
    name = cluster.create_database()
    target = cluster.url(name, password=PASSWORD)
    local = local_env(tmp_path)
    env_file = Path(local["MINITOWER_LOCAL_ENV"])
    run_step("install", "local-write-env", env=local)
    run_step("install", "local-migrate", env=local)
    sqlite_settings = read_env_file(env_file)
    # The API moves, its port stays: the runner keeps calling the same address.
    port = free_port()
    running: list[Process] = []
    try:
        api, reaper, scheduler = services(tmp_path / "sqlite", env_file, port)
        running += [api, reaper, scheduler]
        runner = start_runner(
            tmp_path,
            api.url,
            "worker-1",
            fast_runner_env(
                "default",
                tmp_path / "venvs",
                sqlite_settings["MINITOWER_RUNNER_REGISTRATION_TOKEN"],
            ),
        )
        running.append(runner)
        with httpx.Client(base_url=api.url, timeout=45) as http:
            team = TeamClient.bootstrap(http, "ops", sqlite_settings["MINITOWER_BOOTSTRAP_TOKEN"])
            team.deploy("hello", make_archive({"Towerfile": HELLO, "main.py": "print('hi')\n"}))
            team.deploy("slow", make_archive({"Towerfile": SLOW_TOWERFILE, "main.py": SLOW}))
            done = [team.create_run("hello")["run_id"] for _ in range(3)]
            for run_id in done:
                wait_for(
                    lambda r=run_id: team.run(r)["status"] == "completed",
                    timeout=60,
                    what="a hello run",
                )
            slow = team.create_run("slow")["run_id"]
            wait_for(
                lambda: "tick 1" in logs_of(team, slow),
                timeout=60,
                what="the slow run's first ticks",
            )
            before = finished_runs(team)
            before_logs = {run_id: logs_of(team, run_id) for run_id in done}

        # The outage: the API, the reaper and the scheduler stop; the runner goes on.
        stop(api, reaper, scheduler)
        copied = run_step(
            "move-to-postgresql", "local-copy-to", env={**local, "MINITOWER_COPY_TO_URL": target}
        )
        assert "verified: every table's rows and checksum match" in copied.stdout
        assert PASSWORD not in copied.stdout + copied.stderr
        (report,) = Path(sqlite_settings["MINITOWER_DB_PATH"]).parent.glob("copy-to-*.txt")
        assert report.read_text() == copied.stdout
        switched = run_step(
            "move-to-postgresql",
            "local-switch-to-postgresql",
            env={**local, "MINITOWER_COPY_TO_URL": target},
        )
        assert f"@127.0.0.1:{cluster.port}/{name} is up to date" in switched.stdout
        assert PASSWORD not in switched.stdout + switched.stderr
        moved = read_env_file(env_file)
        assert moved["MINITOWER_DATABASE_URL"] == target
        assert moved["MINITOWER_OBJECT_STORE"] == "postgres"
        api, reaper, scheduler = services(tmp_path / "postgresql", env_file, port)
        running += [api, reaper, scheduler]

        with httpx.Client(base_url=api.url, timeout=45) as http:
            team = TeamClient(http=http, token=team.token, team_id=team.team_id)
            assert finished_runs(team)[-len(before) :] == before
            assert {run_id: logs_of(team, run_id) for run_id in done} == before_logs
            # The run in progress across the outage finishes with every line it printed.
            wait_for(
                lambda: team.run(slow)["status"] == "completed", timeout=90, what="the slow run"
            )
            assert logs_of(team, slow) == [f"tick {i}" for i in range(12)]
            verified = run_step(
                "move-to-postgresql",
                "verify-moved",
                env={**local, "MINITOWER_SERVER_URL": api.url, "MINITOWER_API_TOKEN": team.token},
            )
            assert '"status":"ok"' in verified.stdout.replace(" ", "")
            assert "completed" in verified.stdout
            newest = check(team.get("/api/v1/runs", params={"limit": 1}), 200)["runs"][0]
            assert newest["run_id"] == slow + 1 and newest["status"] == "completed"
        with Rows(target) as rows:
            assert rows.query("SELECT count(*) FROM stored_object") == [(2,)]

        stop(api, reaper, scheduler)
        rolled = run_step("move-to-postgresql", "local-roll-back", env=local)
        assert f"database {sqlite_settings['MINITOWER_DB_PATH']} is up to date" in rolled.stdout
        assert read_env_file(env_file) == sqlite_settings
    finally:
        stop(*running)
        cluster.drop_database(name)
