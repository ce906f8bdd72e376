"""The containerised kit brought up for a test: the real ``compose.yaml`` under
testcontainers' ``DockerCompose``, as a compose project of its own with an override file
naming the project and an env file with the secrets and faster timings, reached only
through the API port it publishes on 127.0.0.1. The images must exist already:
``deploy/offline/build-images.sh`` builds them (CI runs it first)."""

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.models.containers import Container
from testcontainers.compose import DockerCompose

from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.docker_engine import docker_prerequisite_missing
from tests.support.processes import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_TOKEN = "e2e-bootstrap-token-0123456789"
REGISTRATION_TOKEN = "e2e-registration-token-0123456789"
TERMINAL = {"completed", "failed", "cancelled", "dead"}
IMAGES = ("minitower/api", "minitower/runner")
# The PostgreSQL stack's own images (compose.postgres.yaml).
POSTGRES_STACK_IMAGES = ("minitower/postgres", "minitower/proxy")
POSTGRES_PASSWORD = "e2e-postgres-password-0123456789"
WORKLOAD_IMAGE = os.environ.get("MINITOWER_RUNNER_IMAGE", "minitower/workload:latest")


@dataclass
class Stack:
    compose: DockerCompose
    project: str
    url: str
    http: httpx.Client
    team: TeamClient
    engine: docker.DockerClient
    compose_file: str = ""
    env_file: str = ""

    def runbook_env(self, **extra: str) -> dict[str, str]:
        """The variables under which a runbook's plain ``docker compose`` and
        ``minitower`` commands act on this stack, as the team's admin."""
        return {
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_FILE": self.compose_file,
            "COMPOSE_ENV_FILES": self.env_file,
            "MINITOWER_SERVER_URL": self.url,
            "MINITOWER_API_TOKEN": self.team.token,
            **extra,
        }

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``docker compose`` with this stack's files and env file."""
        done = subprocess.run(
            [*self.compose.compose_command_property, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"docker compose {' '.join(args)}:\n{done.stderr}"
        return done

    def containers(self, service: str) -> list[Container]:
        found: list[Container] = self.engine.containers.list(
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            }
        )
        return found

    def runner_container(self, runner_name: str) -> Container:
        """A runner registers under its container's hostname, the short container id."""
        return self.engine.containers.get(runner_name)

    def deploy(self, app: str, main: str) -> dict[str, Any]:
        towerfile = f'[app]\nname = "{app}"\nscript = "main.py"\n'
        return self.team.deploy(app, make_archive({"Towerfile": towerfile, "main.py": main}))

    def start_run(self, app: str, **body: Any) -> int:
        run_id: int = self.team.create_run(app, **body)["run_id"]
        return run_id

    def run(self, run_id: int) -> dict[str, Any]:
        return self.team.run(run_id)

    def wait_status(
        self, run_id: int, statuses: set[str] = TERMINAL, timeout: float = 90
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            try:
                run = self.run(run_id)
            except (httpx.HTTPError, AssertionError):
                return None  # the API may be restarting
            return run if run["status"] in statuses else None

        found: dict[str, Any] = wait_for(
            reached, timeout=timeout, what=f"run {run_id} to reach {sorted(statuses)}", interval=0.2
        )
        return found

    def attempts(self, run_id: int) -> list[dict[str, Any]]:
        body = check(self.team.get(f"/api/v1/runs/{run_id}/attempts"), 200)
        attempts: list[dict[str, Any]] = body["attempts"]
        return attempts

    def lines(self, run_id: int) -> list[str]:
        body = check(self.team.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10_000}), 200)
        return [entry["line"] for entry in body["logs"]]

    def online_runners(self, environment: str = "default") -> set[str]:
        body = check(self.team.get("/api/v1/admin/runners", params={"limit": 200}), 200)
        return {
            r["name"]
            for r in body["runners"]
            if r["status"] == "online" and r["environment"] == environment
        }

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            try:
                return self.http.get("/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=timeout, what="the API to answer /ready", interval=0.2)


def _missing_images(
    engine: docker.DockerClient, tag: str, names: tuple[str, ...], *extra: str
) -> list[str]:
    missing = []
    for image in (*(f"{name}:{tag}" for name in names), *extra):
        try:
            engine.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    return missing


def bring_up(
    folder: Path,
    profiles: list[str] | None = None,
    runners: int = 2,
    lease_ttl: str = "6s",
    image_tag: str = "latest",
    env: dict[str, str] | None = None,
    postgres: bool = False,
    postgres_images: bool = False,
) -> Stack:
    """A stack of ``image_tag`` images (``previous``: deploy/offline/build-previous-images.sh
    builds them); ``env`` adds to (or overrides) the env file's settings. ``postgres``
    layers compose.postgres.yaml over compose.yaml: PostgreSQL, the proxy in front of
    the API replicas (``MINITOWER_API_REPLICAS`` in ``env``); ``postgres_images`` only
    requires its images, for a test that layers it later (``layer_postgres``)."""
    engine = docker.from_env()
    names = IMAGES + (POSTGRES_STACK_IMAGES if postgres or postgres_images else ())
    missing = _missing_images(engine, image_tag, names, *([WORKLOAD_IMAGE] if profiles else []))
    if missing:
        script = "build-previous-images.sh" if image_tag == "previous" else "build-images.sh"
        docker_prerequisite_missing(
            f"images {missing} are missing: run deploy/offline/{script} first"
        )
    project = f"mt-e2e-{secrets.token_hex(3)}"
    port = free_port()
    override = folder / "compose.override.yaml"
    override.write_text(f"name: {project}\n")
    env_file = folder / "e2e.env"
    settings = {
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "MINITOWER_PORT": str(port),
        "MINITOWER_RUNNERS": str(runners),
        "MINITOWER_LEASE_TTL": lease_ttl,
        "MINITOWER_EXPIRY_CHECK_INTERVAL": "1s",
        "MINITOWER_HEARTBEAT_INTERVAL": "1s",
        "MINITOWER_DRAIN_TIMEOUT": "10s",
        "MINITOWER_KILL_GRACE_PERIOD": "2s",
        "MINITOWER_RUNNER_STOP_GRACE": "20s",
        "MINITOWER_RUNNER_IMAGE": WORKLOAD_IMAGE,
        "MINITOWER_IMAGE_TAG": image_tag,
        **({"MINITOWER_POSTGRES_PASSWORD": POSTGRES_PASSWORD} if postgres else {}),
        **(env or {}),
    }
    files = [
        str(ROOT / "compose.yaml"),
        *([str(ROOT / "compose.postgres.yaml")] if postgres else []),
    ]
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    compose = DockerCompose(
        context=ROOT,
        compose_file_name=[*files, str(override)],
        env_file=str(env_file),
        profiles=profiles,
        wait=True,
    )
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=45)
    try:
        compose.start()
        stack = Stack(
            compose=compose,
            project=project,
            url=url,
            http=http,
            team=TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN),
            engine=engine,
            compose_file=":".join([*files, str(override)]),
            env_file=str(env_file),
        )
        wait_for(
            lambda: len(stack.online_runners()) >= runners,
            timeout=60,
            what=f"{runners} runners to register",
            interval=0.2,
        )
    except BaseException:
        # A stack that came up half-way is still a stack: take it down with its volumes.
        http.close()
        compose.stop(down=True)
        raise
    return stack


def layer_postgres(stack: Stack) -> None:
    """The stack's files from now on include compose.postgres.yaml (a runbook switched it
    to the PostgreSQL stack): its runbook steps and its tear-down act on that."""
    files = stack.compose_file.split(":")
    layered = [files[0], str(ROOT / "compose.postgres.yaml"), *files[1:]]
    stack.compose.compose_file_name = layered
    stack.compose_file = ":".join(layered)


def tear_down(stack: Stack) -> None:
    stack.http.close()
    stack.compose.stop(down=True)  # and its volumes
    leftovers = stack.engine.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={stack.project}"}
    )
    assert leftovers == [], f"containers left behind: {leftovers}"


def no_restart(container: Container) -> None:
    """So that a container killed by a test stays dead (compose restarts it otherwise)."""
    container.update(restart_policy={"Name": "no"})
