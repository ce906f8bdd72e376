"""The control plane goes away and comes back: the runner keeps the work going while the
lease may still be live, retries with backoff, and loses nothing."""

import time

import pytest

from tests.support.runner_stack import Stack, assert_no_traceback

pytestmark = pytest.mark.slow

# Prints a numbered line every 20 ms for about four seconds.
STEADY = """\
import time
for i in range(200):
    print(f"tick {i}", flush=True)
    time.sleep(0.02)
print("done")
"""


@pytest.mark.own_api(lease_ttl="15s")
def test_api_restart_mid_run_loses_no_line_and_duplicates_none(stack: Stack) -> None:
    stack.deploy("steady", {"main.py": STEADY})
    runner = stack.runner()
    run_id = stack.start_run("steady")
    stack.printed(run_id, "tick 5")
    stack.api.restart(down_for=2)
    run = stack.wait_status(run_id, timeout=60)
    assert run["status"] == "completed", (run, runner.log())
    logs = stack.logs(run_id)
    assert [entry["line"] for entry in logs] == [f"tick {i}" for i in range(200)] + ["done"]
    assert [entry["seq"] for entry in logs] == list(range(1, 202))
    assert [a["status"] for a in stack.attempts(run_id)] == ["completed"]
    # The outage was noticed by the attempt (heartbeats, log batches), and ridden out.
    attempt_retries = {"heartbeat failed; retrying", "log batch not sent; retrying"}
    retried = [line for line in runner.events() if line["event"] in attempt_retries]
    assert retried, runner.log()
    assert all(line["run_id"] == run_id and line["attempt_no"] == 1 for line in retried)
    assert all(line["request_id"].startswith("runner-") for line in retried)
    assert_no_traceback(runner)


@pytest.mark.own_api
def test_runner_started_before_the_api_waits_for_it(stack: Stack) -> None:
    stack.deploy("hello", {"main.py": "print('hi')\n"})
    run_id = stack.start_run("hello")
    stack.api.stop()
    runner = stack.runner()
    time.sleep(1.5)
    assert runner.proc.poll() is None, runner.log()
    stack.api.restart()
    assert stack.wait_status(run_id, timeout=60)["status"] == "completed", runner.log()
    assert_no_traceback(runner)
