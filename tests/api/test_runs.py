"""Runs as a team sees them: create, list, get, attempts, cancel."""

from datetime import timedelta
from typing import Any

import pytest

from tests.support.api_assertions import (
    JSON,
    assert_timestamps,
    expect_error,
    finish,
    offset_page,
    walk_pages,
)
from tests.support.archives import make_archive
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.concurrency import run_in_threads
from tests.support.inprocess_api import ClientFactory, Sandbox
from tests.support.rows import Rows

RUN_KEYS = {
    "run_id",
    "app_id",
    "app_slug",
    "run_no",
    "version_no",
    "environment",
    "status",
    "input",
    "priority",
    "max_retries",
    "retry_count",
    "retry_on",
    "retry_delay",
    "retry_backoff",
    "retry_max_delay",
    "not_before",
    "schedule_id",
    "scheduled_for",
    "cancel_requested",
    "queued_at",
    "started_at",
    "finished_at",
    "exit_code",
    "error_message",
    "rerun_of",
}

REQUIRED_PARAM_SCHEMA = (
    '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}, '
    '"tag": {"type": "string", "default": "x"}}, "required": ["n"]}'
)


def post_run(team: TeamClient, app: str = "hello", **kwargs: Any) -> Any:
    return team.post(f"/api/v1/apps/{app}/runs", **kwargs)


def run_ids(body: dict[str, Any]) -> list[int]:
    return [run["run_id"] for run in body["runs"]]


# --- create -----------------------------------------------------------------------------


