"""The README's quickstart command, ``scripts/dev``: it installs what is missing, brings
the stack up through ``minitower dev``, and Ctrl-C takes every process down with it."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import Cli, clean_environment
from tests.support.processes import free_port
from tests.support.proctree import alive, children_of, command_line, wait_gone
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def readme_next_commands() -> str:
    """The quickstart's block that deploys, runs and follows the hello example."""
    readme = (ROOT / "README.md").read_text()
    quickstart = readme[readme.index("## Quickstart") : readme.index("## The CLI")]
    blocks = re.findall(r"```sh\n(.*?)```", quickstart, flags=re.DOTALL)
    assert len(blocks) == 2, blocks
    return blocks[1]


def on_path(env: dict[str, str]) -> bool:
    found = shutil.which("minitower", path=env.get("PATH"))
    return found is not None and Path(found).resolve() == (ROOT / ".venv/bin/minitower").resolve()


def test_scripts_dev_starts_the_stack_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = clean_environment(tmp_path / "home")
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(ROOT / "scripts" / "dev"),
                "--port",
                str(port),
                "--state-dir",
                str(tmp_path / "state"),
                "--runners",
                "1",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack: set[int] = set()
    try:
        wait_for(
            lambda: "Ctrl-C stops everything." in log_path.read_text() or proc.poll() is not None,
            timeout=120,
            what="scripts/dev to bring the stack up",
        )
        text = log_path.read_text()
        assert proc.poll() is None, text
        # The banner names the CLI as the user can call it: by its path in the repository,
        # or plainly where PATH finds that one (as under `uv run`, which CI uses).
        shown = "minitower" if on_path(env) else ".venv/bin/minitower"
        assert f"{shown} deploy examples/hello" in text
        me = Cli(env=env, cwd=ROOT).ok("whoami", "--json").json()
        assert me["team_slug"] == "dev"
        # The README's next three commands, as they are written there.
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_next_commands()],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log_path.read_text()}"
        assert done.stdout.endswith("hello, MiniTower! (1/1)\n"), done.stdout
        assert "completed" in done.stderr
        stack = children_of(proc.pid)
        assert len(stack) == 4, text  # API, reaper, scheduler, one runner
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log_path.read_text()
        wait_gone(stack, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in stack:
            if alive(pid) and "minitower" in command_line(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
