"""The README's "Schedules and retries" examples, run as written against a live API."""

from pathlib import Path

import pytest

from minitower_shared.towerfile import parse_towerfile
from tests.support import readme
from tests.support.archives import make_archive
from tests.support.clients import check

pytestmark = pytest.mark.slow


def test_the_readme_curl_examples_work(tmp_path: Path) -> None:
    (block,) = readme.blocks("Schedules and retries")
    with readme.live_team(tmp_path) as (url, team):
        team.deploy(
            "hello",
            make_archive(
                {"Towerfile": '[app]\nname = "hello"\nscript = "main.py"\n', "main.py": ""}
            ),
        )
        readme.run_block(block, {"API": url, "TOKEN": team.token})
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


def test_the_readme_towerfile_example_parses() -> None:
    (block,) = readme.blocks("Schedules and retries", "toml")
    towerfile = parse_towerfile(block)
    assert (towerfile.schedule, towerfile.timezone) == ("0 3 * * *", "Europe/Berlin")
    assert towerfile.retry == {
        "max_retries": 2,
        "retry_on": ["failed", "timeout"],
        "retry_delay": 60.0,
    }
