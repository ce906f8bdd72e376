"""Secrets end to end: a real API, a real runner and an app that prints its secret. The
workload sees it in os.environ; the shipped log shows ``***``; and the value (nor its
base64 or hex) is nowhere else: not in the database file or its WAL, the objects, any
process's output, the /proc cmdline and environ of the runner or its launcher, nor any
answer of the API. A declared secret the environment lacks fails the run naming it."""

import base64
import json
import os
from pathlib import Path

import pytest

from tests.support.clients import check
from tests.support.runner_stack import Stack
from tests.support.secrets import KEY, put_secret
from tests.support.waiting import wait_for

VALUE = "pg-Zx81-very-secret-canary-7f3a"
API_VALUE = "sk-2nd-secret-Q9w8e7r6"
FORMS = [
    VALUE.encode(),
    base64.b64encode(VALUE.encode()),
    base64.urlsafe_b64encode(VALUE.encode()),
    VALUE.encode().hex().encode(),
    API_VALUE.encode(),
]

PRINTER = """\
import os, sys, time
value = os.environ["DB_URL"]
print("direct", value)
print("split", value[:6])
print(value[6:], "(rest)")
print("other", os.environ["API_KEY"], file=sys.stderr)
print("pids", os.getpid(), os.getppid(), flush=True)
release = os.environ["release"]
for _ in range(600):
    if os.path.exists(release):
        break
    time.sleep(0.05)
"""


def _leaks(data: bytes) -> list[bytes]:
    return [form for form in FORMS if form in data]


def _proc(pid: int, what: str) -> bytes:
    return Path(f"/proc/{pid}/{what}").read_bytes()


@pytest.mark.own_api(secrets_key=KEY)
def test_a_run_gets_its_secrets_and_they_leak_nowhere(stack: Stack, tmp_path: Path) -> None:
    env = stack.environment
    check(put_secret(stack.team, "DB_URL", VALUE, environment=env), 201)
    check(put_secret(stack.team, "API_KEY", API_VALUE, environment=env), 201)
    stack.deploy("printer", {"main.py": PRINTER}, extra='secrets = ["DB_URL", "API_KEY"]\n')
    runner = stack.runner()
    release = tmp_path / "release"
    run_id = stack.start_run("printer", input={"release": str(release)})
    workload_pid, launcher_pid = stack.pids(run_id)

    # The workload has them; its parent (the launcher) and the runner do not, in environ
    # or cmdline.
    workload_env = _proc(workload_pid, "environ").split(b"\0")
    assert f"DB_URL={VALUE}".encode() in workload_env
    for pid in (launcher_pid, runner.proc.pid):
        for what in ("environ", "cmdline"):
            assert _leaks(_proc(pid, what)) == [], (pid, what)
    release.touch()
    run = stack.wait_status(run_id)
    assert run["status"] == "completed", run

    lines = stack.lines(run_id)
    assert "direct ***" in lines
    assert "split ***" in lines and "*** (rest)" in lines
    assert "other ***" in lines
    shipped = json.dumps(stack.logs(run_id)).encode()
    assert _leaks(shipped) == []

    answers = [
        stack.team.get(f"/api/v1/runs/{run_id}").content,
        stack.team.get(f"/api/v1/runs/{run_id}/attempts").content,
        stack.team.get("/api/v1/secrets").content,
        stack.team.get("/api/v1/apps/printer/versions/1").content,
    ]
    assert all(_leaks(answer) == [] for answer in answers)

    runner.stop()
    stack.api.stop()
    db = stack.db_path
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            assert _leaks(path.read_bytes()) == [], path
    objects = Path(stack.api.env["MINITOWER_OBJECTS_DIR"])
    for path in objects.rglob("*"):
        if path.is_file():
            assert _leaks(path.read_bytes()) == [], path
    for process in (stack.api, runner):
        assert _leaks(process.log_path.read_bytes()) == [], process.log_path
    assert not os.environ.get("DB_URL")


@pytest.mark.own_api(secrets_key=KEY)
def test_a_missing_declared_secret_fails_the_run_naming_it(stack: Stack) -> None:
    env = stack.environment
    check(put_secret(stack.team, "DB_URL", VALUE, environment=env), 201)
    stack.deploy(
        "needy",
        {"main.py": "print('never runs')\n"},
        extra='secrets = ["DB_URL", "MISSING_ONE", "MISSING_TWO"]\n',
    )
    stack.runner()
    run_id = stack.start_run("needy")
    run = stack.wait_status(run_id)
    assert run["status"] == "failed", run
    assert "MISSING_ONE, MISSING_TWO" in run["error_message"]
    assert env in run["error_message"]
    assert "DB_URL" not in run["error_message"]
    assert "never runs" not in stack.lines(run_id)
    assert any("MISSING_ONE" in line for line in stack.lines(run_id, "stderr"))
    wait_for(lambda: stack.attempts(run_id)[0]["status"] == "failed", timeout=10, what="attempt")
