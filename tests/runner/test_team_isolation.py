"""The cross-team attack on a shared runner, reproduced: team A's app reads the runner's
token from its workspace, writes a ``.pth`` into the cached venvs, lists and reads
another run's workspace, and a runner token is used to lease another team's runs. On a
shared runner started as root (as compose's is), each fails, and team B's input never
reaches A's logs.

Also: the start-up refusal of a shared runner that cannot switch uids, and the workload
uid's privileges (no groups, no capabilities, no_new_privs).
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import app_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.privileges import passable_folder, require_root, workload_python
from tests.support.processes import Process, script, start_runner
from tests.support.proctree import alive
from tests.support.runner_stack import Stack
from tests.support.tokens import BOOTSTRAP_TOKEN
from tests.support.waiting import wait_for

VICTIM = """\
import os, time
with open("secret.txt", "w") as out:
    out.write(os.environ["MINITOWER_INPUT"])
print("workspace", os.getcwd(), flush=True)
time.sleep(60)
"""

# Every attempt prints one line: "ATTACK <what>: blocked <error>" or "... SUCCEEDED".
ATTACKER = """\
import glob, json, os, sys

target = json.loads(os.environ["MINITOWER_INPUT"])


def attempt(what, action):
    try:
        got = action()
    except OSError as exc:
        print(f"ATTACK {what}: blocked {type(exc).__name__}", flush=True)
    else:
        print(f"ATTACK {what}: SUCCEEDED {got!r}", flush=True)


def read(path):
    with open(path) as f:
        return f.read()


def write_pth(site):
    with open(os.path.join(site, "zz_evil.pth"), "w") as out:
        out.write("import os; print('INJECTED', os.environ.get('MINITOWER_INPUT'))\\n")
    return site


attempt("read ../../../runner-token.json", lambda: read("../../../runner-token.json"))
attempt("read the runner token by path", lambda: read(target["token_file"]))
# Its cwd is <data dir>/work/<its workspace>/app.
attempt("list the work root", lambda: os.listdir("../.."))
attempt("list the data dir", lambda: os.listdir("../../.."))
attempt("list another run's workspace", lambda: os.listdir(target["victim_dir"]))
attempt("read another run's input", lambda: read(os.path.join(target["victim_dir"], "secret.txt")))
attempt("read the runner's environ", lambda: read(f"/proc/{target['runner_pid']}/environ"))
own = glob.glob(os.path.join(os.environ["VIRTUAL_ENV"], "lib", "python*", "site-packages"))
attempt("write a .pth into its own venv", lambda: write_pth(own[0]))
for site in glob.glob(os.path.join(target["venvs"], "*", "lib", "python*", "site-packages")):
    attempt("write a .pth into a cached venv", lambda: write_pth(site))
attempt("write into the venv cache", lambda: open(os.path.join(target["venvs"], "x"), "w"))
print("identity", os.getuid(), os.getgid(), os.getgroups(), flush=True)
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith(("CapEff", "CapPrm", "CapAmb", "NoNewPrivs")):
            print("status", line.strip(), flush=True)
