"""``minitower`` (the CLI) run as a user runs it, as a subprocess with an environment of
its own (a private HOME, none of the host's MINITOWER_* variables) and a bounded time;
and the local stack the CLI tier runs it against (tests/cli/conftest.py builds it)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.clients import TeamClient
from tests.support.processes import LiveApi, Process, fast_runner_env, script, start_runner
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLI_TIMEOUT = 90.0

API_ENV = {
    "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
    "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
    "MINITOWER_LEASE_TTL": "3s",
    "MINITOWER_LEASE_POLL_INTERVAL": "0.1s",
}


def clean_environment(home: Path) -> dict[str, str]:
    """The host's environment without MINITOWER_* settings, with a private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINITOWER_")}
    env.pop("COLUMNS", None)
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "NO_COLOR": "1",
            "TERM": "dumb",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str
    args: tuple[str, ...]

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"minitower {command} -> {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


@dataclass
class Cli:
    """``minitower`` as a user runs it: ``cli("runs", "list")``."""

    env: dict[str, str]
    cwd: Path

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
    ) -> Result:
        done = subprocess.run(
            [script("minitower"), *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr, args)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.code == 0, str(result)
        return result

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [script("minitower"), *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> Result:
    """The exit code and output of a background ``minitower``, killing it if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"minitower did not end within {timeout}s:\n{out}\n{err}") from None
    return Result(proc.returncode, out, err, tuple(str(a) for a in proc.args[1:]))


def write_app(folder: Path, name: str, files: dict[str, str], extra: str = "") -> Path:
    """An app folder with a Towerfile for ``main.py`` (dedented files)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Towerfile").write_text(
        f'[app]\nname = "{name}"\nscript = "main.py"\n' + textwrap.dedent(extra)
    )
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(textwrap.dedent(text))
    return folder


@dataclass
class CliStack:
    api: LiveApi
    http: httpx.Client
    team: TeamClient
    cli: Cli
    workdir: Path
    venvs: Path
    processes: list[Process] = field(default_factory=list)

    def runner(self, name: str, environment: str = "default", **env: str) -> Process:
        process = start_runner(
            self.workdir,
            self.api.url,
            name,
            {**fast_runner_env(environment, self.venvs, REGISTRATION_TOKEN), **env},
        )
        self.processes.append(process)
        return process
