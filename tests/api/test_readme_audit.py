"""The README's "Audit log" examples, run as written against a live API (the curl
calls and the CLI's)."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from minitower_shared.migrate import upgrade_to_head
from tests.cli.conftest import clean_environment
from tests.conftest import BOOTSTRAP_TOKEN
from tests.support import readme
from tests.support.clients import TeamClient, check
from tests.support.processes import script, start_api

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
    db_path = tmp_path / "db" / "minitower.db"
    upgrade_to_head(db_path)
    api = start_api(tmp_path, db_path, {"MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN})
    home = tmp_path / "home"
    home.mkdir()
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            env = {
                **clean_environment(home),
                "API": api.url,
                "TOKEN": team.token,
                "MINITOWER_SERVER_URL": api.url,
                "MINITOWER_API_TOKEN": team.token,
                "PATH": f"{Path(script('minitower')).parent}:{os.environ['PATH']}",
            }
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr + done.stdout
            # The third answer is the app's audit trail, newest first.
            answers = _leading_json(done.stdout)
            trail = answers[2]["events"]
            assert [e["action"] for e in trail] == ["app.disable", "app.create"]
            assert answers[3]["events"] == []  # no run changed
            assert "app.disable" in done.stdout and "app:etl" in done.stdout  # the CLI table
            assert done.stdout.rstrip().endswith("[]")  # the CLI's --json: no run rows
            events = check(team.get("/api/v1/audit"), 200)["events"]
            assert [e["action"] for e in events] == ["app.disable", "app.create", "team.bootstrap"]
    finally:
        api.stop()
