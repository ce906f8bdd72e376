"""The stack as an operator uses it: up, deploy and run through the published port,
scale the runners, take it down and up again without losing anything."""

import pytest

from tests.e2e.conftest import Stack
from tests.support.clients import check
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HELLO = """\
import os, socket
print("hello", os.environ.get("who", "world"), "from", socket.gethostname(), "as", os.getuid())
"""
NAPPER = "import socket, time\ntime.sleep(1.5)\nprint(socket.gethostname())\n"


def test_deploy_and_run_through_the_published_port(stack: Stack) -> None:
    assert stack.http.get("/health").json() == {"status": "ok"}
    stack.deploy("hello", HELLO)
    run = stack.wait_status(stack.start_run("hello", input={"who": "compose"}))
    assert run["status"] == "completed", run
    (line,) = stack.lines(run["run_id"])
    runner = stack.attempts(run["run_id"])[0]["runner_name"]
    assert line == f"hello compose from {runner} as 10001"
    # It ran in a runner container of this project, as the runner's own (non-root) user.
    assert stack.runner_container(runner).labels["com.docker.compose.service"] == "runner"
    metrics = stack.http.get("/metrics").text
    assert "minitower_runs_finished_total" in metrics


def test_scaled_runners_share_the_work(stack: Stack) -> None:
    stack.cli("up", "-d", "--wait", "--scale", "runner=3", "runner")
    wait_for(lambda: len(stack.online_runners()) >= 3, timeout=60, what="a third runner")
    assert len(stack.containers("runner")) == 3
    stack.deploy("napper", NAPPER)
    run_ids = [stack.start_run("napper") for _ in range(9)]
    runs = [stack.wait_status(run_id) for run_id in run_ids]
    assert all(r["status"] == "completed" for r in runs), runs
    used = {stack.attempts(r)[0]["runner_name"] for r in run_ids}
    assert len(used) == 3, f"9 runs of 1.5 s on 3 runners used only {used}"
    stack.cli("up", "-d", "--wait", "--scale", "runner=2", "runner")
    assert len(stack.containers("runner")) == 2


def test_down_and_up_keeps_every_run_token_and_artifact(stack: Stack) -> None:
    stack.deploy("keeper", HELLO)
    before = stack.wait_status(stack.start_run("keeper"))
    assert before["status"] == "completed"
    stack.cli("down")  # containers go, named volumes stay
    assert stack.containers("api") == []
    stack.cli("up", "-d", "--wait")
    stack.wait_ready()
    assert stack.run(before["run_id"]) == before  # the same team token still works
    assert stack.lines(before["run_id"])[0].startswith("hello world")
    # The version's artifact survived on the objects volume: a new run of it completes.
    again = stack.wait_status(stack.start_run("keeper"))
    assert again["status"] == "completed", again
    versions = check(stack.team.get("/api/v1/apps/keeper/versions"), 200)["versions"]
    assert [v["version_no"] for v in versions] == [1]
