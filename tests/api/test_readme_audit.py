"""The README's "Audit log" examples, run as written against a live API (the curl
calls and the CLI's)."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support import readme
from tests.support.cli import clean_environment
from tests.support.clients import check
from tests.support.processes import script

pytestmark = pytest.mark.slow


def _leading_json(text: str) -> list[dict[str, Any]]:
    """The JSON objects curl printed back to back (no newline between them)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text) and text[at] == "{":
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


def test_the_readme_audit_examples_work(tmp_path: Path) -> None:
    (block,) = readme.blocks("Audit log")
    home = tmp_path / "home"
    home.mkdir()
    with readme.live_team(tmp_path) as (url, team):
        env = {
            **clean_environment(home),
            "API": url,
            "TOKEN": team.token,
            "MINITOWER_SERVER_URL": url,
            "MINITOWER_API_TOKEN": team.token,
            "PATH": f"{Path(script('minitower')).parent}:{os.environ['PATH']}",
        }
        stdout = readme.run_block(block, env, inherit=False)
        # The third answer is the app's audit trail, newest first.
        answers = _leading_json(stdout)
        trail = answers[2]["events"]
        assert [e["action"] for e in trail] == ["app.disable", "app.create"]
        assert answers[3]["events"] == []  # no run changed
        assert "app.disable" in stdout and "app:etl" in stdout  # the CLI table
        assert stdout.rstrip().endswith("[]")  # the CLI's --json: no run rows
        events = check(team.get("/api/v1/audit"), 200)["events"]
        assert [e["action"] for e in events] == ["app.disable", "app.create", "team.bootstrap"]
