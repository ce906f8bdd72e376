"""The README's "Notifications (webhooks)" curl examples, run as written against a live
API (the receiver's host name is resolved only when sending, so creating it works
offline)."""

from pathlib import Path

import pytest

from tests.support import readme
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import check

pytestmark = pytest.mark.slow


def test_the_readme_curl_examples_work(tmp_path: Path) -> None:
    (block,) = readme.blocks("Notifications (webhooks)")
    with readme.live_team(tmp_path) as (url, team):
        team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": ""}))
        stdout = readme.run_block(block, {"API": url, "TOKEN": team.token})
        assert '"secret":"whsec_' in stdout.replace(" ", "")
        (hook,) = check(team.get("/api/v1/webhooks"), 200)["webhooks"]
        assert (hook["webhook_id"], hook["app"], hook["events"]) == (
            1,
            "hello",
            ["run.dead", "run.failed"],
        )
        assert '"type":"ping"' in stdout.replace(" ", "")
