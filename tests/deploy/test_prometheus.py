"""deploy/prometheus and deploy/grafana checked by Prometheus's own promtool (Debian's
``prometheus`` package; scripts/install-promtool), and every metric they name checked
against a live minitowerd's /metrics."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.docker_engine import docker_prerequisite_missing
from tests.support.processes import LiveApi, spawn
from tests.support.tokens import REGISTRATION_TOKEN

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "minitower-dashboard.json"
# The runbooks of issue 6 (deploy/runbooks/, written beside this directory).
RUNBOOKS = {
    "stuck-queued.md",
    "stuck-leased-running.md",
    "database-locked.md",
    "disk-full.md",
    "install.md",
    "upgrade.md",
    "scale-and-drain.md",
    "backup-restore.md",
    "rotate-tokens.md",
    "securing.md",
    "webhooks-failing.md",
}
METRIC_NAME = re.compile(r"\b(minitower_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        docker_prerequisite_missing(
            "promtool not found: install it with scripts/install-promtool "
            "(Debian's prometheus package, as root)"
        )
    return found


def run_promtool(promtool: str, *args: str) -> str:
    done = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_scrape_config_is_valid(promtool: str, config: str) -> None:
    output = run_promtool(promtool, "check", "config", config)
    assert "1 rule files found" in output


def test_alert_rules_are_valid(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "check", "rules", "alerts.yml")


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", "alerts_test.yml")


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_unit_tested_and_names_its_runbook() -> None:
    tested = (PROMETHEUS / "alerts_test.yml").read_text()
    for rule in alert_rules():
        assert f"alertname: {rule['alert']}" in tested, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        runbook = annotations["runbook_url"]
        assert runbook.startswith("deploy/runbooks/"), runbook
        assert runbook.removeprefix("deploy/runbooks/") in RUNBOOKS, runbook


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {item["name"]: item for item in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    expressions = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        expressions.extend(target["expr"] for target in panel["targets"])
    return expressions


def live_sample_names(
    api: LiveApi, hello_archive: bytes, tmp_path: Path, db_path: Path
) -> set[str]:
    """What a live API exposes once runs were created, leased and finished, and a real
    reaper made a pass."""
    with api.client() as http:
        team = TeamClient.bootstrap(http, "acme", api.env["MINITOWER_BOOTSTRAP_TOKEN"])
        team.deploy("hello", hello_archive)
        runner = RunnerClient.register(http, "runner-1", REGISTRATION_TOKEN)
        team.create_run("hello")
        team.create_run("hello", environment="gpu")
        lease = runner.lease()
        assert lease is not None
        check(runner.start(lease), 200)
        check(runner.result(lease, "failed", exit_code=1), 200)
        reaper = spawn(
            "minitower-reaper", ["--once"], {"MINITOWER_DB_PATH": str(db_path)}, tmp_path / "r.log"
        )
        assert reaper.proc.wait(timeout=30) == 0, reaper.log()
        response = http.get("/metrics")
        assert response.status_code == 200, response.text
    return {
        sample.name
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_every_metric_named_in_alerts_and_dashboard_is_exposed(
    live_api: LiveApi, hello_archive: bytes, tmp_path: Path, db_path: Path
) -> None:
    exposed = live_sample_names(live_api, hello_archive, tmp_path, db_path)
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in METRIC_NAME.findall(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_expressions():
        for name in METRIC_NAME.findall(expr):
            used.setdefault(name, set()).add("dashboard")
    assert len(used) >= 15
    missing = {name: sorted(where) for name, where in used.items() if name not in exposed}
    assert missing == {}, f"named but not exposed by /metrics: {missing}"
