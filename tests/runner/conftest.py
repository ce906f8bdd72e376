"""Fixtures of the runner tier: a live ``minitowerd`` on a real SQLite file, a team on
it, and real ``minitower-runner`` (and ``minitower-reaper``) processes started on demand.

One API serves a whole module; each test gets a team and a runner environment of its
own, so runs of one test are never leased by another's runners. A test marked
``own_api`` (optionally ``own_api(lease_ttl="10s")``) gets an API of its own, to stop,
restart or configure. Leases last 5 s unless said otherwise, runners heartbeat every
half second and long-poll for 2 s, so a test sees every phase of a run within a few
seconds. The venv cache is shared by the whole session, as on a real host.
"""

import itertools
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN, make_archive
from tests.support.clients import TeamClient, check
from tests.support.databases import copy_database
from tests.support.processes import (
    LiveApi,
    Process,
    fast_runner_env,
    start_api,
    start_reaper,
    start_runner,
)
from tests.support.waiting import wait_for

TERMINAL = {"completed", "failed", "cancelled", "dead"}


def towerfile(name: str, script: str = "main.py", extra: str = "") -> str:
    return f'[app]\nname = "{name}"\nscript = "{script}"\n{textwrap.dedent(extra)}'


def app_archive(
    name: str, files: dict[str, str], script: str = "main.py", extra: str = ""
) -> bytes:
    """An archive with a Towerfile for ``script`` and ``files`` (dedented)."""
    body = {path: textwrap.dedent(text) for path, text in files.items()}
    return make_archive({"Towerfile": towerfile(name, script, extra), **body})


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


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("venvs")


API_ENV = {
    "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
    "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
    "MINITOWER_LEASE_TTL": "5s",
    "MINITOWER_LEASE_POLL_INTERVAL": "0.1s",
}


@pytest.fixture(scope="module")
def module_api(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveApi]:
    folder = tmp_path_factory.mktemp("api")
    api = start_api(folder, copy_database(migrated_template, folder), API_ENV)
    yield api
    api.stop()


_counter = itertools.count(1)


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_template: Path, venv_cache: Path
) -> Iterator[Stack]:
    own = request.node.get_closest_marker("own_api")
    private: LiveApi | None = None
    if own is not None:
        private = start_api(
            tmp_path,
            copy_database(migrated_template, tmp_path),
            {**API_ENV, **{f"MINITOWER_{key.upper()}": value for key, value in own.kwargs.items()}},
        )
        api = private
    else:
        api = request.getfixturevalue("module_api")
    number = next(_counter)
    environment = f"env-{number}"
    http = api.client()
    runner_env = {
        **fast_runner_env(environment, venv_cache, REGISTRATION_TOKEN),
        # A secret the workload must never see.
        "MINITOWER_SECRET_CANARY": "canary-value",
    }
    stack = Stack(
        api=api,
        http=http,
        team=TeamClient.bootstrap(http, f"team-{number}", BOOTSTRAP_TOKEN),
        workdir=tmp_path,
        db_path=Path(api.env["MINITOWER_DB_PATH"]),
        environment=environment,
        runner_env=runner_env,
    )
    try:
        yield stack
    finally:
        for process in stack.processes:
            process.stop()
        http.close()
        if private is not None:
            private.stop()


def assert_no_traceback(process: Process) -> None:
    text = process.log()
    assert "Traceback" not in text, text