def test_create_queues_a_run_of_the_latest_version(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello", input={"greeting": "hey"})
    assert set(run) == RUN_KEYS
    assert run["status"] == "queued"
    assert run["app_slug"] == "hello"
    assert run["run_no"] == 1
    assert run["version_no"] == 1
    assert run["environment"] == "default"
    assert run["input"] == {"greeting": "hey", "count": 1}
    assert run["priority"] == 0
    assert run["max_retries"] == 0
    assert run["retry_count"] == 0
    assert run["cancel_requested"] is False
    assert_timestamps(run, "queued_at", "started_at", "finished_at")
    assert run["started_at"] is None and run["finished_at"] is None
    assert run["exit_code"] is None and run["error_message"] is None
    assert team.run(run["run_id"]) == run


def test_latest_version_by_default_or_the_one_asked_for(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    check(team.upload("hello", make_archive({"main.py": "v2"}), entrypoint="main.py"), 201)
    assert team.create_run("hello")["version_no"] == 2
    assert team.create_run("hello", version_no=1)["version_no"] == 1
    # Version 2 has no parameter schema: the input is taken as it is.
    assert team.create_run("hello", version_no=2, input={"x": 1})["input"] == {"x": 1}


def test_unknown_version_no_is_404(team: TeamClient, deployed: dict[str, Any]) -> None:
    expect_error(post_run(team, json={"version_no": 2}), 404, "not_found")
    expect_error(post_run(team, json={"version_no": 999_999}), 404, "not_found")


def test_app_without_versions_is_400_no_version(team: TeamClient) -> None:
    team.create_app("hello")
    expect_error(post_run(team, json={}), 400, "no_version")
    expect_error(post_run(team, json={"version_no": 1}), 404, "not_found")


def test_run_numbers_count_per_app(team: TeamClient, hello_archive: bytes) -> None:
    team.deploy("hello", hello_archive)
    team.deploy("other", hello_archive)
    assert [team.create_run("hello")["run_no"] for _ in range(3)] == [1, 2, 3]
    assert team.create_run("other")["run_no"] == 1


def test_an_empty_body_takes_every_default(team: TeamClient, deployed: dict[str, Any]) -> None:
    run = check(post_run(team), 201)
    assert run["input"] == {"greeting": "hello", "count": 1}
    assert run["priority"] == 0 and run["max_retries"] == 0
    assert run["environment"] == "default"


@pytest.mark.parametrize("max_retries", [0, 1, 100])
def test_max_retries_within_range(
    team: TeamClient, deployed: dict[str, Any], max_retries: int
) -> None:
    assert team.create_run("hello", max_retries=max_retries)["max_retries"] == max_retries


def test_priority_and_environment_are_kept(team: TeamClient, deployed: dict[str, Any]) -> None:
    run = team.create_run("hello", priority=-7, environment="gpu")
    assert run["priority"] == -7
    assert run["environment"] == "gpu"


@pytest.mark.parametrize(
    "body",
    [
        {"max_retries": -1},
        {"max_retries": 101},
        {"max_retries": "3"},
        {"max_retries": 1.5},
        {"max_retries": None},
        {"priority": "high"},
        {"priority": "5"},
        {"priority": True},
        {"priority": 2.5},
        {"priority": [1]},
        {"priority": 10**6},
        {"version_no": 0},
        {"version_no": -1},
        {"version_no": "1"},
        {"version_no": 1.5},
        {"input": "greeting=hi"},
        {"input": ["hi"]},
        {"input": None},
        {"input": 5},
        {"environment": "GPU"},
        {"environment": ""},
        {"environment": 5},
        {"environment": "a" * 65},
        {"inputs": {}},
        {"input": {}, "app": "hello"},
        {"version": 1},
        [],
        "run",
        5,
    ],
)
def test_invalid_body_is_400_never_422(sandbox: Sandbox, body: Any) -> None:
    before = check(sandbox.team.get("/api/v1/runs"), 200)
    error = expect_error(post_run(sandbox.team, json=body), 400, "invalid_request")
    assert error.get("details"), error
    assert check(sandbox.team.get("/api/v1/runs"), 200) == before


def test_parameter_defaults_fill_missing_keys(team: TeamClient, deployed: dict[str, Any]) -> None:
    assert team.create_run("hello", input={})["input"] == {"greeting": "hello", "count": 1}
    assert team.create_run("hello", input={"count": 3})["input"] == {
        "greeting": "hello",
        "count": 3,
    }
    # Keys the schema does not name are kept.
    assert team.create_run("hello", input={"extra": [1]})["input"] == {
        "greeting": "hello",
        "count": 1,
        "extra": [1],
    }


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"input": {"count": "three"}}, "$.count"),
        ({"input": {"count": 1.5}}, "$.count"),
        ({"input": {"greeting": 5}}, "$.greeting"),
        ({"input": {"greeting": None}}, "$.greeting"),
    ],
)
def test_input_failing_the_schema_is_400_with_details(
    sandbox: Sandbox, body: dict[str, Any], path: str
) -> None:
    before = check(sandbox.team.get("/api/v1/runs"), 200)
    error = expect_error(post_run(sandbox.team, json=body), 400, "invalid_request")
    assert [detail["path"] for detail in error["details"]] == [path]
    assert all(detail["message"] for detail in error["details"])
    assert check(sandbox.team.get("/api/v1/runs"), 200) == before


def test_required_parameters_and_form_schemas_are_enforced(team: TeamClient) -> None:
    team.create_app("hello")
    check(
        team.upload(
            "hello",
            make_archive({"main.py": ""}),
            entrypoint="main.py",
            params_schema=REQUIRED_PARAM_SCHEMA,
        ),
        201,
    )
    error = expect_error(post_run(team, json={}), 400, "invalid_request")
    assert "n" in error["details"][0]["message"]
    error = expect_error(post_run(team, json={"input": {"n": 0}}), 400, "invalid_request")
    assert error["details"][0]["path"] == "$.n"
    assert team.create_run("hello", input={"n": 2})["input"] == {"n": 2, "tag": "x"}


def test_several_schema_failures_are_all_listed(team: TeamClient, deployed: dict[str, Any]) -> None:
    error = expect_error(
        post_run(team, json={"input": {"count": "x", "greeting": 1}}), 400, "invalid_request"
    )
    assert sorted(detail["path"] for detail in error["details"]) == ["$.count", "$.greeting"]


