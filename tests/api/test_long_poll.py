"""Long polls against a real server process: no run is handed to a runner that hung up."""

import time
from pathlib import Path

import httpx

from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient
from tests.support.databases import Database
from tests.support.processes import start_api
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN


def test_a_runner_that_hung_up_is_not_handed_a_run(tmp_path: Path, own_database: Database) -> None:
    api = start_api(
        tmp_path,
        own_database,
        {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            "MINITOWER_LEASE_POLL_INTERVAL": "0.2s",
        },
    )
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": "pass\n"}))
            runner = RunnerClient.register(http, "quitter", REGISTRATION_TOKEN)
        # The runner gives up after 0.5 s of a 10 s long poll.
        with httpx.Client(base_url=api.url, timeout=0.5) as impatient:
            try:
                impatient.post(
                    "/api/v1/runs/lease",
                    json={"wait_seconds": 10},
                    headers={"Authorization": f"Bearer {runner.token}"},
                )
            except httpx.ReadTimeout:
                pass
            else:
                raise AssertionError("the long poll answered before any run existed")
        with api.client() as http:
            team.http = http
            run = team.create_run("hello")
            time.sleep(1.5)
            assert team.run(run["run_id"])["status"] == "queued"
    finally:
        api.stop()
