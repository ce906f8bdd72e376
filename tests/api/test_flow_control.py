"""Delayed runs, retry policies and concurrency limits through the HTTP API."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api_assertions import expect_error
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_delayed_run_waits_then_wakes_a_long_polling_runner(
    make_client: ClientFactory, hello_archive: bytes
) -> None:
    # A poll interval longer than the wait: only the due-time wake can hand the run over.
    client = make_client(lease_poll_interval=20.0)
    team = TeamClient.bootstrap(client, "delays", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    runner = RunnerClient.register(client, "patient", REGISTRATION_TOKEN)
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    run = team.create_run("hello", scheduled_for=_rfc3339(due))
    assert run["status"] == "queued"
    assert run["scheduled_for"] == run["not_before"] == _rfc3339(due)
    assert runner.lease() is None
    began = time.monotonic()
    lease = runner.lease(wait_seconds=10)
    waited = time.monotonic() - began
    assert lease is not None and lease.run_id == run["run_id"]
    assert datetime.now(UTC) >= due
    assert waited < 5, waited


def test_retry_policy_defaults_come_from_the_towerfile_and_runs_override_them(
    team: TeamClient,
) -> None:
    towerfile = HELLO_TOWERFILE.replace(
        'script = "main.py"\n',
        'script = "main.py"\n\n[app.retry]\nmax_retries = 2\nretry_on = ["lost", "failed"]\n'
        "retry_delay = 30\n",
    )
    version = team.deploy("hello", make_archive({"Towerfile": towerfile, "main.py": ""}))
    assert version["retry_policy"] == {
        "max_retries": 2,
        "retry_on": ["lost", "failed"],
        "retry_delay": 30.0,
    }
    run = team.create_run("hello")
    assert (run["max_retries"], run["retry_on"], run["retry_delay"]) == (2, ["lost", "failed"], 30)
    assert (run["retry_backoff"], run["retry_max_delay"]) == (2.0, 3600.0)
    run = team.create_run("hello", max_retries=0, retry_on=["timeout"], retry_backoff=1.5)
    assert (run["max_retries"], run["retry_on"], run["retry_backoff"]) == (0, ["timeout"], 1.5)


def test_a_failed_run_is_retried_over_http_when_its_policy_says_so(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello", max_retries=1, retry_on=["failed"])
    lease = runner.lease()
    assert lease is not None
    check(runner.start(lease), 200)
    accepted = check(runner.result(lease, "failed", exit_code=3), 200)
    assert (accepted["status"], accepted["run_status"]) == ("failed", "queued")
    again = runner.lease()
    assert again is not None and again.body["attempt_no"] == 2
    check(runner.start(again), 200)
    check(runner.result(again, "failed", exit_code=3), 200)
    final = team.run(run["run_id"])
    assert (final["status"], final["retry_count"], final["exit_code"]) == ("failed", 1, 3)
    attempts = check(team.get(f"/api/v1/runs/{run['run_id']}/attempts"), 200)["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "failed"]


@pytest.mark.parametrize(
    "body",
    [
        {"scheduled_for": "2026-12-03T10:00:00"},  # no offset
        {"scheduled_for": "tomorrow"},
        {"scheduled_for": 1764756000},
        {"retry_delay": -1},
        {"retry_delay": 10**12},
        {"retry_max_delay": -0.5},
        {"retry_backoff": 0.5},
        {"retry_backoff": 11},
        {"retry_on": ["crash"]},
        {"retry_on": ["failed", "failed"]},
        {"retry_on": "failed"},
        {"retry_on": None},
        {"retry_delay": "30s"},
    ],
)
def test_bad_delays_and_policies_are_400(
    team: TeamClient, deployed: dict[str, Any], body: dict[str, Any]
) -> None:
    expect_error(team.post("/api/v1/apps/hello/runs", json=body), 400, "invalid_request")
    assert check(team.get("/api/v1/runs"), 200)["runs"] == []


def test_app_concurrency_limit_is_patched_shown_and_lifted(
    team: TeamClient,
    other_team: TeamClient,
    runner: RunnerClient,
    runner2: RunnerClient,
    deployed: dict[str, Any],
) -> None:
    app = check(team.patch("/api/v1/apps/hello", json={"max_concurrent_runs": 1}), 200)
    assert app["max_concurrent_runs"] == 1
    # Leaving the key out keeps the limit; other fields change alone.
    app = check(team.patch("/api/v1/apps/hello", json={"description": "x"}), 200)
    assert app["max_concurrent_runs"] == 1
    first, second = team.create_run("hello"), team.create_run("hello")
    lease = runner.lease()
    assert lease is not None and lease.run_id == first["run_id"]
    assert runner2.lease() is None
    app = check(team.patch("/api/v1/apps/hello", json={"max_concurrent_runs": None}), 200)
    assert app["max_concurrent_runs"] is None
    lease2 = runner2.lease()
    assert lease2 is not None and lease2.run_id == second["run_id"]
    for bad in (0, -1, 10**6, "2", 1.5, True):
        expect_error(
            team.patch("/api/v1/apps/hello", json={"max_concurrent_runs": bad}),
            400,
            "invalid_request",
        )
    expect_error(
        other_team.patch("/api/v1/apps/hello", json={"max_concurrent_runs": 1}), 404, "not_found"
    )


def test_environment_limits_are_an_admin_setting(
    team: TeamClient, member: TeamClient, client: TestClient
) -> None:
    expect_error(
        member.patch("/api/v1/environments/gpu", json={"max_concurrent_runs": 2}), 403, "forbidden"
    )
    env = check(team.patch("/api/v1/environments/gpu", json={"max_concurrent_runs": 2}), 200)
    assert (env["name"], env["max_concurrent_runs"]) == ("gpu", 2)
    listed = check(member.get("/api/v1/environments"), 200)["environments"]
    assert [(e["name"], e["max_concurrent_runs"]) for e in listed] == [
        ("default", None),
        ("gpu", 2),
    ]
    for body in ({"max_concurrent_runs": 0}, {}, {"max_concurrent_runs": 2, "x": 1}):
        expect_error(team.patch("/api/v1/environments/gpu", json=body), 400, "invalid_request")
    expect_error(
        team.patch("/api/v1/environments/GPU!", json={"max_concurrent_runs": 1}),
        400,
        "invalid_request",
    )
    lifted = check(team.patch("/api/v1/environments/gpu", json={"max_concurrent_runs": None}), 200)
    assert lifted["max_concurrent_runs"] is None
    # Another team sees only its own environments.
    other = TeamClient.bootstrap(client, "other", BOOTSTRAP_TOKEN)
    theirs = check(other.get("/api/v1/environments"), 200)["environments"]
    assert [(e["name"], e["max_concurrent_runs"]) for e in theirs] == [("default", None)]
