"""deploy/runbooks/webhooks-failing.md, local processes: its steps run as written
against a real ``minitowerd`` and ``minitower-reaper`` delivering to a receiver on
127.0.0.1 that fails, then is fixed."""

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.processes import LiveApi, start_reaper
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow


def test_inspect_fix_ping_and_pause(
    tmp_path: Path,
    db_path: Path,
    hello_archive: bytes,
    make_live_api: Callable[[dict[str, str]], LiveApi],
) -> None:
    api = make_live_api({"MINITOWER_WEBHOOK_ALLOW_PRIVATE": "true"})
    with webhook_receiver(script=[500, 500]) as receiver, api.client() as http:
        team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        team.deploy("hello", hello_archive)
        hook = check(
            team.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["run.failed"]}),
            201,
        )
        runner = RunnerClient.register(http, "runner-1", REGISTRATION_TOKEN)
        team.create_run("hello")
        lease = runner.lease()
        assert lease is not None
        check(runner.start(lease), 200)
        check(runner.result(lease, "failed", exit_code=1), 200)
        env = {
            "MINITOWER_SERVER_URL": api.url,
            "MINITOWER_API_TOKEN": team.token,
            "WEBHOOK_ID": str(hook["webhook_id"]),
        }
        # A reaper whose retries come after a second: the failures are there to inspect.
        reaper = start_reaper(
            tmp_path,
            db_path,
            {
                "MINITOWER_WEBHOOK_ALLOW_PRIVATE": "true",
                "MINITOWER_WEBHOOK_BACKOFF_BASE": "2s",
                "MINITOWER_WEBHOOK_POLL_INTERVAL": "0.1s",
            },
            "reaper-1",
        )
        try:
            listed = json.loads(run_step("webhooks-failing", "list-webhooks", env).stdout)
            assert [w["webhook_id"] for w in listed["webhooks"]] == [hook["webhook_id"]]
            receiver.wait_for(1)
            time.sleep(0.3)
            attempts = json.loads(run_step("webhooks-failing", "inspect-deliveries", env).stdout)
            newest = attempts["deliveries"][0]
            assert newest["status_code"] == 500 and not newest["succeeded"]
            assert newest["delivery_status"] == "pending" and "500" in newest["error"]
            # The receiver is fixed after its second 500; the ping goes through.
            queued = json.loads(run_step("webhooks-failing", "send-test-ping", env).stdout)
            deadline = time.monotonic() + 30
            received: set[str] = set()
            while queued["event_id"] not in received and time.monotonic() < deadline:
                received = {json.loads(r.body)["id"] for r in receiver.requests()}
                time.sleep(0.1)
            assert queued["event_id"] in received
            paused = json.loads(run_step("webhooks-failing", "pause-webhook", env).stdout)
            assert paused["enabled"] is False
        finally:
            assert reaper.stop(timeout=15) == 0, reaper.log()
