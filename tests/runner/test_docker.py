"""Docker isolation (MINITOWER_RUNNER_ISOLATION=docker): each attempt runs in a throwaway
container of a locally built image, as a non-root user, off every network; cancel and
timeout stop it; a runner that dies takes its container down (the stdin watchdog), its
successor removes what is left, and no container outlives the tests.

The image is MINITOWER_RUNNER_IMAGE (CI builds it with
deploy/offline/build-workload-image.sh), else ``minitower/workload:latest``.
"""

import hashlib
import json
import os
import re
import signal
import socket
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from tests.support.clients import check
from tests.support.docker_engine import docker_prerequisite_missing
from tests.support.processes import Process
from tests.support.runner_stack import Stack
from tests.support.secrets import KEY, put_secret
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

IMAGE = os.environ.get("MINITOWER_RUNNER_IMAGE", "minitower/workload:latest")
# Every runner of this module is named with this prefix, so that the module checks (and
# cleans up) only its own containers even when other suites share the engine.
PREFIX = f"dock-{uuid.uuid4().hex[:8]}"
LABEL_RUNNER = "minitower.runner"


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        docker_prerequisite_missing(
            f"the workload image {IMAGE} is not on this host: "
            "build it with deploy/offline/build-images.sh"
        )
    yield client
    client.close()


def ours(engine: Any) -> list[Any]:
    """Every container (running or not) of a runner of this module."""
    return [
        c
        for c in engine.containers.list(
            all=True, filters={"label": LABEL_RUNNER}, ignore_removed=True
        )
        if c.labels.get(LABEL_RUNNER, "").startswith(PREFIX)
    ]


@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind(engine: Any) -> Iterator[None]:
    """After the module's tests: no container of its runners remains (and none is left
    for the next suite even when this check fails)."""
    yield
    # Each test's runners have been stopped by then; give a removal in flight a moment.
    deadline = time.monotonic() + 10
    while ours(engine) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = ours(engine)
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"containers left behind: {[(c.short_id, c.labels) for c in leftovers]}"


def docker_runner(stack: Stack, tag: str, **env: str) -> Process:
    return stack.runner(
        f"{PREFIX}-{tag}",
        MINITOWER_RUNNER_ISOLATION="docker",
        MINITOWER_RUNNER_IMAGE=IMAGE,
        **env,
    )


def run_containers(engine: Any, run_id: int) -> list[Any]:
    return [
        c
        for c in engine.containers.list(
            all=True, filters={"label": f"minitower.run_id={run_id}"}, ignore_removed=True
        )
        if c.labels.get(LABEL_RUNNER, "").startswith(PREFIX)
    ]


def the_container(engine: Any, run_id: int) -> Any:
    found: list[Any] = wait_for(
        lambda: run_containers(engine, run_id),
        timeout=10,
        what=f"the container of run {run_id}",
    )
    assert len(found) == 1, found
    return found[0]


def assert_gone(engine: Any, run_id: int) -> None:
    wait_for(
        lambda: not run_containers(engine, run_id),
        timeout=5,
        what=f"the container of run {run_id} to be removed",
    )


# Reports what the workload sees of its sandbox, writes interleaved output, fails with 7.
PROBE = """\
import errno, json, os, socket, sys

def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__)

print("uid", os.getuid(), os.getgid(), flush=True)
print("hostname", socket.gethostname())
print("interfaces", ",".join(sorted(os.listdir("/sys/class/net"))))
port = int(os.environ["api_port"])
print("loopback", reach("127.0.0.1", port))
print("gateway", reach("172.17.0.1", port))
with open("written-here.txt", "w") as out:
    out.write("ok")
print("cwd", os.getcwd(), open("written-here.txt").read())
print("prefix", sys.prefix)
print("env", json.dumps(dict(os.environ)), flush=True)
for i in range(30):
    print(f"out {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
sys.exit(7)
"""


def value(lines: list[str], key: str) -> str:
    return next(line for line in lines if line.startswith(f"{key} ")).split(" ", 1)[1]


