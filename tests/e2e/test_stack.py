"""The stack as an operator uses it: up, deploy and run through the published port,
scale the runners, take it down and up again without losing anything."""

import pytest

from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.compose_stack import BOOTSTRAP_TOKEN, Stack
from tests.support.waiting import wait_for

# One compose stack test at a time (under pytest-xdist): each drives a whole stack on
# timings of seconds (leases, heartbeats), which a second one beside it would crowd.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

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
    assert line == f"hello compose from {runner} as 10002"
    # It ran in a runner container of this project, as the workload user (not root, and
    # not the runner's own 10001: compose's runners are shared by every team).
    assert stack.runner_container(runner).labels["com.docker.compose.service"] == "runner"
    metrics = stack.http.get("/metrics").text
    assert "minitower_runs_finished_total" in metrics


# Team A's app, as in the security review: each attempt prints "ATTACK <what>: blocked"
# or "... SUCCEEDED".
ATTACKER = """\
import glob, os

def attempt(what, action):
    try:
        got = action()
    except OSError as exc:
        print(f"ATTACK {what}: blocked {type(exc).__name__}", flush=True)
    else:
        print(f"ATTACK {what}: SUCCEEDED {got!r}", flush=True)

def pth(site):
    with open(os.path.join(site, "zz_evil.pth"), "w") as out:
        out.write("import os; print('INJECTED', os.environ.get('MINITOWER_INPUT'))\\n")

attempt("token", lambda: open("../../../runner-token.json").read())
attempt("init environ", lambda: open("/proc/1/environ").read())
attempt("work root", lambda: os.listdir("../.."))
for site in glob.glob("/var/lib/minitower/venvs/*/lib/python*/site-packages"):
    attempt("venv " + site, lambda: pth(site))
attempt("venv cache", lambda: open("/var/lib/minitower/venvs/x", "w"))
print("uid", os.getuid(), os.getgroups(), flush=True)
"""
VICTIM = "import os\nprint('victim ran', os.environ['MINITOWER_APP'], flush=True)\n"


def test_a_teams_app_cannot_reach_the_runner_or_another_team(stack: Stack) -> None:
    """The cross-team injection of the review, on compose's default (shared) runners."""
    victim = TeamClient.bootstrap(stack.http, "globex", BOOTSTRAP_TOKEN)
    towerfile = '[app]\nname = "victim"\nscript = "main.py"\n'
    victim.deploy("victim", make_archive({"Towerfile": towerfile, "main.py": VICTIM}))
    first = victim.create_run("victim", input={"db_password": "hunter2"})["run_id"]
    stack.deploy("attacker", ATTACKER)
    attacks = [stack.start_run("attacker") for _ in range(2)]  # both runners, likely
    for run_id in attacks:
        assert stack.wait_status(run_id)["status"] == "completed"
        lines = stack.lines(run_id)
        found = [line for line in lines if line.startswith("ATTACK ")]
        assert len(found) >= 4, lines
        assert all(": blocked " in line for line in found), lines
        assert "uid 10002 []" in lines
        assert not any("hunter2" in line or "mtr_" in line for line in lines)
    # B's runs, on the runners A attacked, load nothing of A's.
    for run_id in [first, *(victim.create_run("victim")["run_id"] for _ in range(2))]:
        run = wait_for(
            lambda run_id=run_id: (r := victim.run(run_id))["status"] == "completed" and r,
            timeout=60,
            what=f"victim run {run_id}",
        )
        logs = check(victim.get(f"/api/v1/runs/{run['run_id']}/logs"), 200)["logs"]
        assert [entry["line"] for entry in logs] == ["victim ran victim"]


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
