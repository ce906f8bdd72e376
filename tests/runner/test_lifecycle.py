"""The runner process itself: registration and its saved token, configuration errors,
and shutdown by SIGTERM (drain)."""

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.clients import RunnerClient
from tests.support.processes import script
from tests.support.proctree import alive
from tests.support.runner_stack import Stack, assert_no_traceback
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def token_file(stack: Stack, name: str) -> Path:
    """The runner's saved token file, once it is there: the runner writes it just after
    the API has answered its registration."""
    path = stack.workdir / name / "runner-token.json"
    wait_for(path.exists, timeout=10, what=f"{path} to be written")
    return path


def test_token_is_saved_0600_and_reused_across_restarts(stack: Stack) -> None:
    stack.deploy("hello", {"main.py": "print('hi')\n"})
    first = stack.runner("keeper")
    stack.wait_runners({"keeper"})
    path = token_file(stack, "keeper")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["name"] == "keeper" and saved["token"].startswith("mtr_")
    assert first.stop() == 0
    stack.runner("keeper")
    assert stack.wait_status(stack.start_run("hello"))["status"] == "completed"
    assert json.loads(path.read_text())["token"] == saved["token"]  # no new registration


def test_a_revoked_token_makes_the_runner_register_again(stack: Stack) -> None:
    stack.deploy("hello", {"main.py": "print('hi')\n"})
    runner = stack.runner("renewer")
    stack.wait_runners({"renewer"})
    old = json.loads(token_file(stack, "renewer").read_text())["token"]
    # Registering the same name elsewhere revokes the token the runner holds.
    RunnerClient.register(
        stack.http,
        "renewer",
        stack.runner_env["MINITOWER_RUNNER_REGISTRATION_TOKEN"],
        environment=stack.environment,
    )
    assert stack.wait_status(stack.start_run("hello"), timeout=30)["status"] == "completed"
    assert json.loads(token_file(stack, "renewer").read_text())["token"] != old
    assert_no_traceback(runner)


def run_runner(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("minitower-runner")],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MINITOWER_KILL_GRACE_PERIOD": "soon"}, "MINITOWER_KILL_GRACE_PERIOD: invalid duration"),
        ({"MINITOWER_SERVER_URL": "ftp://x"}, "MINITOWER_SERVER_URL: must be an http"),
        ({"MINITOWER_RUNNER_ISOLATION": "vm"}, "MINITOWER_RUNNER_ISOLATION"),
        ({"MINITOWER_RUNNER_NAME": "bad name!"}, "MINITOWER_RUNNER_NAME"),
        ({"MINITOWER_RUNNER_REGISTRATION_TOKEN": "short"}, "at least 16 characters"),
        ({"MINITOWER_LOG_FORMAT": "xml"}, "MINITOWER_LOG_FORMAT"),
    ],
)
def test_bad_settings_exit_2_with_one_clear_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    done = run_runner({"MINITOWER_DATA_DIR": str(tmp_path), **env}, tmp_path)
    assert done.returncode == 2, done
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_no_token_and_no_registration_token_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    env = {
        "MINITOWER_SERVER_URL": stack.api.url,
        "MINITOWER_DATA_DIR": str(tmp_path / "data"),
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": "",
    }
    done = run_runner(env, tmp_path)
    assert done.returncode == 2
    assert "MINITOWER_RUNNER_REGISTRATION_TOKEN is not set" in done.stderr
    wrong = run_runner({**env, "MINITOWER_RUNNER_REGISTRATION_TOKEN": "x" * 20}, tmp_path)
    assert wrong.returncode == 2
    assert "refused the registration token" in wrong.stderr
    assert "Traceback" not in done.stderr + wrong.stderr + done.stdout + wrong.stdout


def test_help_names_the_settings(tmp_path: Path) -> None:
    done = subprocess.run(
        [script("minitower-runner"), "--help"], capture_output=True, text=True, check=True
    )
    for name in ("MINITOWER_SERVER_URL", "MINITOWER_DRAIN_TIMEOUT", "--once"):
        assert name in done.stdout


def test_sigterm_when_idle_exits_0_at_once(stack: Stack) -> None:
    runner = stack.runner()
    stack.wait_runners({"runner-1"})
    time.sleep(0.3)  # inside a long poll by now
    started = time.monotonic()
    assert runner.stop(timeout=10) == 0, runner.log()
    assert time.monotonic() - started < 2
    assert_no_traceback(runner)


def test_sigterm_lets_the_current_run_finish_then_exits_0(stack: Stack) -> None:
    stack.deploy(
        "finisher",
        {"main.py": "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('end')\n"},
    )
    runner = stack.runner()
    run_id = stack.start_run("finisher")
    queued = stack.start_run("finisher")
    stack.printed(run_id, "started")
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(20) == 0, runner.log()
    assert stack.run(run_id)["status"] == "completed"
    assert stack.lines(run_id) == ["started", "end"]
    # A draining runner takes no new work.
    assert stack.run(queued)["status"] == "queued"
    assert_no_traceback(runner)


def test_drain_timeout_stops_the_run_without_reporting_it(stack: Stack) -> None:
    stack.deploy(
        "forever",
        {"main.py": "import os, time\nprint(f'pids {os.getpid()}', flush=True)\ntime.sleep(300)\n"},
    )
    runner = stack.runner(MINITOWER_DRAIN_TIMEOUT="1s")
    stack.reaper()
    run_id = stack.start_run("forever", max_retries=1)
    pids = stack.pids(run_id)
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(20) == 0, runner.log()
    assert not any(alive(p) for p in pids)
    # Nothing was reported: the reaper hands the run back to the queue once the lease ends.
    run = wait_for(
        lambda: (r := stack.run(run_id))["retry_count"] == 1 and r,
        timeout=20,
        what="the reaper to re-queue the drained run",
    )
    assert run["status"] == "queued"
    assert [a["status"] for a in stack.attempts(run_id)] == ["expired"]