def test_a_run_executes_in_its_own_container(stack: Stack, engine: Any) -> None:
    stack.deploy("probe", {"main.py": PROBE})
    docker_runner(stack, "probe")
    api_port = int(stack.api.url.rsplit(":", 1)[1])
    given = {"greeting": "hi there", "count": 3, "nested": {"a": [1, 2]}, "api_port": api_port}
    run_id = stack.start_run("probe", input=given)
    run = stack.wait_status(run_id, timeout=30)
    assert (run["status"], run["exit_code"]) == ("failed", 7), run
    assert run["error_message"] == "exited with code 7"
    out = stack.lines(run_id, "stdout")
    err = stack.lines(run_id, "stderr")

    assert value(out, "uid") == "10001 10001"
    hostname = value(out, "hostname")
    assert hostname != socket.gethostname() and re.fullmatch(r"[0-9a-f]{12}", hostname), hostname
    # No network but its own loopback: the host's API is out of reach, and so is any
    # address beyond the container.
    assert value(out, "interfaces") == "lo"
    assert value(out, "loopback") == "ECONNREFUSED"
    assert value(out, "gateway") == "ENETUNREACH"
    assert value(out, "cwd") == "/tmp/minitower/app ok"
    assert value(out, "prefix") == "/tmp/minitower/venv"

    env = json.loads(value(out, "env"))
    assert (env["greeting"], env["count"], env["nested"]) == ("hi there", "3", '{"a": [1, 2]}')
    assert json.loads(env["MINITOWER_INPUT"]) == given
    assert (env["MINITOWER_RUN_ID"], env["MINITOWER_ATTEMPT_NO"]) == (str(run_id), "1")
    assert not any("canary-value" in v for v in env.values()), env
    leaked = [k for k in env if "TOKEN" in k or "SECRET" in k or k.startswith(("TINI_", "DOCKER"))]
    assert not leaked, leaked

    # Each stream arrives complete and in order.
    assert [x for x in out if x.startswith("out ")] == [f"out {i}" for i in range(30)]
    assert [x for x in err if x.startswith("err ")] == [f"err {i}" for i in range(30)]
    assert stack.attempts(run_id)[0]["runner_name"] == f"{PREFIX}-probe"
    assert_gone(engine, run_id)


SECRET = "docker-Pw-5e1f-canary-value-of-a-secret"
# Proves it got the value (its digest, not the value, is in the code), prints it (the
# shipped line must say ***), then stays up long enough to be inspected.
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
SECRET_USER = f"""\
import hashlib, os, time
value = os.environ["DB_URL"]
print("match", hashlib.sha256(value.encode()).hexdigest() == "{DIGEST}", flush=True)
print("direct", value, flush=True)
time.sleep(3)
"""


@pytest.mark.own_api(secrets_key=KEY)
def test_secrets_reach_the_containers_environment_and_nothing_else(
    stack: Stack, engine: Any
) -> None:
    check(put_secret(stack.team, "DB_URL", SECRET, environment=stack.environment), 201)
    stack.deploy("vaulted", {"main.py": SECRET_USER}, extra='secrets = ["DB_URL"]\n')
    runner = docker_runner(stack, "secrets")
    run_id = stack.start_run("vaulted")
    container = the_container(engine, run_id)
    config = container.attrs
    # In the container's environment (where Docker isolation must put it), never in its
    # command, nor in the runner's own environment or command line.
    assert f"DB_URL={SECRET}" in config["Config"]["Env"]
    assert SECRET not in json.dumps([config["Path"], config["Args"], config["Config"]["Cmd"]])
    for what in ("environ", "cmdline"):
        assert SECRET.encode() not in Path(f"/proc/{runner.proc.pid}/{what}").read_bytes()
    run = stack.wait_status(run_id, timeout=60)
    assert run["status"] == "completed", run
    assert stack.lines(run_id, "stdout")[:2] == ["match True", "direct ***"]
    assert SECRET not in json.dumps(stack.logs(run_id))
    assert_gone(engine, run_id)  # with it, the only copy Docker kept
    runner.stop()
    assert SECRET not in runner.log_path.read_text()


# Prints its pid and that of a `sleep` child, then waits; with `stubborn` it ignores
# SIGTERM, so only the SIGKILL after the grace period ends it.
SPAWNS_A_CHILD = """\
import os, signal, subprocess, sys, time
if os.environ.get("stubborn") == "yes":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
print(f"pids {os.getpid()} {child.pid}", flush=True)
time.sleep(300)
"""


