"""Parts of the stack failing under it: a runner killed mid-run, the API restarted under
load, the reaper down while a lease expires. No run is lost or run twice at once.

Leases last 15 s here: longer than the API takes to restart (up to its 5 s graceful
shutdown, then start-up), as they must be in production (60 s by default). A run leased
just before the restart is started once the API is back, not given up.
"""

import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack, bring_up, no_restart, tear_down
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LONG = """\
import os, socket, time
print("started on", socket.gethostname(), "attempt", os.environ["MINITOWER_ATTEMPT_NO"], flush=True)
time.sleep(float(os.environ.get("seconds", "8")))
print("finished on", socket.gethostname())
"""
QUICK = "import time\ntime.sleep(0.3)\nprint('quick')\n"
LEASE_TTL = 15


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    up = bring_up(tmp_path_factory.mktemp("e2e-failures"), lease_ttl=f"{LEASE_TTL}s")
    try:
        yield up
    finally:
        tear_down(up)


def holder(stack: Stack, run_id: int) -> str:
    """The name (container id) of the runner running ``run_id``, once it started."""
    stack.wait_status(run_id, {"running"}, timeout=60)
    wait_for(lambda: stack.lines(run_id), timeout=30, what=f"run {run_id} to print")
    name: str = stack.attempts(run_id)[-1]["runner_name"]
    return name


def test_a_killed_runner_container_run_is_retried_on_another(stack: Stack) -> None:
    stack.deploy("long", LONG)
    run_id = stack.start_run("long", max_retries=1)
    first = holder(stack, run_id)
    container = stack.runner_container(first)
    no_restart(container)
    container.kill()
    run = stack.wait_status(run_id, timeout=90)
    assert run["status"] == "completed", run
    assert run["retry_count"] == 1
    attempts = stack.attempts(run_id)
    assert [(a["attempt_no"], a["status"]) for a in attempts] == [(1, "expired"), (2, "completed")]
    assert attempts[1]["runner_name"] != first
    assert stack.lines(run_id)[-1] == f"finished on {attempts[1]['runner_name']}"
    # Compose brings the runner count back.
    stack.cli("up", "-d", "--wait", "runner")


def test_api_restart_under_load_loses_no_run(stack: Stack) -> None:
    """Runs keep being submitted and executed while the API restarts: every run the API
    acknowledged (201) completes, with its logs, exactly once."""
    stack.deploy("quick", QUICK)
    run_ids: list[int] = []
    stop = threading.Event()

    def submit() -> None:
        deadline = time.monotonic() + 90  # bounded in time and in count
        while not stop.is_set() and time.monotonic() < deadline and len(run_ids) < 200:
            try:
                run_ids.append(stack.start_run("quick"))
            except Exception:  # the API is restarting: refused, so nothing to lose
                time.sleep(0.1)
            time.sleep(0.2)

    runners_before = {c.id: c.attrs["RestartCount"] for c in stack.containers("runner")}
    submitter = threading.Thread(target=submit)
    submitter.start()
    try:
        wait_for(lambda: len(run_ids) >= 8, timeout=30, what="runs to be submitted")
        stack.cli("restart", "--no-deps", "api")
        stack.wait_ready()
        after_restart = len(run_ids)
        wait_for(
            lambda: len(run_ids) >= after_restart + 8,
            timeout=30,
            what="submissions to go on after the restart",
        )
    finally:
        stop.set()
        submitter.join(30)
    runs = [stack.wait_status(run_id, timeout=120) for run_id in run_ids]
    assert [r["status"] for r in runs] == ["completed"] * len(runs), runs
    for run_id in run_ids:
        # A lease granted as the API went down may have been lost on the way and expired
        # (then retried): never lost, never completed twice.
        statuses = [a["status"] for a in stack.attempts(run_id)]
        assert statuses.count("completed") == 1 and statuses[-1] == "completed", statuses
        assert set(statuses) <= {"completed", "expired"}, statuses
        assert stack.lines(run_id) == ["quick"]
    # The runners rode it out: the same containers, never restarted.
    for container in stack.containers("runner"):
        container.reload()
    assert {c.id: c.attrs["RestartCount"] for c in stack.containers("runner")} == runners_before


def test_reaper_down_then_back_still_handles_expired_leases(stack: Stack) -> None:
    stack.deploy("long", LONG)
    stack.cli("kill", "reaper")
    run_id = stack.start_run("long", max_retries=1, input={"seconds": 8})
    first = holder(stack, run_id)
    container = stack.runner_container(first)
    no_restart(container)
    container.kill()
    # Past the lease with no reaper: nobody re-queues the run.
    time.sleep(LEASE_TTL + 3)
    stuck = stack.run(run_id)
    assert (stuck["status"], stuck["retry_count"]) == ("running", 0)
    stack.cli("start", "reaper")
    run = stack.wait_status(run_id, timeout=90)
    assert run["status"] == "completed", run
    assert [a["status"] for a in stack.attempts(run_id)] == ["expired", "completed"]
    stack.cli("up", "-d", "--wait", "runner")
