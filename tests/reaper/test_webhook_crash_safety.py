"""At least once, nothing lost: a real ``minitowerd`` is SIGKILLed right after it
acknowledged the changes that make events, before any delivery loop ran; two real
``minitower-reaper`` processes started afterwards deliver every expected event (each at
least once, duplicates only by id) and nothing else."""

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import Database
from tests.support.processes import LiveApi, start_reaper
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow

REAPER_ENV = {
    "MINITOWER_WEBHOOK_ALLOW_PRIVATE": "true",
    "MINITOWER_WEBHOOK_BACKOFF_BASE": "0.2s",
    "MINITOWER_WEBHOOK_POLL_INTERVAL": "0.1s",
}


def test_events_survive_an_api_killed_after_acknowledging(
    tmp_path: Path,
    database: Database,
    hello_archive: bytes,
    make_live_api: Callable[[dict[str, str]], LiveApi],
) -> None:
    api = make_live_api({"MINITOWER_WEBHOOK_ALLOW_PRIVATE": "true"})
    # The receiver fails every third request: retries are part of the story.
    with webhook_receiver(script=[200, 200, 500] * 3) as receiver:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            team.deploy("hello", hello_archive)
            events = ["run.failed", "run.cancelled", "run.dead"]
            check(team.post("/api/v1/webhooks", json={"url": receiver.url, "events": events}), 201)
            runner = RunnerClient.register(http, "runner-1", REGISTRATION_TOKEN)
            expected: set[tuple[str, int]] = set()
            for _ in range(2):
                run = team.create_run("hello")
                check(team.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
                expected.add(("run.cancelled", run["run_id"]))
            # A completed run: not subscribed, never sent.
            completed = team.create_run("hello")
            lease = runner.lease()
            assert lease is not None and lease.run_id == completed["run_id"]
            check(runner.start(lease), 200)
            check(runner.result(lease, "completed", exit_code=0), 200)
            for _ in range(3):
                run = team.create_run("hello")
                lease = runner.lease()
                assert lease is not None and lease.run_id == run["run_id"]
                check(runner.start(lease), 200)
                check(runner.result(lease, "failed", exit_code=1, error_message="boom"), 200)
                expected.add(("run.failed", run["run_id"]))
            # Killed the moment the last result was acknowledged: no clean shutdown.
            api.proc.send_signal(signal.SIGKILL)
            api.proc.wait(timeout=10)
        assert receiver.requests() == [], "nothing is sent before a delivery loop runs"

        reapers = [start_reaper(tmp_path, database, REAPER_ENV, f"reaper-{i}") for i in (1, 2)]
        try:
            deadline = time.monotonic() + 30
            received: set[tuple[str, int]] = set()
            while received != expected and time.monotonic() < deadline:
                received = {
                    (body["type"], body["data"]["run"]["id"])
                    for body in (json.loads(r.body) for r in receiver.requests())
                }
                time.sleep(0.1)
            # Give a stray extra delivery the chance to show up before judging.
            time.sleep(1.0)
        finally:
            for reaper in reapers:
                assert reaper.stop(timeout=15) == 0, reaper.log()
    bodies = [json.loads(r.body) for r in receiver.requests()]
    assert {(b["type"], b["data"]["run"]["id"]) for b in bodies} == expected
    by_id: dict[str, tuple[str, int]] = {}
    for body in bodies:
        key = (body["type"], body["data"]["run"]["id"])
        assert by_id.setdefault(body["id"], key) == key, "one id, one event"
    assert len(by_id) == len(expected), "each event has exactly one id"
    for reaper in reapers:
        assert "Traceback" not in reaper.log(), reaper.log()