def test_cancel_stops_and_removes_the_container(stack: Stack, engine: Any) -> None:
    stack.deploy("sleeper", {"main.py": SPAWNS_A_CHILD})
    docker_runner(stack, "cancel")
    run_id = stack.start_run("sleeper")
    stack.pids(run_id)
    container = the_container(engine, run_id)
    assert container.status == "running"
    assert container.labels[LABEL_RUNNER] == f"{PREFIX}-cancel"
    assert container.labels["minitower.attempt_no"] == "1"
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert config["User"] == "10001:10001" and config["OpenStdin"] and config["StdinOnce"]
    assert host["Init"] is True and host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and host["PidsLimit"] == 512
    assert host["Memory"] == 2**30 and host["NanoCpus"] == 10**9
    assert host["Binds"] is None and not container.attrs["Mounts"]
    # A read-only root: the only writable place is a size-limited tmpfs.
    assert host["ReadonlyRootfs"] is True
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert "size=1g" in host["Tmpfs"]["/tmp"]
    written = container.exec_run(["sh", "-c", "touch /usr/x || echo refused"], user="10001")
    assert b"refused" in written.output
    # Both processes, in the container's own pid namespace.
    top = " ".join(" ".join(p) for p in container.top()["Processes"])
    assert "sleep 300" in top and "main.py" in top

    check(stack.team.post(f"/api/v1/runs/{run_id}/cancel"), 200)
    run = stack.wait_status(run_id, timeout=15)
    assert run["status"] == "cancelled", run
    assert run["exit_code"] == -signal.SIGTERM  # SIGTERM was enough: no SIGKILL needed
    assert any("stopping the run (cancel)" in line for line in stack.lines(run_id, "stderr"))
    assert_gone(engine, run_id)


def test_timeout_kills_a_container_that_ignores_sigterm(stack: Stack, engine: Any) -> None:
    stack.deploy("slow", {"main.py": SPAWNS_A_CHILD}, extra="[app.timeout]\nseconds = 2\n")
    docker_runner(stack, "timeout")
    run_id = stack.start_run("slow", input={"stubborn": "yes"})
    stack.pids(run_id)
    assert the_container(engine, run_id).status == "running"
    run = stack.wait_status(run_id, timeout=20)
    assert run["status"] == "failed", run
    assert "timeout" in run["error_message"] and "2 s" in run["error_message"]
    assert "SIGKILL" in run["error_message"]  # SIGTERM was ignored; the grace period ran out
    assert [a["status"] for a in stack.attempts(run_id)] == ["failed"]
    assert_gone(engine, run_id)


# The first attempt works for a long time, a retry briefly.
RETRIED = """\
import os, time
attempt = os.environ["MINITOWER_ATTEMPT_NO"]
print("started", attempt, flush=True)
time.sleep(300 if attempt == "1" else 0.2)
print("finished", attempt)
"""


def test_a_killed_runners_container_dies_and_its_successor_removes_it(
    stack: Stack, engine: Any
) -> None:
    stack.deploy("retried", {"main.py": RETRIED})
    stack.reaper()
    first = docker_runner(stack, "killed")
    run_id = stack.start_run("retried", max_retries=1)
    stack.printed(run_id, "started 1")
    container = the_container(engine, run_id)
    assert container.status == "running"

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)

    def stopped() -> bool:
        container.reload()
        return bool(container.status == "exited")

    # Nobody removes it, but the watchdog has the container die with its runner.
    wait_for(stopped, timeout=5, what="the container to die with its runner", interval=0.05)
    assert container.attrs["State"]["ExitCode"] == 128 + signal.SIGKILL

    # The same runner, restarted, removes the leftover before it leases again.
    successor = docker_runner(stack, "killed")

    def removed() -> bool:
        try:
            container.reload()
        except NotFound:
            return True
        return False

    wait_for(removed, timeout=10, what="the restarted runner to remove the leftover")
    run = stack.wait_status(run_id, timeout=20)
    assert run["status"] == "completed", run
    assert run["retry_count"] == 1
    attempts = [(a["attempt_no"], a["status"]) for a in stack.attempts(run_id)]
    assert attempts == [(1, "expired"), (2, "completed")]
    assert stack.lines(run_id)[-1] == "finished 2"
    assert successor.events(
        "removed a container left by a previous runner", container=container.id[:12]
    )
    assert_gone(engine, run_id)


def test_submit_to_completed_latency(stack: Stack, engine: Any) -> None:
    """A trivial run, end to end, through a warm docker runner (reported, loosely bound)."""
    stack.deploy("trivial", {"main.py": "print('ok')\n"})
    docker_runner(stack, "latency")
    # The first run warms the runner up (registration, first lease).
    stack.wait_status(stack.start_run("trivial"), timeout=30)
    durations = []
    for _ in range(5):
        run = stack.wait_status(stack.start_run("trivial"), timeout=30)
        assert run["status"] == "completed", run
        queued = datetime.fromisoformat(run["queued_at"])
        finished = datetime.fromisoformat(run["finished_at"])
        durations.append((finished - queued).total_seconds())
    p50 = statistics.median(durations)
    print(f"docker run submit->completed: p50 {p50:.3f} s over {durations}")
    assert p50 < 5, durations
