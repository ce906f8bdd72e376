"""A runner that dies or loses its lease takes its workload down with it, so that the
run's retry on another runner never overlaps the old attempt."""

import signal
import time
from pathlib import Path

import pytest

from tests.support.proctree import alive
from tests.support.runner_stack import Stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# Records when each attempt starts (wall clock) in a journal outside the workspace, then
# works (the first attempt for `seconds`, a retry briefly); prints its pids so the test
# can watch them.
JOURNALED = """\
import os, subprocess, time
journal = os.environ["journal"]
attempt = os.environ["MINITOWER_ATTEMPT_NO"]
with open(journal, "a") as out:
    out.write(f"start {attempt} {time.time()}\\n")
child = subprocess.Popen(["sleep", "300"])
print(f"pids {os.getpid()} {child.pid}", flush=True)
time.sleep(float(os.environ["seconds"]) if attempt == "1" else 0.5)
child.kill()
with open(journal, "a") as out:
    out.write(f"end {attempt} {time.time()}\\n")
print("finished", attempt)
"""


def journal_entries(path: Path) -> list[tuple[str, int, float]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        kind, attempt, at = line.split()
        entries.append((kind, int(attempt), float(at)))
    return entries


def test_sigkilled_runner_takes_its_workload_down_and_the_run_is_retried(
    stack: Stack, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    stack.deploy("journaled", {"main.py": JOURNALED})
    stack.reaper()
    first = stack.runner("runner-a")
    run_id = stack.start_run(
        "journaled", input={"journal": str(journal), "seconds": 3}, max_retries=1
    )
    pids = stack.pids(run_id)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    wait_for(
        lambda: not any(alive(p) for p in pids),
        timeout=3,
        what="the workload (and its child) to die with the runner",
        interval=0.02,
    )
    dead_at = time.time()
    stack.runner("runner-b")
    run = stack.wait_status(run_id, timeout=60)
    assert run["status"] == "completed", run
    assert run["retry_count"] == 1
    attempts = stack.attempts(run_id)
    assert [(a["attempt_no"], a["status"], a["runner_name"]) for a in attempts] == [
        (1, "expired", "runner-a"),
        (2, "completed", "runner-b"),
    ]
    entries = journal_entries(journal)
    assert [(kind, n) for kind, n, _ in entries] == [("start", 1), ("start", 2), ("end", 2)]
    # The retry began only after every process of the first attempt was gone.
    assert entries[1][2] > dead_at
    assert stack.lines(run_id)[-1] == "finished 2"


@pytest.mark.own_api(lease_ttl="5s")
def test_api_gone_past_the_lease_stops_the_work_and_the_retry_never_overlaps(
    stack: Stack, tmp_path: Path
) -> None:
    """The runner keeps the work going while the lease may still be live, stops it once
    the lease has certainly expired, and reports nothing for it afterwards."""
    journal = tmp_path / "journal.txt"
    stack.deploy("journaled", {"main.py": JOURNALED})
    runner = stack.runner("runner-a")
    run_id = stack.start_run(
        "journaled", input={"journal": str(journal), "seconds": 30}, max_retries=1
    )
    pids = stack.pids(run_id)
    stack.api.stop()
    stopped_at = time.monotonic()
    wait_for(
        lambda: not any(alive(p) for p in pids),
        timeout=10,
        what="the runner to stop the work once its lease has expired",
        interval=0.05,
    )
    # Not before the lease could have expired (5 s TTL less 2 s of clock slack,
    # heartbeats every 0.5 s), but before it really did.
    assert 1.5 < time.monotonic() - stopped_at < 5.0
    dead_at = time.time()
    assert runner.events("lease lost: stopping the work, reporting nothing", run_id=run_id)
    stack.api.restart()
    stack.reaper()
    # The same runner, back in its loop, may well take the retry: that is fine, as long
    # as it starts after the first attempt's processes are gone.
    wait_for(
        lambda: len(journal_entries(journal)) >= 2,
        timeout=30,
        what="the retry to start",
    )
    first, second = stack.attempts(run_id)[:2]
    assert (first["status"], second["attempt_no"]) == ("expired", 2)
    assert stack.run(run_id)["retry_count"] == 1
    entries = journal_entries(journal)
    assert [(kind, n) for kind, n, _ in entries[:2]] == [("start", 1), ("start", 2)]
    assert entries[1][2] > dead_at
    # Nothing was reported for the fenced attempt.
    assert first["exit_code"] is None
    assert not runner.events("reported", run_id=run_id, attempt_no=1)
    assert stack.wait_status(run_id)["status"] == "completed"
    # The retry, by the same runner, was reported (and logged as such): only the fenced
    # attempt's report is missing.
    wait_for(
        lambda: runner.events("reported", run_id=run_id, attempt_no=2, status="completed"),
        timeout=10,
        what="the runner's line for the retry's report",
    )
    assert not runner.events("reported", run_id=run_id, attempt_no=1)
