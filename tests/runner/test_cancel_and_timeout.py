"""Cancel and timeout stop the whole process tree: SIGTERM to the group, a grace period,
then SIGKILL; the run ends cancelled, or failed with a message naming the timeout."""

import pytest

from tests.support.clients import check
from tests.support.proctree import alive
from tests.support.runner_stack import Stack

pytestmark = pytest.mark.slow

# Prints its own pid and that of a `sleep` child, then waits; with `stubborn` it ignores
# SIGTERM, so only the SIGKILL after the grace period ends it.
SPAWNS_A_CHILD = """\
import os, signal, subprocess, sys, time
if os.environ.get("stubborn") == "yes":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
print(f"pids {os.getpid()} {child.pid}", flush=True)
time.sleep(300)
"""


def test_cancel_kills_the_process_tree(stack: Stack) -> None:
    stack.deploy("sleeper", {"main.py": SPAWNS_A_CHILD})
    stack.runner()
    run_id = stack.start_run("sleeper")
    pids = stack.pids(run_id)
    assert all(alive(p) for p in pids)
    check(stack.team.post(f"/api/v1/runs/{run_id}/cancel"), 200)
    run = stack.wait_status(run_id, timeout=20)
    assert run["status"] == "cancelled", run
    assert not any(alive(p) for p in pids), "a workload process outlived the cancel"
    assert any("stopping the run (cancel)" in line for line in stack.lines(run_id, "stderr"))


def test_timeout_kills_a_workload_that_ignores_sigterm(stack: Stack) -> None:
    stack.deploy("slow", {"main.py": SPAWNS_A_CHILD}, extra="[app.timeout]\nseconds = 2\n")
    stack.runner()
    run_id = stack.start_run("slow", input={"stubborn": "yes"})
    pids = stack.pids(run_id)
    run = stack.wait_status(run_id, timeout=30)
    assert run["status"] == "failed", run
    assert "timeout" in run["error_message"] and "2 s" in run["error_message"]
    assert "SIGKILL" in run["error_message"]  # SIGTERM was ignored; the grace period ran out
    assert not any(alive(p) for p in pids)
    attempts = stack.attempts(run_id)
    assert [a["status"] for a in attempts] == ["failed"]


def test_cancel_before_the_runner_starts_it(stack: Stack) -> None:
    stack.deploy("never", {"main.py": "print('must not run')\n"})
    run_id = stack.start_run("never")
    check(stack.team.post(f"/api/v1/runs/{run_id}/cancel"), 200)
    stack.runner()
    # A queued run that is cancelled never reaches a runner.
    assert stack.wait_status(run_id, timeout=10)["status"] == "cancelled"
    assert stack.lines(run_id) == []


def test_a_cancel_after_the_work_finished_keeps_it_completed(stack: Stack) -> None:
    stack.deploy("quick", {"main.py": "print('done')\n"})
    stack.runner()
    run_id = stack.start_run("quick")
    run = stack.wait_status(run_id)
    assert run["status"] == "completed"
    check(stack.team.post(f"/api/v1/runs/{run_id}/cancel"), 200)
    assert stack.run(run_id)["status"] == "completed"
