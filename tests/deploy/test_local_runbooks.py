"""The local-process steps of install.md, upgrade.md and scale-and-drain.md, as written,
against real ``minitowerd``, ``minitower-reaper`` and ``minitower-runner`` processes."""

import os
import sys
import threading
from pathlib import Path

import httpx

from tests.support.archives import make_archive
from tests.support.clients import TeamClient
from tests.support.processes import fast_runner_env, start_api, start_reaper, start_runner
from tests.support.runbooks import local_env, read_env_file, run_step
from tests.support.waiting import wait_for

PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
SLOW = "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n    time.sleep(1)\n"


def test_local_install_upgrade_and_drain(tmp_path: Path) -> None:
    local = local_env(tmp_path)
    env_file = Path(local["MINITOWER_LOCAL_ENV"])
    run_step("install", "local-write-env", env=local)
    settings = read_env_file(env_file)
    migrated = run_step("install", "local-migrate", env=local)
    assert f"database {settings['MINITOWER_DB_PATH']} is up to date" in migrated.stdout
    # Loopback, for a proxy in front; the test's API takes a free port instead of 8080.
    assert settings.pop("MINITOWER_LISTEN_ADDR") == "127.0.0.1:8080"
    api = start_api(tmp_path, Path(settings["MINITOWER_DB_PATH"]), settings)
    reaper = start_reaper(
        tmp_path,
        Path(settings["MINITOWER_DB_PATH"]),
        {"MINITOWER_EXPIRY_CHECK_INTERVAL": "0.5s", "MINITOWER_RUNNER_OFFLINE_AFTER": "2s"},
        "reaper",
    )
    runner = start_runner(
        tmp_path,
        api.url,
        "worker-1",
        fast_runner_env(
            "default", tmp_path / "venvs", settings["MINITOWER_RUNNER_REGISTRATION_TOKEN"]
        ),
    )
    try:
        assert '"status":"ok"' in run_step(
            "install", "verify-ready", env={**local, "MINITOWER_SERVER_URL": api.url}
        ).stdout.replace(" ", "")
        with httpx.Client(base_url=api.url, timeout=45) as http:
            team = TeamClient.bootstrap(http, "ops", settings["MINITOWER_BOOTSTRAP_TOKEN"])
            towerfile = '[app]\nname = "slow"\nscript = "main.py"\n'
            team.deploy("slow", make_archive({"Towerfile": towerfile, "main.py": SLOW}))
            run_id = team.create_run("slow")["run_id"]
            wait_for(lambda: team.run(run_id)["status"] == "running", timeout=60, what="a run")
            cli = {**local, "MINITOWER_SERVER_URL": api.url, "MINITOWER_API_TOKEN": team.token}
            # An upgrade's migrate on the live database, then its checks.
            upgrade = run_step("upgrade", "local-migrate", env={**cli, **settings})
            assert "is up to date" in upgrade.stdout
            # Drain the runner while it holds the run: the run finishes there, once.
            reaped = threading.Thread(target=runner.proc.wait)  # so no zombie stays behind
            reaped.start()
            drained = run_step(
                "scale-and-drain",
                "local-drain-runner",
                env={**cli, "RUNNER_PID": str(runner.proc.pid), "DRAIN_WAIT_SECONDS": "30"},
            )
            reaped.join(10)
            assert f"runner {runner.proc.pid} exited" in drained.stdout
            assert runner.proc.returncode == 0
            assert runner.events("drained: no run in hand, exiting", service="runner")
            finished = run_step(
                "scale-and-drain", "verify-run-finished", env={**cli, "RUN_ID": str(run_id)}
            )
            assert "completed" in finished.stdout
            attempts = team.get(f"/api/v1/runs/{run_id}/attempts").json()["attempts"]
            assert [(a["attempt_no"], a["status"]) for a in attempts] == [(1, "completed")]
            wait_for(
                lambda: "offline" in run_step("scale-and-drain", "verify-runners", env=cli).stdout,
                timeout=20,
                what="the drained runner to show offline",
            )
            verified = run_step("upgrade", "verify-upgrade", env=cli)
            assert "worker-1" in verified.stdout
    finally:
        runner.stop()
        reaper.stop()
        api.stop()
