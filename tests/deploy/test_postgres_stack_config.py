"""compose.postgres.yaml over compose.yaml, and deploy/swarm/stack.yaml, checked without a
Docker engine: the files as Compose resolves them (the real Compose v2 binary), and the
Swarm stack against the compose one and the settings classes. The stacks themselves run
in tests/e2e/test_postgres_stack.py and test_swarm_stack.py."""

import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.deploy_files import PROGRAMS, ROOT, SECRETS, compose_resolved, setting_variables

POSTGRES_SECRETS = {**SECRETS, "MINITOWER_POSTGRES_PASSWORD": "p" * 24}
STACK = ROOT / "deploy" / "swarm" / "stack.yaml"
# Variables of other programs: uvicorn's trusted proxies.
NOT_SETTINGS = {"FORWARDED_ALLOW_IPS"}


def resolved(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return compose_resolved(("compose.yaml", "compose.postgres.yaml"), *args, env=env)


def config(env: dict[str, str] = POSTGRES_SECRETS) -> dict[str, Any]:
    done = resolved("config", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    services: dict[str, Any] = json.loads(done.stdout)["services"]
    return services


def test_the_services_and_what_waits_for_what() -> None:
    services = config()
    assert set(services) == {
        "postgres",
        "migrate",
        "api",
        "proxy",
        "reaper",
        "scheduler",
        "runner",
    }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert set(services["runner"]["depends_on"]) == {"proxy"}
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["reaper"]["deploy"]["replicas"] == 2
    scaled = config({**POSTGRES_SECRETS, "MINITOWER_API_REPLICAS": "3", "MINITOWER_REAPERS": "4"})
    assert (scaled["api"]["deploy"]["replicas"], scaled["reaper"]["deploy"]["replicas"]) == (3, 4)


def test_only_the_proxy_is_published_on_loopback_and_runners_use_it() -> None:
    services = config()
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    (port,) = services["proxy"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)
    assert services["runner"]["environment"]["MINITOWER_SERVER_URL"] == "http://proxy:8080"
    # The replicas trust X-Forwarded-For, which only the proxy reaches them with.
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"


def test_no_service_shares_a_volume_but_postgres_its_data() -> None:
    services = config()

    def volumes(name: str) -> set[str]:
        return {m["source"] for m in services[name].get("volumes", []) if m["type"] == "volume"}

    assert volumes("postgres") == {"pgdata"}
    for name in ("migrate", "api", "reaper", "scheduler", "proxy"):
        assert volumes(name) == set(), name
    assert volumes("runner") == {"venvs"}
    assert services["api"]["environment"]["MINITOWER_OBJECT_STORE"] == "postgres"
    # Uploads are received in the replica's own scratch, writable by its user.
    assert any(
        t.startswith("/var/lib/minitower/objects:uid=10001,") for t in services["api"]["tmpfs"]
    )


def test_the_database_goes_to_each_database_process_and_only_them() -> None:
    services = config()
    url = "postgresql+psycopg://minitower:" + "p" * 24 + "@postgres:5432/minitower"
    for name in ("migrate", "api", "reaper", "scheduler"):
        assert services[name]["environment"]["MINITOWER_DATABASE_URL"] == url, name
    for name in ("proxy", "runner", "postgres"):
        assert "MINITOWER_DATABASE_URL" not in (services[name].get("environment") or {}), name


def test_every_service_is_hardened_and_built_here() -> None:
    for name, service in config().items():
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True, name
        assert service["pull_policy"] == "never", name
        assert service["image"].startswith("minitower/"), name


def test_a_missing_database_password_is_named() -> None:
    done = resolved("config", env=SECRETS)
    assert done.returncode != 0
    assert "MINITOWER_POSTGRES_PASSWORD" in done.stderr and ".env.example" in done.stderr
    assert "MINITOWER_POSTGRES_PASSWORD=" in (ROOT / ".env.example").read_text()


def stack() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(STACK.read_text())["services"]
    return parsed


def test_the_swarm_stack_runs_what_compose_runs() -> None:
    swarm, composed = stack(), config()
    assert set(swarm) == set(composed)
    for name, service in swarm.items():
        assert service["image"].split(":")[0] == composed[name]["image"].split(":")[0], name
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
    assert sorted(swarm["runner"]["cap_add"]) == sorted(composed["runner"]["cap_add"])
    # Found by DNS round robin (Swarm's virtual IPs drop idle pooled connections).
    for name in ("postgres", "api", "proxy"):
        assert swarm[name]["deploy"]["endpoint_mode"] == "dnsrr", name
    assert swarm["proxy"]["ports"][0]["mode"] == "host"


@pytest.mark.parametrize("service", ["migrate", "api", "reaper", "scheduler", "runner"])
def test_every_swarm_variable_is_a_setting_of_the_process(service: str) -> None:
    spec = stack()[service]
    command = spec.get("command") or ["minitowerd"]
    words = " ".join(command).split()
    (program,) = [word for word in words if word in PROGRAMS]
    known = setting_variables(PROGRAMS[program]) | NOT_SETTINGS
    assert set(spec["environment"]) - known == set()
    # And every variable compose gives the service, Swarm gives it too.
    composed = set(config()[service].get("environment") or {})
    assert composed - set(spec["environment"]) == set()
