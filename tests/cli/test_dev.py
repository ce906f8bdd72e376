"""``minitower dev``: the whole stack from one command, used through the CLI, stopped by
SIGTERM, Ctrl-C (SIGINT) or even SIGKILL with no process left behind, and started again
on the same state."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import EXAMPLES, Cli, clean_environment
from tests.support.processes import free_port, script
from tests.support.proctree import alive, children_of, command_line, wait_gone
from tests.support.waiting import wait_for

BANNER_END = "Ctrl-C stops everything."
# The services log for people here: `HH:MM:SS.mmm level service event key=value ...`.
REAPER_STARTED = re.compile(
    r"^reaper   │ \d\d:\d\d:\d\d\.\d{3} info    reaper reaper started ", re.M
)
RUN_REPORTED = re.compile(
    r"^local-\d  │ \d\d:\d\d:\d\d\.\d{3} info    runner reported runner=local-\d "
    r"run_id=\d+ attempt_no=1 status=completed run_status=completed phases_ms=\{",
    re.M,
)


class Dev:
    def __init__(self, tmp_path: Path, port: int, state: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.port, self.state, self.env = tmp_path, port, state, env
        self.log_path = tmp_path / f"dev-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    script("minitower"),
                    "dev",
                    "--port",
                    str(self.port),
                    "--state-dir",
                    str(self.state),
                    *args,
                ],
                env=self.env,
                cwd=self.tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            lambda: BANNER_END in self.log() or self.proc is None or self.proc.poll() is not None,
            timeout=90,
            what="minitower dev to come up",
        )
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> set[int]:
        assert self.proc is not None
        return children_of(self.proc.pid)

    def kill_leftovers(self, pids: set[int]) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in pids:
            # Only what is still one of ours: a pid may have been reused since.
            if alive(pid) and "minitower" in command_line(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_dev_runs_the_stack_and_stops_it_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_environment(home)
    state = tmp_path / "state"
    dev = Dev(tmp_path, free_port(), state, env)
    cli = Cli(env=env, cwd=tmp_path)
    started: set[int] = set()
    try:
        # 1. First start: secrets generated, team bootstrapped, profile saved; SIGTERM.
        dev.start("--runners", "2")
        started |= dev.children()
        log = dev.log()
        url = f"http://127.0.0.1:{dev.port}"
        token = (state / "dev-token").read_text().strip()
        assert f"MiniTower is running at {url}" in log
        assert f"admin token {token}" in log
        assert "deploy examples/hello" in log and "run hello -p name=you --wait" in log
        # The console's first sign-in is one step: its URL and the password are printed.
        password = (state / "console-password").read_text().strip()
        assert f"console: {url}/  sign in as team dev, password {password}" in log
        signed_in = httpx.post(
            f"{url}/api/v1/teams/login", json={"slug": "dev", "password": password}
        )
        assert signed_in.status_code == 201, signed_in.text
        for private in (
            state / "dev-token",
            state / "secrets.env",
            state / "runner-registration-token",
            state / "console-password",
        ):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        # The API's secrets key, made on the first start beside the operator tokens.
        assert "MINITOWER_SECRETS_KEY=" in (state / "secrets.env").read_text()
        assert (state / "minitower.db").exists()

        # The saved 'dev' profile is the default: no flags needed.
        me = cli.ok("whoami", "--json").json()
        assert me["team_slug"] == "dev"
        cli.ok("deploy", str(EXAMPLES / "hello"))
        ran = cli("run", "hello", "-p", "name=dev", "--wait")
        assert ran.code == 0, f"{ran}\n{dev.log()}"
        assert ran.out == "hello, dev! (1/1)\n"
        wait_for(
            lambda: (
                {"local-1", "local-2"}
                <= {r["name"] for r in cli.ok("runners", "list", "--json").json()}
            ),
            timeout=30,
            what="both runners to register",
        )
        # Bound to the dev team: no uid switching needed for a non-root developer.
        listed = cli.ok("runners", "list", "--json").json()
        assert {r["name"]: r["shared"] for r in listed} == {"local-1": False, "local-2": False}
        wait_for(lambda: RUN_REPORTED.search(dev.log()), timeout=10, what="the run's report line")
        log = dev.log()
        for prefix in ("api      │ ", "reaper   │ ", "scheduler│ ", "local-1  │ ", "local-2  │ "):
            assert prefix in log, log
        assert REAPER_STARTED.search(log), log
        assert '{"ts": ' not in log, log
        children = dev.children()
        assert len(children) == 5, log  # api, reaper, scheduler, two runners
        started |= children

        assert dev.proc is not None
        dev.proc.send_signal(signal.SIGTERM)
        assert dev.proc.wait(60) == 0, dev.log()
        wait_gone(children, 10)
        assert "stopped" in dev.log()
        assert port_free(dev.port)

        # 2. Second start on the same state: same token, same apps; Ctrl-C (SIGINT).
        dev.log_path = tmp_path / "dev-2.log"
        dev.start("--runners", "0")
        children = dev.children()
        started |= children
        assert len(children) == 3, dev.log()  # api, reaper and scheduler
        assert (state / "dev-token").read_text().strip() == token
        assert (state / "console-password").read_text().strip() == password
        assert "hello" in {a["slug"] for a in cli.ok("apps", "list", "--json").json()}
        assert "hello, dev! (1/1)" in cli.ok("logs", ran.err.split()[1]).out
        dev.proc.send_signal(signal.SIGINT)
        assert dev.proc.wait(60) == 0, dev.log()
        wait_gone(children, 10)

        # 3. Even a SIGKILL of `minitower dev` takes its processes down with it.
        dev.log_path = tmp_path / "dev-3.log"
        dev.start("--runners", "1")
        children = dev.children()
        started |= children
        assert len(children) == 4, dev.log()  # api, reaper, scheduler, one runner
        dev.proc.send_signal(signal.SIGKILL)
        dev.proc.wait(10)
        wait_gone(children, 30)
    finally:
        dev.kill_leftovers(started)


def test_dev_refuses_a_busy_port(tmp_path: Path) -> None:
    env = clean_environment(tmp_path / "home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = Cli(env=env, cwd=tmp_path)("dev", "--port", str(port), "--state-dir", "st")
    assert done.code == 4, str(done)
    assert done.err == (
        f"minitower: error: port {port} on 127.0.0.1 is in use (another `minitower dev` or "
        "scripts/run-local?): stop it, or pass --port\n"
    )
