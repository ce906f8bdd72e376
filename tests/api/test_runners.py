"""POST /api/v1/runners/register and GET /api/v1/admin/runners."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api_assertions import assert_timestamps, expect_error, offset_page, walk_pages
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

PATH = "/api/v1/runners/register"


def register(client: TestClient, body: Any, token: str | None = REGISTRATION_TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(PATH, json=body, headers=headers)


def test_register_returns_a_runner_token(client: TestClient) -> None:
    body = check(register(client, {"name": "runner-1"}), 201)
    assert set(body) == {"runner_id", "name", "environment", "token", "team_id"}
    assert body["team_id"] is None  # the operator's token: a shared runner
    assert body["name"] == "runner-1"
    assert body["environment"] == "default"
    assert isinstance(body["runner_id"], int)
    assert body["token"].startswith("mtr_")
    assert len(body["token"]) >= len("mtr_") + 43

    runner = RunnerClient(http=client, token=body["token"], runner_id=body["runner_id"], name="r")
    assert runner.lease_response().status_code == 204


def test_register_with_environment_and_labels(client: TestClient, team: TeamClient) -> None:
    body = check(
        register(client, {"name": "gpu-1", "environment": "gpu", "labels": {"zone": "eu-1"}}),
        201,
    )
    assert body["environment"] == "gpu"
    listed = check(team.get("/api/v1/admin/runners"), 200)["runners"]
    assert listed == [
        {
            "runner_id": body["runner_id"],
            "name": "gpu-1",
            "environment": "gpu",
            "status": "online",
            "labels": {"zone": "eu-1"},
            "last_seen_at": listed[0]["last_seen_at"],
            "current_run_id": None,
            "shared": True,
        }
    ]
    assert_timestamps(listed[0], "last_seen_at")


def test_same_name_again_is_200_and_the_old_token_stops_working(client: TestClient) -> None:
    first = check(register(client, {"name": "runner-1"}), 201)
    again = check(register(client, {"name": "runner-1", "environment": "gpu"}), 200)
    assert again["runner_id"] == first["runner_id"]
    assert again["token"] != first["token"]
    assert again["environment"] == "gpu"

    old = RunnerClient(client, first["token"], first["runner_id"], "runner-1")
    new = RunnerClient(client, again["token"], again["runner_id"], "runner-1")
    expect_error(old.lease_response(), 401, "unauthorized")
    assert new.lease_response().status_code == 204


def test_old_token_of_a_re_registered_runner_cannot_touch_its_lease(
    client: TestClient, team: TeamClient, deployed: dict[str, Any]
) -> None:
    old = RunnerClient.register(client, "runner-1", REGISTRATION_TOKEN)
    team.create_run("hello")
    lease = old.lease()
    assert lease is not None
    RunnerClient.register(client, "runner-1", REGISTRATION_TOKEN)
    expect_error(old.start(lease), 401, "unauthorized")
    expect_error(old.heartbeat(lease), 401, "unauthorized")


@pytest.mark.parametrize(
    "token",
    [None, "", "wrong-registration-token-012345", REGISTRATION_TOKEN[:-1], BOOTSTRAP_TOKEN],
    ids=["missing", "empty", "wrong", "prefix", "bootstrap-token"],
)
def test_wrong_or_missing_registration_token_is_401(client: TestClient, token: str | None) -> None:
    expect_error(register(client, {"name": "runner-1"}, token), 401, "unauthorized")
    # Nothing was registered.
    check(register(client, {"name": "runner-1"}), 201)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "has space"},
        {"name": "-leading-dash"},
        {"name": "x" * 201},
        {"name": 7},
        {"name": "r1", "environment": ""},
        {"name": "r1", "environment": "GPU"},
        {"name": "r1", "environment": "gpu!"},
        {"name": "r1", "environment": None},
        {"name": "r1", "labels": {"zone": 1}},
        {"name": "r1", "labels": ["zone"]},
        {"name": "r1", "colour": "blue"},
        [],
    ],
)
def test_invalid_registration_is_400(client: TestClient, body: Any) -> None:
    expect_error(register(client, body), 400, "invalid_request")


def test_registration_is_disabled_without_a_configured_token(make_client: ClientFactory) -> None:
    client = make_client(runner_registration_token=None)
    expect_error(register(client, {"name": "runner-1"}), 403, "forbidden")


# --- GET /api/v1/admin/runners -----------------------------------------------------------


def test_admin_sees_every_runner_and_the_run_it_holds(
    team: TeamClient, runner: RunnerClient, runner2: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    lease = runner.lease()
    assert isinstance(lease, Lease)

    body = check(team.get("/api/v1/admin/runners"), 200)
    assert body["next_cursor"] is None
    by_name = {r["name"]: r for r in body["runners"]}
    assert set(by_name) == {"runner-1", "runner-2"}
    assert by_name["runner-1"]["runner_id"] == runner.runner_id
    assert by_name["runner-1"]["current_run_id"] == run["run_id"]
    assert by_name["runner-2"]["current_run_id"] is None
    for entry in body["runners"]:
        assert entry["environment"] == "default"
        assert entry["status"] == "online"
        assert "token" not in entry and "token_hash" not in entry

    check(runner.start(lease), 200)
    check(runner.result(lease, "completed", exit_code=0), 200)
    after = check(team.get("/api/v1/admin/runners"), 200)["runners"]
    assert all(entry["current_run_id"] is None for entry in after)


def test_admin_runner_list_is_paginated(client: TestClient, team: TeamClient) -> None:
    names = [f"runner-{i}" for i in range(5)]
    for name in names:
        RunnerClient.register(client, name, REGISTRATION_TOKEN)
    path = "/api/v1/admin/runners"
    assert walk_pages(team, path, "runners", "name", 2) == [names[:2], names[2:4], names[4:]]
    assert offset_page(team, path, "runners", "name", limit=2, offset=1) == names[1:3]


def test_members_may_not_list_runners(member: TeamClient, runner: RunnerClient) -> None:
    expect_error(member.get("/api/v1/admin/runners"), 403, "forbidden")


def test_listing_runners_needs_a_team_token(client: TestClient, runner: RunnerClient) -> None:
    expect_error(client.get("/api/v1/admin/runners"), 401, "unauthorized")
    expect_error(client.get("/api/v1/admin/runners", headers=runner.headers), 401, "unauthorized")
    expect_error(
        client.get(
            "/api/v1/admin/runners", headers={"Authorization": f"Bearer {REGISTRATION_TOKEN}"}
        ),
        401,
        "unauthorized",
    )