"""
ATTACKER = ATTACKER.replace(
    'attempt("write into the venv cache", lambda: open(os.path.join(target["venvs"], "x"), "w"))',
    'attempt("write into the venv cache", lambda: open(os.path.join(target["venvs"], "x"), "w"))',
)

CHECK = """\
import os
print("clean run of", os.environ["MINITOWER_APP"], flush=True)
"""


def shared_runner(
    stack: Stack, base: Path, name: str, uid: int, **env: str
) -> tuple[Process, Path, Path]:
    data_dir, venvs = base / name, base / "venvs"
    process = start_runner(
        stack.workdir,
        stack.api.url,
        name,
        {
            **stack.runner_env,
            "MINITOWER_RUNNER_TRUST_ALL_TEAMS": "false",
            "MINITOWER_DATA_DIR": str(data_dir),
            "MINITOWER_VENV_CACHE_DIR": str(venvs),
            "MINITOWER_RUNNER_PYTHON": workload_python(),
            "MINITOWER_RUNNER_WORKLOAD_UID": str(uid),
            "MINITOWER_RUNNER_WORKLOAD_GID": str(uid),
            **env,
        },
    )
    stack.processes.append(process)
    return process, data_dir, venvs


def attacks(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("ATTACK "):
            what, _, outcome = line[len("ATTACK ") :].partition(": ")
            found.setdefault(what, []).append(outcome)
    return found


def test_team_a_cannot_reach_the_runner_or_team_b_on_a_shared_runner(stack: Stack) -> None:
    require_root("a shared runner switches workloads to another uid")
    team_a = stack.team
    team_b = TeamClient.bootstrap(stack.http, f"victim-{stack.environment}", BOOTSTRAP_TOKEN)
    team_b.deploy("victim", app_archive("victim", {"main.py": VICTIM}))
    team_b.deploy("check", app_archive("check", {"main.py": CHECK}))
    team_a.deploy("attacker", app_archive("attacker", {"main.py": ATTACKER}))

    with passable_folder() as base:
        # B's run, live on one shared runner, holds its input in its workspace.
        victim_runner, _, _ = shared_runner(stack, base, "shared-b", 64001)
        victim_run = team_b.create_run(
            "victim", environment=stack.environment, input={"db_password": "hunter2"}
        )["run_id"]
        victim_dir = stack_printed(stack, team_b, victim_run, "workspace ").split(" ", 1)[1]

        # A's run on another shared runner of the same host.
        attacker_runner, data_dir, venvs = shared_runner(stack, base, "shared-a", 64002)
        target = {
            "token_file": str(data_dir / "runner-token.json"),
            "victim_dir": victim_dir,
            "runner_pid": attacker_runner.proc.pid,
            "venvs": str(venvs),
        }
        attack_run = team_a.create_run("attacker", environment=stack.environment, input=target)[
            "run_id"
        ]
        done = wait_terminal(team_a, attack_run)
        assert done["status"] == "completed", done
        lines = run_lines(team_a, attack_run)
        outcomes = attacks(lines)
        assert outcomes, lines
        assert {
            "read ../../../runner-token.json",
            "read the runner token by path",
            "list the work root",
            "list the data dir",
            "list another run's workspace",
            "read another run's input",
            "read the runner's environ",
            "write a .pth into its own venv",
            "write a .pth into a cached venv",
            "write into the venv cache",
        } <= set(outcomes)
        refused = {what: results for what, results in outcomes.items()}
        assert all(r.startswith("blocked") for rs in refused.values() for r in rs), refused
        assert not any("hunter2" in line for line in lines)
        assert not any("mtr_" in line for line in lines)
        # The workload ran as the runner's workload uid, with no groups or capabilities.
        assert "identity 64002 64002 []" in lines
        assert "status CapEff:\t0000000000000000" in lines
        assert "status CapAmb:\t0000000000000000" in lines
        assert "status NoNewPrivs:\t1" in lines
        # Its workspace is gone (the runner removes it right after reporting the result,
        # so it may still be going when the run reads terminal); the token file is the
        # runner's alone.
        work = data_dir / "work"
        wait_for(lambda: not any(work.iterdir()), timeout=10, what=f"{work} to be emptied")
        assert list(work.iterdir()) == []
        token_file = data_dir / "runner-token.json"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert (data_dir.stat().st_mode & 0o777, (data_dir / "work").stat().st_mode & 0o777) == (
            0o711,
            0o711,
        )

        # B's next run on the attacker's runner runs clean: nothing A wrote is loaded,
        # and B's venv is not A's (the cache is keyed by team).
        check(stack.team.post(f"/api/v1/runs/{victim_run}/cancel"), 404)  # not A's run
        check(team_b.post(f"/api/v1/runs/{victim_run}/cancel"), 200)
        wait_terminal(team_b, victim_run)
        victim_runner.stop()
        clean = team_b.create_run(
            "check", environment=stack.environment, input={"db_password": "hunter2"}
        )["run_id"]
        assert wait_terminal(team_b, clean)["status"] == "completed"
        clean_lines = run_lines(team_b, clean)
        assert "clean run of check" in clean_lines
        assert not any("INJECTED" in line for line in clean_lines)
        assert not any("hunter2" in line for line in run_lines(team_a, attack_run))
        assert len([p for p in venvs.iterdir() if p.is_dir() and not p.name.startswith(".")]) >= 2

        # A token of a runner bound to team A, stolen as well, leases none of B's runs.
        queued = team_b.create_run("check", environment="elsewhere")["run_id"]
        registration = check(
            team_a.post("/api/v1/runner-registration-tokens", json={"name": "a"}), 201
        )["token"]
        stolen = RunnerClient.register(stack.http, "a-bound", registration, "elsewhere")
        assert stolen.lease_response().status_code == 204
        assert team_b.run(queued)["status"] == "queued"


def stack_printed(stack: Stack, team: TeamClient, run_id: int, prefix: str) -> str:
    line: str = wait_for(
        lambda: next((x for x in run_lines(team, run_id) if x.startswith(prefix)), None),
        timeout=60,
        what=f"run {run_id} to print {prefix!r}",
    )
    return line


def run_lines(team: TeamClient, run_id: int) -> list[str]:
    body = check(team.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10_000}), 200)
    return [entry["line"] for entry in body["logs"]]


def wait_terminal(team: TeamClient, run_id: int) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(
        lambda: (
            (run := team.run(run_id))["status"] in {"completed", "failed", "cancelled", "dead"}
            and run
        ),
        timeout=90,
        what=f"run {run_id} to end",
    )
    return run


def test_a_shared_runner_that_cannot_switch_uids_refuses_to_start(
    stack: Stack, tmp_path: Path
) -> None:
    """Not root, no CAP_SETUID/CAP_SETGID: a shared runner in process isolation says why
    it will not start and what to do, and exits 2."""
    with passable_folder() as base:
        data_dir = base / "unprivileged"
        data_dir.mkdir()
        command = [script("minitower-runner"), "--once"]
        if os.geteuid() == 0:
            os.chown(data_dir, 64003, 64003)
            command = ["setpriv", "--reuid=64003", "--regid=64003", "--clear-groups", *command]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MINITOWER_")},
            **stack.runner_env,
            "MINITOWER_RUNNER_TRUST_ALL_TEAMS": "false",
            "MINITOWER_SERVER_URL": stack.api.url,
            "MINITOWER_RUNNER_NAME": "unprivileged",
            "MINITOWER_DATA_DIR": str(data_dir),
            "MINITOWER_VENV_CACHE_DIR": str(data_dir / "venvs"),
            "MINITOWER_RUNNER_PYTHON": workload_python(),
            "HOME": str(data_dir),
        }
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("minitower-runner:")]
    assert "refusing to start in process isolation" in line
    assert "cannot run workloads under another uid" in line
    assert "runner-tokens create" in line and "MINITOWER_RUNNER_ISOLATION=docker" in line
    assert "Traceback" not in done.stderr


def test_a_runner_bound_to_its_team_runs_workloads_as_itself(stack: Stack) -> None:
    """The way out for an unprivileged host: bind the runner to the team. It does not
    switch uids (there is no other team's run to reach) and is handed only the team's
    runs; it remembers its binding across restarts."""
    registration = check(
        stack.team.post("/api/v1/runner-registration-tokens", json={"name": "own"}), 201
    )["token"]
    stack.deploy("whoami", {"main.py": "import os\nprint('uid', os.getuid())\n"})
    run_id = stack.start_run("whoami")
    runner = stack.runner(
        "bound-1",
        MINITOWER_RUNNER_TRUST_ALL_TEAMS="false",
        MINITOWER_RUNNER_REGISTRATION_TOKEN=registration,
    )
    assert stack.wait_status(run_id)["status"] == "completed", stack.lines(run_id)
    assert f"uid {os.geteuid()}" in stack.lines(run_id)
    saved = json.loads((stack.workdir / "bound-1" / "runner-token.json").read_text())
    assert saved["team_id"] == stack.team.team_id
    runner.stop()
    # Restarted without any registration token: the saved binding still holds.
    again = stack.runner(
        "bound-1",
        MINITOWER_RUNNER_TRUST_ALL_TEAMS="false",
        MINITOWER_RUNNER_REGISTRATION_TOKEN="",
    )
    second = stack.start_run("whoami")
    assert stack.wait_status(second)["status"] == "completed", again.log


@pytest.mark.parametrize("who", ["root", "the runner"])
def test_workload_uid_must_not_be_root_or_the_runners(stack: Stack, who: str) -> None:
    uid = "0" if who == "root" else str(os.geteuid())
    with passable_folder() as base:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MINITOWER_")},
            **stack.runner_env,
            "MINITOWER_RUNNER_TRUST_ALL_TEAMS": "false",
            "MINITOWER_SERVER_URL": stack.api.url,
            "MINITOWER_RUNNER_NAME": f"bad-uid-{who.replace(' ', '-')}",
            "MINITOWER_DATA_DIR": str(base / "d"),
            "MINITOWER_RUNNER_WORKLOAD_UID": uid,
        }
        done = subprocess.run(
            [script("minitower-runner"), "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert "must differ from the runner's own uid" in done.stderr or "greater than" in done.stderr


SPAWNS_A_CHILD = """\
import os, signal, subprocess, time
if os.environ.get("stubborn") == "yes":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
print(f"pids {os.getpid()} {child.pid}", flush=True)
time.sleep(300)
"""


def test_cancel_and_runner_death_still_stop_every_workload_process(stack: Stack) -> None:
    """Workloads under another uid are still signalled as a group on cancel, and die
    with the runner even when it is SIGKILLed (the launcher stays the runner's user)."""
    require_root("a shared runner switches workloads to another uid")
    stack.deploy("sleeper", {"main.py": SPAWNS_A_CHILD})
    with passable_folder() as base:
        runner, _, _ = shared_runner(stack, base, "shared-k", 64005)
        cancelled = stack.start_run("sleeper", input={"stubborn": "yes"})
        pids = stack.pids(cancelled)
        assert all(alive(p) for p in pids)
        assert {os.stat(f"/proc/{p}").st_uid for p in pids} == {64005}
        check(stack.team.post(f"/api/v1/runs/{cancelled}/cancel"), 200)
        assert stack.wait_status(cancelled, timeout=30)["status"] == "cancelled"
        assert not any(alive(p) for p in pids), "a workload process outlived the cancel"

        orphaned = stack.start_run("sleeper")
        pids = stack.pids(orphaned)
        runner.proc.kill()
        runner.proc.wait(10)
        wait_for(
            lambda: not any(alive(p) for p in pids),
            timeout=10,
            what="the workload to die with its runner",
        )
