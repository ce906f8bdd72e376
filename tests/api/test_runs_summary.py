"""GET /api/v1/runs/summary (the reference's counts and the console's overview) and
POST /api/v1/runs/{run_id}/rerun."""

from typing import Any

from fastapi.testclient import TestClient

from tests.support.api_assertions import expect_error, finish
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient, check


def summary(team: TeamClient) -> dict[str, Any]:
    body: dict[str, Any] = check(team.get("/api/v1/runs/summary"), 200)
    return body


def test_an_empty_team_has_zero_everywhere(team: TeamClient) -> None:
    assert summary(team) == {
        "total_runs": 0,
        "active_runs": 0,
        "queued_runs": 0,
        "terminal_runs": 0,
        "by_status": {},
        "last_24h_by_status": {},
        "queued_by_environment": [],
        "runners_online": 0,
        "recent_failures": [],
    }


def test_counts_queue_and_failures(
    team: TeamClient,
    other_team: TeamClient,
    runner: RunnerClient,
    deployed: dict[str, Any],
    hello_archive: bytes,
) -> None:
    failed = team.create_run("hello")
    finish(runner, runner.lease(), "failed", exit_code=3)
    completed = team.create_run("hello")
    finish(runner, runner.lease(), "completed", exit_code=0)
    running = team.create_run("hello")
    check(runner.start(runner.lease()), 200)
    team.create_run("hello")
    team.create_run("hello", environment="gpu")
    # Another team's runs count for nothing here.
    other_team.deploy("hello", hello_archive)
    other_team.create_run("hello")
    other_team.create_run("hello")

    body = summary(team)
    assert body["total_runs"] == 5
    assert body["active_runs"] == 1
    assert body["queued_runs"] == 2
    assert body["terminal_runs"] == 2
    assert body["by_status"] == {"failed": 1, "completed": 1, "running": 1, "queued": 2}
    assert body["last_24h_by_status"] == body["by_status"]
    queued = {q["environment"]: q["queued"] for q in body["queued_by_environment"]}
    assert queued == {"default": 1, "gpu": 1}
    assert all(q["oldest_queued_at"].endswith("Z") for q in body["queued_by_environment"])
    assert body["runners_online"] == 1
    assert [r["run_id"] for r in body["recent_failures"]] == [failed["run_id"]]
    assert body["recent_failures"][0]["exit_code"] == 3
    assert completed["run_id"] != running["run_id"]


def test_summary_needs_a_token(client: TestClient) -> None:
    expect_error(client.get("/api/v1/runs/summary"), 401, "unauthorized")


def test_rerun_queues_the_same_input_and_links_back(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    origin = team.create_run(
        "hello",
        input={"greeting": "hey", "count": 3},
        priority=5,
        max_retries=2,
        environment="gpu",
    )
    rerun = check(team.post(f"/api/v1/runs/{origin['run_id']}/rerun"), 201)
    assert rerun["run_id"] != origin["run_id"]
    assert rerun["rerun_of"] == origin["run_id"]
    assert origin["rerun_of"] is None
    for key in ("input", "priority", "max_retries", "environment", "version_no", "app_slug"):
        assert rerun[key] == origin[key], key
    assert rerun["status"] == "queued"
    assert team.run(rerun["run_id"])["rerun_of"] == origin["run_id"]


def test_rerun_on_another_version_checks_the_input_against_it(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    origin = team.create_run("hello", input={"count": 2})
    strict = HELLO_TOWERFILE.replace('type = "integer"\ndefault = 1', 'type = "string"')
    team.deploy("hello", make_archive({"Towerfile": strict, "main.py": ""}))
    error = expect_error(
        team.post(f"/api/v1/runs/{origin['run_id']}/rerun", json={"version_no": 2}),
        400,
        "invalid_request",
    )
    assert "is not of type 'string'" in error["message"]
    on_v1 = check(team.post(f"/api/v1/runs/{origin['run_id']}/rerun", json={"version_no": 1}), 201)
    assert on_v1["version_no"] == 1
    expect_error(
        team.post(f"/api/v1/runs/{origin['run_id']}/rerun", json={"version_no": 9}),
        404,
        "not_found",
    )


def test_rerun_refusals(
    team: TeamClient, other_team: TeamClient, member: TeamClient, deployed: dict[str, Any]
) -> None:
    origin = team.create_run("hello")
    # Another team's run is no run at all.
    expect_error(other_team.post(f"/api/v1/runs/{origin['run_id']}/rerun"), 404, "not_found")
    expect_error(team.post("/api/v1/runs/999999/rerun"), 404, "not_found")
    expect_error(
        team.post(f"/api/v1/runs/{origin['run_id']}/rerun", json={"input": {}}),
        400,
        "invalid_request",
    )
    check(team.patch("/api/v1/apps/hello", json={"disabled": True}), 200)
    expect_error(team.post(f"/api/v1/runs/{origin['run_id']}/rerun"), 409, "app_disabled")
    # Members may run apps, so they may rerun too.
    check(team.patch("/api/v1/apps/hello", json={"disabled": False}), 200)
    check(member.post(f"/api/v1/runs/{origin['run_id']}/rerun"), 201)
