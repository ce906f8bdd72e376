"""The runner tier's local stack: a live ``minitowerd`` (its settings in ``API_ENV``), a
team on it and real ``minitower-runner`` and ``minitower-reaper`` processes started on
demand (tests/runner/conftest.py builds it), with the waits its tests need."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.archives import app_archive
from tests.support.clients import TeamClient, check
from tests.support.processes import LiveApi, Process, start_reaper, start_runner
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.waiting import wait_for

TERMINAL = {"completed", "failed", "cancelled", "dead"}

API_ENV = {
    "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
    "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
    "MINITOWER_LEASE_TTL": "5s",
    "MINITOWER_LEASE_POLL_INTERVAL": "0.1s",
}


@dataclass
class Stack:
    api: LiveApi
    http: httpx.Client
    team: TeamClient
    workdir: Path
    db_path: Path
    environment: str
    runner_env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def runner(self, name: str = "runner-1", **env: str) -> Process:
        process = start_runner(self.workdir, self.api.url, name, {**self.runner_env, **env})
        self.processes.append(process)
        return process

    def reaper(self) -> Process:
        name = f"reaper-{len(self.processes)}"
        process = start_reaper(
            self.workdir, self.db_path, {"MINITOWER_EXPIRY_CHECK_INTERVAL": "0.2s"}, name
        )
        self.processes.append(process)
        return process

    def wait_runners(self, names: set[str], timeout: float = 30) -> None:
        """Until every runner in ``names`` has registered and asked for work."""

        def online() -> bool:
            body = check(self.team.get("/api/v1/admin/runners", params={"limit": 200}), 200)
            seen = {r["name"] for r in body["runners"] if r["last_seen_at"] is not None}
            return names <= seen

        wait_for(online, timeout=timeout, what=f"runners {sorted(names)} to come online")

    def deploy(
        self, app: str, files: dict[str, str], script: str = "main.py", extra: str = ""
    ) -> dict[str, Any]:
        return self.team.deploy(app, app_archive(app, files, script, extra))

    def start_run(self, app: str, **body: Any) -> int:
        body.setdefault("environment", self.environment)
        run_id: int = self.team.create_run(app, **body)["run_id"]
        return run_id

    def run(self, run_id: int) -> dict[str, Any]:
        return self.team.run(run_id)

    def wait_status(
        self, run_id: int, statuses: set[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        run: dict[str, Any] = wait_for(
            lambda: (run := self.run(run_id))["status"] in statuses and run,
            timeout=timeout,
            what=f"run {run_id} to reach {sorted(statuses)}",
        )
        return run

    def logs(self, run_id: int, attempt: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 10_000}
        if attempt is not None:
            params["attempt"] = attempt
        body = check(self.team.get(f"/api/v1/runs/{run_id}/logs", params=params), 200)
        lines: list[dict[str, Any]] = body["logs"]
        return lines

    def lines(self, run_id: int, stream: str | None = None) -> list[str]:
        return [
            entry["line"]
            for entry in self.logs(run_id)
            if stream is None or entry["stream"] == stream
        ]

    def printed(self, run_id: int, prefix: str, timeout: float = 30) -> str:
        """The first line of the run's output that starts with ``prefix``, once there."""
        line: str = wait_for(
            lambda: next((x for x in self.lines(run_id) if x.startswith(prefix)), None),
            timeout=timeout,
            what=f"run {run_id} to print {prefix!r}",
        )
        return line

    def pids(self, run_id: int) -> list[int]:
        """The pids a workload printed as ``pids <pid> <pid>...``."""
        return [int(p) for p in self.printed(run_id, "pids ").split()[1:]]

    def attempts(self, run_id: int) -> list[dict[str, Any]]:
        body = check(self.team.get(f"/api/v1/runs/{run_id}/attempts"), 200)
        attempts: list[dict[str, Any]] = body["attempts"]
        return attempts


def assert_no_traceback(process: Process) -> None:
    text = process.log()
    assert "Traceback" not in text, text
