"""deploy/runbooks/install.md (the offline compose path) and scale-and-drain.md, as
written, on one stack: the install's own steps bring it up (its env file in a temporary
folder, never the repository's ``.env``), then the runners are scaled and one is drained
while it holds a run."""

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.compose_stack import ROOT
from tests.support.processes import free_port
from tests.support.runbooks import run_step
from tests.support.waiting import wait_for

# One compose stack test at a time (under pytest-xdist): each drives a whole stack on
# timings of seconds (leases, heartbeats), which a second one beside it would crowd.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
SLOW = "import time\nfor i in range(8):\n    print('tick', i, flush=True)\n    time.sleep(1)\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    folder = tmp_path_factory.mktemp("e2e-install")
    port = free_port()
    env = {
        "COMPOSE_PROJECT_NAME": f"mt-e2e-{secrets.token_hex(3)}",
        "COMPOSE_FILE": str(ROOT / "compose.yaml"),
        "COMPOSE_ENV_FILES": str(folder / "minitower.env"),
        "MINITOWER_ENV_FILE": str(folder / "minitower.env"),
        "MINITOWER_SERVER_URL": f"http://127.0.0.1:{port}",
        "XDG_CONFIG_HOME": str(folder / "config"),
        "PATH": PATH,
        # Settings that the shell gives compose (they win over the env file).
        "MINITOWER_PORT": str(port),
        "MINITOWER_RUNNERS": "2",
        "MINITOWER_DRAIN_TIMEOUT": "30s",
        "MINITOWER_RUNNER_STOP_GRACE": "45s",
        "MINITOWER_HEARTBEAT_INTERVAL": "1s",
        "MINITOWER_EXPIRY_CHECK_INTERVAL": "1s",
        "MINITOWER_RUNNER_OFFLINE_AFTER": "3s",
    }
    try:
        yield env
    finally:
        subprocess.run(
            ["docker", "compose", "down", "--volumes", "--timeout", "5"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            timeout=120,
            check=False,
        )


# Alone: the runbook provisions the engine and rebuilds the images every other stack
# test starts from, which would also slow everything beside it.
@pytest.mark.serial
def test_install_offline_with_compose(env: dict[str, str]) -> None:
    run_step("install", "compose-check-engine", env=env)
    run_step("install", "offline-provision", env=env)
    built = run_step("install", "offline-build-images", env=env, timeout=600)
    assert "minitower/runner:latest" in built.stdout
    written = run_step("install", "compose-write-env", env=env)
    assert written.stdout.strip() == "2"
    again = run_step("install", "compose-write-env", env=env, check=False)
    assert again.returncode != 0 and "exists" in again.stderr  # never clobbers secrets
    run_step("install", "offline-env-base", env=env)
    started = run_step("install", "compose-start", env=env)
    assert "api running healthy" in started.stdout
    assert started.stdout.count("runner running healthy") == 2
    assert '"status":"ok"' in run_step("install", "verify-ready", env=env).stdout.replace(" ", "")
    team = run_step("install", "compose-bootstrap-team", env=env)
    assert "admin" in team.stdout
    hello = run_step("install", "verify-hello-run", env=env, timeout=180)
    assert "hello, install! (1/1)" in hello.stdout


def runner_of(env: dict[str, str], run_id: str) -> str:
    found = json.loads(cli(env, "runs", "attempts", run_id, "--json"))
    attempts = found["attempts"] if isinstance(found, dict) else found
    name: str = attempts[-1]["runner_name"]
    return name


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["minitower", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_scale_up_drain_one_and_scale_down(env: dict[str, str], tmp_path: Path) -> None:
    listed = run_step("scale-and-drain", "compose-list-runners", env=env)
    assert listed.stdout.count("runner-") >= 2
    scaled = run_step("scale-and-drain", "compose-scale", env={**env, "MINITOWER_RUNNERS": "3"})
    assert scaled.stdout.count("(healthy)") == 3
    # A run in hand: draining its runner lets it finish there.
    app = tmp_path / "slow"
    app.mkdir()
    (app / "Towerfile").write_text('[app]\nname = "slow"\nscript = "main.py"\n')
    (app / "main.py").write_text(SLOW)
    cli(env, "deploy", str(app))
    run_id = cli(env, "run", "slow").split()[-1].strip()
    assert run_id.isdigit(), run_id
    wait_for(
        lambda: '"running"' in cli(env, "runs", "show", run_id, "--json"),
        timeout=60,
        what=f"run {run_id} to run",
    )
    runner = runner_of(env, run_id)
    drained = run_step("scale-and-drain", "compose-drain-runner", env={**env, "RUNNER": runner})
    assert "exit code 0" in drained.stdout, drained.stdout
    assert "drained: no run in hand, exiting" in drained.stdout
    finished = run_step("scale-and-drain", "verify-run-finished", env={**env, "RUN_ID": run_id})
    assert "completed" in finished.stdout
    attempts = cli(env, "runs", "attempts", run_id, "--json")
    assert attempts.count('"attempt_no"') == 1 and '"completed"' in attempts, attempts

    def offline() -> bool:
        out = run_step("scale-and-drain", "verify-runners", env=env).stdout
        return any(runner in line and "offline" in line for line in out.splitlines())

    wait_for(offline, timeout=30, what=f"runner {runner} to show offline")
    down = run_step("scale-and-drain", "compose-scale", env={**env, "MINITOWER_RUNNERS": "1"})
    assert down.stdout.count("(healthy)") == 1
