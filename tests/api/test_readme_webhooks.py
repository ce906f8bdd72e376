"""The README's "Notifications (webhooks)" curl examples, run as written against a live
API (the receiver's host name is resolved only when sending, so creating it works
offline)."""

import os
import subprocess
from pathlib import Path

import pytest

from minitower_shared.migrate import upgrade_to_head
from tests.conftest import BOOTSTRAP_TOKEN, HELLO_TOWERFILE, REGISTRATION_TOKEN, make_archive
from tests.support import readme
from tests.support.clients import TeamClient, check
from tests.support.processes import start_api

pytestmark = pytest.mark.slow


def test_the_readme_curl_examples_work(tmp_path: Path) -> None:
    (block,) = readme.blocks("Notifications (webhooks)")
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
            team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": ""}))
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                env={**os.environ, "API": api.url, "TOKEN": team.token},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr + done.stdout
            assert '"secret":"whsec_' in done.stdout.replace(" ", "")
            (hook,) = check(team.get("/api/v1/webhooks"), 200)["webhooks"]
            assert (hook["webhook_id"], hook["app"], hook["events"]) == (
                1,
                "hello",
                ["run.dead", "run.failed"],
            )
            assert '"type":"ping"' in done.stdout.replace(" ", "")
    finally:
        api.stop()
