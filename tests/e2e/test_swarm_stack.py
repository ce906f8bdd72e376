"""deploy/swarm/stack.yaml on a Swarm of one host, deployed and scaled with the steps of
deploy/runbooks/multi-host.md: PostgreSQL, 2 API replicas behind the proxy, 2 reapers,
the scheduler and 2 runners come up; runs complete through the proxy; a third API
replica added with the runbook's scale step serves requests.

The test makes this host a Swarm manager when it is not one (and leaves the Swarm
afterwards), and removes its stack and the stack's volumes whatever happens. The
proxy's port is published on every address of the host (Swarm cannot bind loopback);
the test sends traffic to 127.0.0.1 only.
"""

import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.compose_stack import (
    BOOTSTRAP_TOKEN,
    IMAGES,
    POSTGRES_PASSWORD,
    POSTGRES_STACK_IMAGES,
    REGISTRATION_TOKEN,
)
from tests.support.docker_engine import docker_prerequisite_missing
from tests.support.processes import free_port
from tests.support.runbooks import run_step
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

RUNS = 20
APP = 'import os\nprint("ran", os.environ["MINITOWER_RUN_ID"])\n'


@dataclass
class SwarmStack:
    name: str
    env: dict[str, str]
    http: httpx.Client

    def services(self) -> dict[str, str]:
        listed = subprocess.run(
            ["docker", "stack", "services", "--format", "{{.Name}} {{.Replicas}}", self.name],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split("\n")
        return {
            name.removeprefix(f"{self.name}_"): replicas
            for name, replicas in (line.split() for line in listed if line.strip())
        }


def _swarm_state() -> str:
    return subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def _remove(name: str, engine: docker.DockerClient) -> None:
    subprocess.run(["docker", "stack", "rm", name], capture_output=True, check=False, timeout=60)
    label = f"com.docker.stack.namespace={name}"
    wait_for(
        lambda: not engine.containers.list(all=True, filters={"label": label}),
        timeout=120,
        what=f"stack {name}'s containers to go",
        interval=1,
    )
    for volume in engine.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    # Its overlay network goes a little after its containers.
    wait_for(
        lambda: not engine.networks.list(filters={"label": label}),
        timeout=60,
        what=f"stack {name}'s network to go",
        interval=1,
    )


@pytest.fixture(scope="module")
def swarm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmStack]:
    engine = docker.from_env()
    for image in (*IMAGES, *POSTGRES_STACK_IMAGES):
        try:
            engine.images.get(f"{image}:latest")
        except docker.errors.ImageNotFound:
            docker_prerequisite_missing(f"{image}:latest is missing: run build-images.sh")
    joined_here = _swarm_state() != "active"
    name = f"mt-e2e-swarm-{secrets.token_hex(3)}"
    port = free_port()
    folder: Path = tmp_path_factory.mktemp("swarm")
    settings = {
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "MINITOWER_POSTGRES_PASSWORD": POSTGRES_PASSWORD,
        "MINITOWER_PORT": str(port),
        "MINITOWER_RUNNERS": "2",
        "MINITOWER_API_REPLICAS": "2",
        "MINITOWER_REAPERS": "2",
        "MINITOWER_LEASE_TTL": "10s",
        "MINITOWER_EXPIRY_CHECK_INTERVAL": "1s",
        "MINITOWER_HEARTBEAT_INTERVAL": "1s",
        "MINITOWER_DRAIN_TIMEOUT": "5s",
        "MINITOWER_KILL_GRACE_PERIOD": "2s",
        "MINITOWER_RUNNER_STOP_GRACE": "10s",
    }
    env_file = folder / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env = {
        "SWARM_ADDR": "127.0.0.1",
        "MINITOWER_STACK": name,
        "MINITOWER_STACK_ENV": str(env_file),
        "MINITOWER_PORT": str(port),
    }
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        run_step("multi-host", "swarm-init", env=env)
        run_step("multi-host", "swarm-label-node", env=env)
        run_step("multi-host", "swarm-deploy", env=env)
        yield SwarmStack(name=name, env=env, http=http)
    finally:
        http.close()
        try:
            _remove(name, engine)
        finally:
            if joined_here:
                subprocess.run(
                    ["docker", "swarm", "leave", "--force"], capture_output=True, timeout=60
                )


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_stack_deploys_runs_and_scales_on_a_swarm(swarm_stack: SwarmStack) -> None:
    wait_for(lambda: _ready(swarm_stack.http), timeout=240, what="the stack's API", interval=1)
    wait_for(
        lambda: (
            {k: v for k, v in swarm_stack.services().items() if k != "migrate"}
            == {
                "postgres": "1/1",
                "api": "2/2",
                "proxy": "1/1",
                "reaper": "2/2",
                "scheduler": "1/1",
                "runner": "2/2",
            }
        ),
        timeout=180,
        what="every service's replicas",
        interval=1,
    )
    verified = run_step("multi-host", "swarm-verify", env=swarm_stack.env)
    assert '"status":"ok"' in verified.stdout.replace(" ", "")
    # migrate ran once and exited 0: complete, not restarted.
    assert swarm_stack.services()["migrate"] == "0/1"

    team = TeamClient.bootstrap(swarm_stack.http, "acme", BOOTSTRAP_TOKEN)

    def runners_online() -> bool:
        body = check(team.get("/api/v1/admin/runners"), 200)
        return sum(r["status"] == "online" for r in body["runners"]) >= 2

    wait_for(runners_online, timeout=120, what="2 runners to register", interval=1)
    team.deploy(
        "ping",
        make_archive({"Towerfile": '[app]\nname = "ping"\nscript = "main.py"\n', "main.py": APP}),
    )
    run_ids = [team.create_run("ping")["run_id"] for _ in range(RUNS)]

    def all_ended() -> bool:
        return all(
            team.run(run_id)["status"] in {"completed", "failed", "dead"} for run_id in run_ids
        )

    wait_for(all_ended, timeout=180, what=f"{RUNS} runs to end", interval=1)
    assert {team.run(run_id)["status"] for run_id in run_ids} == {"completed"}
    lines = check(team.get(f"/api/v1/runs/{run_ids[-1]}/logs"), 200)["logs"]
    assert [entry["line"] for entry in lines] == [f"ran {run_ids[-1]}"]

    scaled = {**swarm_stack.env, "MINITOWER_API_REPLICAS": "3"}
    started = time.monotonic()
    run_step("multi-host", "swarm-scale-api", env=scaled, timeout=240)
    assert swarm_stack.services()["api"] == "3/3"
    # Each replica serves: the proxy resolves the API's tasks by name (DNS round robin).
    engine = docker.from_env()
    tasks = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name={swarm_stack.name}_api"}
    )
    assert len(tasks) == 3
    proxy = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name={swarm_stack.name}_proxy"}
    )[0]

    def every_replica_served() -> bool:
        for _ in range(12):
            check(team.get("/api/v1/me"), 200)
        addresses = {
            c.attrs["NetworkSettings"]["Networks"][f"{swarm_stack.name}_default"]["IPAddress"]
            for c in tasks
        }
        logs = proxy.logs(since=int(started)).decode()
        return all(f"upstream={address}:8080" in logs for address in addresses)

    wait_for(every_replica_served, timeout=60, what="requests to reach all 3 replicas", interval=1)