def test_idempotency_key_returns_the_first_run(team: TeamClient, deployed: dict[str, Any]) -> None:
    headers = {"Idempotency-Key": "nightly-2026-11-27"}
    first = post_run(team, json={"input": {"count": 2}}, headers=headers)
    assert first.status_code == 201, first.text
    again = post_run(team, json={"input": {"count": 9}}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert len(check(team.get("/api/v1/runs"), 200)["runs"]) == 1

    other_key = post_run(team, json={}, headers={"Idempotency-Key": "another"})
    assert other_key.status_code == 201
    no_key = post_run(team, json={})
    assert no_key.status_code == 201
    assert len({first.json()["run_id"], other_key.json()["run_id"], no_key.json()["run_id"]}) == 3


def test_idempotency_key_replays_even_after_the_run_moved_on(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "k1"}
    first = check(post_run(team, json={}, headers=headers), 201)
    lease = runner.lease()
    assert lease is not None
    finish(runner, lease)
    again = check(post_run(team, json={}, headers=headers), 200)
    assert again["run_id"] == first["run_id"]
    assert again["status"] == "completed"


def _age_idempotency_keys(rows: Rows, hours: float) -> None:
    """Move every stored key's creation time back, as if ``hours`` had passed."""
    keys = rows.select("idempotency_key")
    assert keys
    for key in keys:
        earlier = key["created_at"] - timedelta(hours=hours)
        assert rows.update("idempotency_key", {"created_at": earlier}, "id = :id", id=key["id"])


def test_idempotency_key_holds_for_24_hours(
    team: TeamClient, deployed: dict[str, Any], rows: Rows
) -> None:
    headers = {"Idempotency-Key": "daily"}
    first = check(post_run(team, json={}, headers=headers), 201)
    _age_idempotency_keys(rows, 23.9)
    assert check(post_run(team, json={}, headers=headers), 200)["run_id"] == first["run_id"]
    _age_idempotency_keys(rows, 0.2)
    fresh = check(post_run(team, json={}, headers=headers), 201)
    assert fresh["run_id"] != first["run_id"]
    # The key now names the new run.
    assert check(post_run(team, json={}, headers=headers), 200)["run_id"] == fresh["run_id"]


def test_two_first_uses_of_one_idempotency_key_at_once_make_one_run(
    team: TeamClient, deployed: dict[str, Any], make_client: ClientFactory
) -> None:
    """Two API processes (apps with engines of their own) get the same new key at the
    same moment: one creates the run (201), the other replays it (200); never a 500 from
    the key's unique index. Several rounds, each with a key of its own."""
    apis = [
        TeamClient(http=make_client(), token=team.token, team_id=team.team_id) for _ in range(2)
    ]
    rounds = 8
    for n in range(rounds):
        headers = {"Idempotency-Key": f"race-{n}"}
        answers = run_in_threads(
            [lambda api=api, h=headers: post_run(api, json={}, headers=h) for api in apis],
            timeout=60,
            name="create",
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 201], [answer.text for answer in answers]
        assert answers[0].json()["run_id"] == answers[1].json()["run_id"]
    created = check(team.get("/api/v1/apps/hello/runs", params={"limit": 100}), 200)
    assert len(run_ids(created)) == rounds


def test_idempotency_keys_are_per_app_and_per_team(
    team: TeamClient, other_team: TeamClient, hello_archive: bytes
) -> None:
    team.deploy("hello", hello_archive)
    team.deploy("other", hello_archive)
    other_team.deploy("hello", hello_archive)
    headers = {"Idempotency-Key": "same"}
    a = check(post_run(team, "hello", json={}, headers=headers), 201)
    b = check(post_run(team, "other", json={}, headers=headers), 201)
    c = check(post_run(other_team, "hello", json={}, headers=headers), 201)
    assert len({a["run_id"], b["run_id"], c["run_id"]}) == 3


def test_a_refused_request_does_not_use_up_its_idempotency_key(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "k"}
    expect_error(
        post_run(team, json={"input": {"count": "x"}}, headers=headers), 400, "invalid_request"
    )
    assert check(post_run(team, json={}, headers=headers), 201)["input"]["count"] == 1


def test_overlong_idempotency_key_is_400(team: TeamClient, deployed: dict[str, Any]) -> None:
    response = post_run(team, json={}, headers={"Idempotency-Key": "k" * 201})
    expect_error(response, 400, "invalid_request")


def test_runs_of_unknown_or_foreign_apps_are_404(
    team: TeamClient, other_team: TeamClient, hello_archive: bytes
) -> None:
    other_team.deploy("secret", hello_archive)
    expect_error(post_run(team, "secret", json={}), 404, "not_found")
    expect_error(post_run(team, "nope", json={}), 404, "not_found")
    expect_error(team.get("/api/v1/apps/secret/runs"), 404, "not_found")
    expect_error(team.get("/api/v1/runs", params={"app": "secret"}), 404, "not_found")


def test_runs_need_a_team_token(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    for method, path in [
        ("POST", "/api/v1/apps/hello/runs"),
        ("GET", "/api/v1/apps/hello/runs"),
        ("GET", "/api/v1/runs"),
        ("GET", f"/api/v1/runs/{run['run_id']}"),
        ("GET", f"/api/v1/runs/{run['run_id']}/attempts"),
        ("POST", f"/api/v1/runs/{run['run_id']}/cancel"),
    ]:
        expect_error(team.http.request(method, path, json={}), 401, "unauthorized")
        response = team.http.request(method, path, json={}, headers=runner.headers)
        expect_error(response, 401, "unauthorized")
    assert team.run(run["run_id"])["status"] == "queued"


# --- read -------------------------------------------------------------------------------


def test_another_teams_run_is_404(
    team: TeamClient, other_team: TeamClient, hello_archive: bytes
) -> None:
    other_team.deploy("secret", hello_archive)
    theirs = other_team.create_run("secret")
    run_id = theirs["run_id"]
    expect_error(team.get(f"/api/v1/runs/{run_id}"), 404, "not_found")
    expect_error(team.get(f"/api/v1/runs/{run_id}/attempts"), 404, "not_found")
    expect_error(team.post(f"/api/v1/runs/{run_id}/cancel"), 404, "not_found")
    assert check(team.get("/api/v1/runs"), 200)["runs"] == []
    assert other_team.run(run_id)["status"] == "queued"


def test_unknown_run_is_404_and_a_malformed_id_400(team: TeamClient) -> None:
    expect_error(team.get("/api/v1/runs/999999"), 404, "not_found")
    expect_error(team.post("/api/v1/runs/999999/cancel"), 404, "not_found")
    expect_error(team.get("/api/v1/runs/abc"), 400, "invalid_request")


def test_lists_are_newest_first_and_filter_by_status_and_app(
    team: TeamClient, runner: RunnerClient, hello_archive: bytes
) -> None:
    team.deploy("hello", hello_archive)
    team.deploy("other", hello_archive)
    h1 = team.create_run("hello")["run_id"]
    o1 = team.create_run("other")["run_id"]
    h2 = team.create_run("hello")["run_id"]
    o2 = team.create_run("other")["run_id"]
    lease = runner.lease()
    assert lease is not None and lease.run_id == h1
    finish(runner, lease)
    check(team.post(f"/api/v1/runs/{o2}/cancel"), 200)

    assert run_ids(check(team.get("/api/v1/runs"), 200)) == [o2, h2, o1, h1]
    assert run_ids(check(team.get("/api/v1/apps/hello/runs"), 200)) == [h2, h1]
    assert run_ids(check(team.get("/api/v1/runs", params={"app": "other"}), 200)) == [o2, o1]
    assert run_ids(check(team.get("/api/v1/runs", params={"status": "queued"}), 200)) == [h2, o1]
    assert run_ids(check(team.get("/api/v1/runs", params={"status": "completed"}), 200)) == [h1]
    assert run_ids(
        check(team.get("/api/v1/runs", params={"status": "queued", "app": "other"}), 200)
    ) == [o1]
    assert run_ids(
        check(team.get("/api/v1/apps/other/runs", params={"status": "cancelled"}), 200)
    ) == [o2]
    assert check(team.get("/api/v1/runs", params={"status": "dead"}), 200)["runs"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"status": "QUEUED"},
        {"limit": 0},
        {"limit": 201},
        {"limit": "all"},
        {"cursor": "next"},
        {"cursor": "-5"},
        {"offset": -1},
        {"offset": "x"},
    ],
)
def test_invalid_list_params_are_400(sandbox: Sandbox, params: dict[str, Any]) -> None:
    team = sandbox.team
    expect_error(team.get("/api/v1/runs", params=params), 400, "invalid_request")
    expect_error(team.get("/api/v1/apps/hello/runs", params=params), 400, "invalid_request")


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/apps/hello/runs"])
def test_lists_are_paginated(team: TeamClient, deployed: dict[str, Any], path: str) -> None:
    created = [team.create_run("hello")["run_id"] for _ in range(5)]
    newest = list(reversed(created))
    assert walk_pages(team, path, "runs", "run_id", 2) == [newest[:2], newest[2:4], newest[4:]]
    assert offset_page(team, path, "runs", "run_id", limit=2, offset=2) == newest[2:4]
    exact = check(team.get(path, params={"limit": 5}), 200)
    assert run_ids(exact) == newest and exact["next_cursor"] is None


