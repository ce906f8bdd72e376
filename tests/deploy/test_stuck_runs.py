"""deploy/runbooks/stuck-queued.md and stuck-leased-running.md, their local steps against
a live ``minitowerd`` (leases of 2 s): a run waiting for an environment no runner serves
starts once the runbook starts one there; a run whose runner was lost while no reaper
ran moves on once the runbook makes a reaper pass. (The compose steps run in
tests/e2e/test_failures.py.)"""

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.processes import LiveApi, fast_runner_env, log_events
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.waiting import wait_for


@pytest.fixture
def team(live_api: LiveApi, hello_archive: bytes) -> Iterator[TeamClient]:
    """An admin of team ``acme`` on the live API, with ``hello`` deployed."""
    with live_api.client() as http:
        admin = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        admin.deploy("hello", hello_archive)
        yield admin


def _api_env(live_api: LiveApi, team: TeamClient) -> dict[str, str]:
    return {"MINITOWER_SERVER_URL": live_api.url, "MINITOWER_API_TOKEN": team.token}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_run_queued_where_no_runner_serves_starts_once_the_runbook_starts_one(
    live_api: LiveApi, team: TeamClient, tmp_path: Path
) -> None:
    RunnerClient.register(team.http, "cpu-1", REGISTRATION_TOKEN)  # serves `default` only
    run_id = team.create_run("hello", environment="gpu")["run_id"]
    env = {**_api_env(live_api, team), "STUCK_ENVIRONMENT": "gpu"}

    queued = run_step("stuck-queued", "queued-by-environment", env=env)
    assert queued.stdout.startswith("gpu: 1 queued, oldest since "), queued.stdout
    runners = run_step("stuck-queued", "runners-by-environment", env=env)
    assert runners.stdout.splitlines() == ["default: 1 online of 1; busy with runs []"]
    metrics = run_step("stuck-queued", "queue-metrics", env=env)
    assert 'minitower_queue_depth{environment="gpu"} 1.0' in metrics.stdout
    listed = run_step("stuck-queued", "local-queued-and-runners", env=env)
    assert "gpu" in listed.stdout and "cpu-1" in listed.stdout

    runner_env = {
        **env,
        **fast_runner_env("default", tmp_path / "venvs", REGISTRATION_TOKEN),
        "MINITOWER_RUNNER_NAME": "gpu-1",
        "MINITOWER_DATA_DIR": str(tmp_path / "gpu-1"),
        "MINITOWER_LOG_LEVEL": "info",
    }
    # The step names the environment itself, whatever the runner's settings said.
    started = run_step("stuck-queued", "local-start-runner", env=runner_env)
    found = re.search(r"pid (\d+)", started.stdout)
    assert found, started.stdout
    pid = int(found.group(1))
    try:
        run_step("stuck-queued", "wait-queue-drained", env=env, timeout=150)
        wait_for(
            lambda: team.run(run_id)["status"] == "completed",
            timeout=60,
            what=f"run {run_id} to complete",
        )
        run = team.run(run_id)
        assert run["environment"] == "gpu"
        attempts = check(team.get(f"/api/v1/runs/{run_id}/attempts"), 200)["attempts"]
        assert [a["runner_name"] for a in attempts] == ["gpu-1"]
        run_step("stuck-queued", "local-stop-runner", env={"RUNNER_PID": str(pid)}, timeout=120)
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    lines = log_events((tmp_path / "gpu-1.log").read_text())
    assert any(line["event"] == "registered" and line["runner"] == "gpu-1" for line in lines)


def test_a_run_lost_with_its_runner_and_no_reaper_moves_on_after_the_runbook_pass(
    live_api: LiveApi, team: TeamClient, db_path: Path
) -> None:
    run_id = team.create_run("hello", max_retries=1)["run_id"]
    lost = RunnerClient.register(team.http, "lost-1", REGISTRATION_TOKEN)
    lease = lost.lease()
    assert lease is not None and lease.run_id == run_id
    check(lost.start(lease), 200)
    # The runner is gone from here on: no heartbeat renews its 2 s lease, and no reaper
    # runs, so nothing moves the run.
    time.sleep(3)
    assert team.run(run_id)["status"] == "running"
    env = {
        **_api_env(live_api, team),
        "STUCK_RUN": str(run_id),
        "MINITOWER_DB_PATH": str(db_path),
    }

    ready = run_step("stuck-leased-running", "ready-reaper", env=env)
    assert json.loads(ready.stdout) == {
        "status": "ok",
        "reaper": "no pass recorded",
        "scheduler": "no tick recorded",
    }
    run_step("stuck-leased-running", "local-reaper-process", env=env)
    in_flight = run_step("stuck-leased-running", "runs-in-flight", env=env)
    assert f"run {run_id}\trunning\thello" in in_flight.stdout, in_flight.stdout
    assert "runner lost-1\tonline" in in_flight.stdout
    attempts = run_step("stuck-leased-running", "run-attempts", env=env)
    assert attempts.stdout.startswith("attempt 1\tlost-1\trunning"), attempts.stdout

    once = run_step("stuck-leased-running", "local-reaper-once", env=env)
    assert once.stdout.startswith("expired 1 leases"), once.stdout
    moved = run_step("stuck-leased-running", "wait-run-moved-on", env=env)
    assert moved.stdout.splitlines()[-1] == f"run {run_id}: queued"
    run = team.run(run_id)
    assert (run["status"], run["retry_count"]) == ("queued", 1)
    statuses = [
        a["status"] for a in check(team.get(f"/api/v1/runs/{run_id}/attempts"), 200)["attempts"]
    ]
    assert statuses == ["expired"]
