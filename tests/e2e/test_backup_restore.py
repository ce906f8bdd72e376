"""The backup-and-restore runbook's compose steps, as written, against the real stack:
a backup taken while runs are being created, restored after ``down -v`` (all data
gone), holds every acknowledged run and the artifacts; a second restore is rolled back;
prune deletes old logs. One stack for the whole story (each costs ~30-60 s)."""

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.clients import TeamClient
from tests.support.compose_stack import Stack, bring_up, tear_down
from tests.support.processes import BIN
from tests.support.runbooks import run_step

# One compose stack test at a time (under pytest-xdist): each drives a whole stack on
# timings of seconds (leases, heartbeats), which a second one beside it would crowd.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]


def compose_env(stack: Stack, backups: Path) -> dict[str, str]:
    return stack.runbook_env(
        MINITOWER_BACKUP_DIR=str(backups),
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",  # the minitower CLI
    )


def test_backup_under_load_restores_after_down_and_rolls_back(tmp_path: Path) -> None:
    stack = bring_up(tmp_path, runners=1)
    try:
        env = compose_env(stack, tmp_path / "backups")
        stack.deploy("hello", "for n in range(5):\n    print('line', n)\n")
        first = stack.start_run("hello")
        assert stack.wait_status(first)["status"] == "completed"

        acked: list[tuple[float, int]] = []
        stop = threading.Event()

        def create_runs() -> None:
            with httpx.Client(base_url=stack.url, timeout=30) as http:
                team = TeamClient(http=http, token=stack.team.token, team_id=0)
                deadline = time.monotonic() + 120
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        response = team.post("/api/v1/apps/hello/runs", json={})
                    except httpx.HTTPError:
                        continue  # counted only when acknowledged
                    if response.status_code == 201:
                        acked.append((time.monotonic(), response.json()["run_id"]))

        load = threading.Thread(target=create_runs, daemon=True)
        load.start()
        time.sleep(1)
        started = time.monotonic()
        taken = run_step("backup-restore", "compose-take-backup", env=env)
        stop.set()
        load.join(30)
        assert "integrity ok" in taken.stdout
        acknowledged = {run_id for at, run_id in acked if at < started}
        assert len(acknowledged) > 5
        checked = run_step("backup-restore", "check-backup", env=env)
        assert "1 versions" in checked.stdout

        stack.cli("down", "-v")  # every run and artifact gone
        run_step("backup-restore", "compose-restore", env=env, timeout=300)
        stack.wait_ready()
        shown = run_step("backup-restore", "check-restored", env=env)
        assert '"status":"ok"' in shown.stdout.replace(" ", "")
        for run_id in acknowledged:
            assert stack.team.get(f"/api/v1/runs/{run_id}").status_code == 200
        assert stack.lines(first) == [f"line {n}" for n in range(5)]
        # The restored artifact runs: a runner downloads it from the restored objects.
        after = stack.start_run("hello")
        assert stack.wait_status(after, timeout=120)["status"] == "completed"

        # Restore again over that database, then roll back to it.
        run_step("backup-restore", "compose-restore", env=env, timeout=300)
        stack.wait_ready()
        assert stack.team.get(f"/api/v1/runs/{after}").status_code == 404
        run_step("backup-restore", "compose-roll-back", env=env, timeout=300)
        stack.wait_ready()
        assert stack.run(after)["status"] == "completed"

        pruned = run_step(
            "backup-restore", "compose-prune", env={**env, "MINITOWER_LOG_RETENTION": "0s"}
        )
        assert "would delete" in pruned.stdout and "deleted" in pruned.stdout
        assert stack.lines(first) == []
        assert stack.run(first)["status"] == "completed"
    finally:
        tear_down(stack)