def test_status_filter_pages_within_the_filter(team: TeamClient, deployed: dict[str, Any]) -> None:
    created = [team.create_run("hello")["run_id"] for _ in range(4)]
    for run_id in created[::2]:
        check(team.post(f"/api/v1/runs/{run_id}/cancel"), 200)
    first = check(team.get("/api/v1/runs", params={"status": "queued", "limit": 1}), 200)
    assert run_ids(first) == [created[3]]
    second = check(
        team.get(
            "/api/v1/runs", params={"status": "queued", "limit": 1, "cursor": first["next_cursor"]}
        ),
        200,
    )
    assert run_ids(second) == [created[1]]
    assert second["next_cursor"] is None


# --- attempts ---------------------------------------------------------------------------


def test_attempts_show_failures(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    assert check(team.get(f"/api/v1/runs/{run['run_id']}/attempts"), 200) == {"attempts": []}
    lease = runner.lease()
    assert lease is not None
    finish(runner, lease, "failed", exit_code=3, error_message="boom: ValueError")

    attempts = check(team.get(f"/api/v1/runs/{run['run_id']}/attempts"), 200)["attempts"]
    assert len(attempts) == 1
    attempt = attempts[0]
    assert {
        "attempt_no",
        "runner_name",
        "status",
        "exit_code",
        "error_message",
        "started_at",
        "finished_at",
    } <= set(attempt)
    assert attempt["attempt_no"] == 1
    assert attempt["runner_name"] == "runner-1"
    assert attempt["status"] == "failed"
    assert attempt["exit_code"] == 3
    assert attempt["error_message"] == "boom: ValueError"
    assert attempt["started_at"] is not None and attempt["finished_at"] is not None

    failed = team.run(run["run_id"])
    assert failed["status"] == "failed"
    assert failed["exit_code"] == 3
    assert failed["error_message"] == "boom: ValueError"
    assert failed["finished_at"] is not None and failed["started_at"] is not None


def test_a_failed_result_is_final_even_with_retries_left(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello", max_retries=3)
    lease = runner.lease()
    assert lease is not None
    finish(runner, lease, "failed", exit_code=1)
    after = team.run(run["run_id"])
    assert after["status"] == "failed"
    assert after["retry_count"] == 0
    assert runner.lease() is None


# --- cancel -----------------------------------------------------------------------------


def cancel(team: TeamClient, run_id: int) -> dict[str, Any]:
    result: dict[str, Any] = check(team.post(f"/api/v1/runs/{run_id}/cancel"), 200)
    return result


def test_cancel_a_queued_run(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    cancelled = cancel(team, run["run_id"])
    assert set(cancelled) == RUN_KEYS
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested"] is True
    assert cancelled["finished_at"] is not None
    assert team.run(run["run_id"]) == cancelled
    # A cancelled run is never handed out.
    assert runner.lease() is None


def test_cancel_a_running_run_goes_through_cancelling(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    cancelling = cancel(team, run["run_id"])
    assert cancelling["status"] == "cancelling"
    assert cancelling["cancel_requested"] is True
    assert cancelling["finished_at"] is None

    beat = check(runner.heartbeat(lease), 200)
    assert beat["cancel_requested"] is True
    result = check(runner.result(lease, "cancelled", exit_code=-15), 200)
    assert result["run_status"] == "cancelled"
    done = team.run(run["run_id"])
    assert done["status"] == "cancelled"
    assert done["finished_at"] is not None
    attempts = check(team.get(f"/api/v1/runs/{run['run_id']}/attempts"), 200)["attempts"]
    assert [a["status"] for a in attempts] == ["cancelled"]


def test_cancel_a_leased_run_before_it_starts(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    lease = runner.lease()
    assert lease is not None
    assert cancel(team, run["run_id"])["status"] == "cancelling"
    started = check(runner.start(lease), 200)
    assert started["cancel_requested"] is True
    check(runner.result(lease, "cancelled"), 200)
    assert team.run(run["run_id"])["status"] == "cancelled"


def test_a_failed_result_while_cancelling_ends_cancelled(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    cancel(team, run["run_id"])
    assert check(runner.result(lease, "failed", exit_code=1), 200)["run_status"] == "cancelled"
    assert team.run(run["run_id"])["status"] == "cancelled"


def test_a_completed_result_while_cancelling_ends_completed(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    cancel(team, run["run_id"])
    result = check(runner.result(lease, "completed", exit_code=0), 200)
    assert result["run_status"] == "completed"
    done = team.run(run["run_id"])
    assert done["status"] == "completed"
    assert done["exit_code"] == 0
    # ... and stays completed.
    assert cancel(team, run["run_id"])["status"] == "completed"


def test_cancel_is_idempotent(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    first = cancel(team, run["run_id"])
    second = cancel(team, run["run_id"])
    assert first["status"] == second["status"] == "cancelling"
    check(runner.result(lease, "cancelled"), 200)
    third = cancel(team, run["run_id"])
    fourth = cancel(team, run["run_id"])
    assert third == fourth
    assert third["status"] == "cancelled"


def test_cancel_of_a_queued_run_twice(team: TeamClient, deployed: dict[str, Any]) -> None:
    run = team.create_run("hello")
    first = cancel(team, run["run_id"])
    assert cancel(team, run["run_id"]) == first


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_terminal_runs_never_change(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease], outcome: str
) -> None:
    run, lease = running
    check(runner.result(lease, outcome, exit_code=0 if outcome == "completed" else 1), 200)
    before = team.run(run["run_id"])
    assert before["status"] == outcome
    after_cancel = cancel(team, run["run_id"])
    assert after_cancel == before
    assert after_cancel["cancel_requested"] is False
    assert team.run(run["run_id"]) == before


def test_cancel_accepts_an_empty_json_body(team: TeamClient, deployed: dict[str, Any]) -> None:
    run = team.create_run("hello")
    response = team.post(f"/api/v1/runs/{run['run_id']}/cancel", content=b"{}", headers=JSON)
    assert check(response, 200)["status"] == "cancelled"
