"""The README's "Schedules and retries" examples, run as written against a live API."""

import os
import subprocess
from pathlib import Path

import pytest

from minitower_shared.migrate import upgrade_to_head
from minitower_shared.towerfile import parse_towerfile
from tests.conftest import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN, make_archive
from tests.support import readme
from tests.support.clients import TeamClient, check
from tests.support.processes import start_api

pytestmark = pytest.mark.slow


def test_the_readme_curl_examples_work(tmp_path: Path) -> None:
    (block,) = readme.blocks("Schedules and retries")
    db_path = tmp_path / "db" / "minitower.db"
    upgrade_to_head(db_path)
    api = start_api(
        tmp_path,
        db_path,
        {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        },
    )
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            team.deploy(
                "hello",
                make_archive(
                    {"Towerfile": '[app]\nname = "hello"\nscript = "main.py"\n', "main.py": ""}
                ),
            )
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                env={**os.environ, "API": api.url, "TOKEN": team.token},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr + done.stdout
            (schedule,) = check(team.get("/api/v1/apps/hello/schedules"), 200)["schedules"]
            assert (schedule["name"], schedule["timezone"], schedule["overlap"]) == (
                "nightly",
                "Europe/Berlin",
                "skip",
            )
            (run,) = check(team.get("/api/v1/runs"), 200)["runs"]
            assert run["status"] == "queued" and run["not_before"] is not None
            assert (run["max_retries"], run["retry_on"], run["retry_delay"]) == (
                3,
                ["failed", "lost"],
                30.0,
            )
            assert check(team.get("/api/v1/apps/hello"), 200)["max_concurrent_runs"] == 1
            environments = check(team.get("/api/v1/environments"), 200)["environments"]
            assert {e["name"]: e["max_concurrent_runs"] for e in environments} == {"default": 4}
    finally:
        api.stop()


def test_the_readme_towerfile_example_parses() -> None:
    (block,) = readme.blocks("Schedules and retries", "toml")
    towerfile = parse_towerfile(block)
    assert (towerfile.schedule, towerfile.timezone) == ("0 3 * * *", "Europe/Berlin")
    assert towerfile.retry == {
        "max_retries": 2,
        "retry_on": ["failed", "timeout"],
        "retry_delay": 60.0,
    }
