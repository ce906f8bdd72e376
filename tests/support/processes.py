"""Start the real console scripts (``minitowerd``, ``minitower-reaper``,
``minitower-runner``) as processes, and read their JSON log lines."""

import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import Database, database_env, object_store

BIN = Path(sys.executable).parent


# Ports the tests hand to servers they start: below the kernel's ephemeral range
# (32768-60999), so that no outgoing connection or port-0 bind of this or another process
# takes one between our check and the server's bind, and a slice per pytest-xdist worker,
# so that no two workers hand out the same one. The start in the slice is random: another
# run of the suite on the machine uses the same slices.
_PORT_BASE = 20000
_PORT_SLICE = 400
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_port_offsets = itertools.count(random.randrange(_PORT_SLICE))


def free_port() -> int:
    """A port of this worker's slice that is free now (no listener, no TIME_WAIT); the
    next call hands out the next one, so a port is not handed out again before the
    slice's other ports have been."""
    first = _PORT_BASE + (_worker % 30) * _PORT_SLICE
    for _ in range(_PORT_SLICE):
        port = first + next(_port_offsets) % _PORT_SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}-{first + _PORT_SLICE - 1}")


def script(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"console script {name} is not installed; run `uv sync`"
    return found


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, event: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Its JSON log lines so far (output to a file is JSON), those of ``event`` with
        ``fields`` when given."""
        return [
            line
            for line in log_events(self.log())
            if (event is None or line["event"] == event)
            and all(line.get(key) == value for key, value in fields.items())
        ]


def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON log lines in a process's output, in order (other output is skipped)."""
    events = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record)
    return events


def spawn(name: str, args: list[str], env: dict[str, str], log_path: Path) -> Process:
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [script(name), *args],
        # JSON whatever the caller's environment says: events() reads it.
        env={**os.environ, "MINITOWER_LOG_FORMAT": "json", **env},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
    )
    log_file.close()
    return Process(proc=proc, log_path=log_path)


@dataclass
class LiveApi(Process):
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def client(self, timeout: float = 45) -> httpx.Client:
        """Long enough for the longest lease long poll (30 s)."""
        return httpx.Client(base_url=self.url, timeout=timeout)

    def restart(self, down_for: float = 0) -> None:
        """Stop the API, stay down ``down_for`` seconds, start it again on the same port."""
        self.stop()
        time.sleep(down_for)
        process = spawn("minitowerd", [], self.env, self.log_path.with_suffix(".restarted.log"))
        self.proc, self.log_path = process.proc, process.log_path
        wait_ready(self.url, self)


def wait_ready(url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"process exited early:\n{process.log()}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"API at {url} not ready after {timeout}s:\n{process.log()}")


def start_api(workdir: Path, database: Database, env: dict[str, str]) -> LiveApi:
    api = spawn_api(workdir, database, env)
    try:
        wait_ready(api.url, api)
    except BaseException:
        api.stop()
        raise
    return api


def spawn_api(workdir: Path, database: Database, env: dict[str, str]) -> LiveApi:
    """A ``minitowerd`` started but not yet waited for (``wait_ready``): several start
    side by side."""
    port = free_port()
    full_env = {
        **database_env(database),
        "MINITOWER_OBJECTS_DIR": str(workdir / "objects"),
        "MINITOWER_OBJECT_STORE": object_store(database),
        "MINITOWER_LISTEN_ADDR": f"127.0.0.1:{port}",
        "MINITOWER_LOG_LEVEL": "warning",
        **env,
    }
    process = spawn("minitowerd", [], full_env, workdir / f"minitowerd-{port}.log")
    return LiveApi(
        proc=process.proc, log_path=process.log_path, url=f"http://127.0.0.1:{port}", env=full_env
    )


def start_reaper(workdir: Path, database: Database, env: dict[str, str], name: str) -> Process:
    return spawn(
        "minitower-reaper",
        [],
        {**database_env(database), "MINITOWER_LOG_LEVEL": "info", **env},
        workdir / f"{name}.log",
    )


def start_scheduler(workdir: Path, database: Database, env: dict[str, str], name: str) -> Process:
    return spawn(
        "minitower-scheduler",
        [],
        {
            **database_env(database),
            "MINITOWER_LOG_LEVEL": "info",
            "MINITOWER_SCHEDULER_NAME": name,
            **env,
        },
        workdir / f"{name}.log",
    )


def fast_runner_env(environment: str, venvs: Path, registration_token: str) -> dict[str, str]:
    """A runner paced for tests: short long polls and heartbeats, a quick kill, the
    given environment and a venv cache shared by the session. Its workloads run as
    itself even when it is shared (one test's team trusts itself; the session's folders
    are private to the user running the tests): tests/runner/test_team_isolation.py
    covers the separate workload uid."""
    return {
        "MINITOWER_RUNNER_TRUST_ALL_TEAMS": "true",
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": registration_token,
        "MINITOWER_RUNNER_ENVIRONMENT": environment,
        "MINITOWER_LEASE_WAIT": "2s",
        "MINITOWER_POLL_INTERVAL": "0.1s",
        "MINITOWER_HEARTBEAT_INTERVAL": "0.5s",
        "MINITOWER_KILL_GRACE_PERIOD": "1s",
        "MINITOWER_DRAIN_TIMEOUT": "10s",
        "MINITOWER_REQUEST_TIMEOUT": "5s",
        "MINITOWER_VENV_CACHE_DIR": str(venvs),
    }


def start_runner(workdir: Path, url: str, name: str, env: dict[str, str]) -> Process:
    """A ``minitower-runner`` named ``name`` with its own data directory under ``workdir``."""
    return spawn(
        "minitower-runner",
        [],
        {
            "MINITOWER_SERVER_URL": url,
            "MINITOWER_RUNNER_NAME": name,
            "MINITOWER_DATA_DIR": str(workdir / name),
            "MINITOWER_LOG_LEVEL": "info",
            **env,
        },
        workdir / f"{name}.log",
    )
