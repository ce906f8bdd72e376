"""The schedules resource: create, list, show, change, pause, delete; bad input is a
400/404 error object, another team's app is 404."""

from typing import Any

import pytest

from tests.support.api_assertions import expect_error
from tests.support.clients import TeamClient, check
from tests.support.databases import Database
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN

SCHEDULE_KEYS = {
    "schedule_id",
    "app_slug",
    "name",
    "cron",
    "timezone",
    "input",
    "version_no",
    "environment",
    "priority",
    "retry",
    "overlap",
    "catchup",
    "enabled",
    "next_fire_at",
    "last_fired_at",
    "created_at",
    "updated_at",
}
BASE = "/api/v1/apps/hello/schedules"


def test_create_show_list_pause_resume_delete(team: TeamClient, deployed: dict[str, Any]) -> None:
    created = check(
        team.post(
            BASE,
            json={
                "cron": "0 3 * * *",
                "timezone": "Europe/Berlin",
                "input": {"greeting": "nightly"},
                "overlap": "skip",
                "catchup": "latest",
                "max_retries": 2,
                "retry_on": ["failed"],
                "retry_delay": 30,
                "name": "nightly",
            },
        ),
        201,
    )
    assert set(created) == SCHEDULE_KEYS
    assert created["enabled"] is True and created["last_fired_at"] is None
    # 03:00 in Berlin is 02:00 UTC in winter.
    assert created["next_fire_at"].endswith("T02:00:00.000Z"), created
    assert created["retry"] == {"max_retries": 2, "retry_on": ["failed"], "retry_delay": 30.0}
    path = f"{BASE}/{created['schedule_id']}"
    assert check(team.get(path), 200) == created
    listed = check(team.get(BASE), 200)
    assert listed == {"schedules": [created], "next_cursor": None}
    paused = check(team.patch(path, json={"enabled": False}), 200)
    assert paused["enabled"] is False and paused["cron"] == "0 3 * * *"
    resumed = check(team.patch(path, json={"enabled": True, "cron": "@hourly"}), 200)
    assert resumed["enabled"] is True and resumed["next_fire_at"].endswith(":00:00.000Z")
    assert check(team.patch(path, json={"retry_delay": None}), 200)["retry"] == {
        "max_retries": 2,
        "retry_on": ["failed"],
    }
    assert team.delete(path).status_code == 204
    expect_error(team.get(path), 404, "not_found")
    assert check(team.get(BASE), 200)["schedules"] == []


def test_names_are_unique_per_app(team: TeamClient, deployed: dict[str, Any]) -> None:
    check(team.post(BASE, json={"cron": "@daily", "name": "one"}), 201)
    expect_error(team.post(BASE, json={"cron": "@daily", "name": "one"}), 409, "conflict")
    # Unnamed schedules are as many as you like.
    check(team.post(BASE, json={"cron": "@daily"}), 201)
    check(team.post(BASE, json={"cron": "@daily"}), 201)


@pytest.mark.parametrize(
    "body",
    [
        {"cron": "not cron"},
        {"cron": "61 * * * *"},
        {"cron": "* * * *"},
        {"cron": "0 0 30 2 *"},
        {"cron": "@reboot"},
        {"cron": "* " * 5000},
        {"cron": "@daily", "timezone": "Mars/Olympus"},
        {"cron": "@daily", "timezone": "../../etc/passwd"},
        {"cron": "@daily", "timezone": ""},
        {"cron": "@daily", "retry_delay": -5},
        {"cron": "@daily", "retry_max_delay": -1},
        {"cron": "@daily", "overlap": "sometimes"},
        {"cron": "@daily", "catchup": "most"},
        {"cron": "@daily", "input": {"count": "many"}},
        {"cron": "@daily", "name": "Bad Name"},
        {"cron": "@daily", "priority": 10**6},
        {"cron": "@daily", "unknown": 1},
        {"timezone": "UTC"},
        {"cron": 5},
    ],
)
def test_bad_schedules_are_400(team: TeamClient, deployed: dict[str, Any], body: Any) -> None:
    response = team.post(BASE, json=body)
    assert response.status_code == 400, response.text
    expect_error(response, 400, response.json()["error"]["code"])
    assert check(team.get(BASE), 200)["schedules"] == []


def test_a_missing_version_or_app_is_404(team: TeamClient, deployed: dict[str, Any]) -> None:
    expect_error(team.post(BASE, json={"cron": "@daily", "version_no": 9}), 404, "not_found")
    expect_error(
        team.post("/api/v1/apps/nope/schedules", json={"cron": "@daily"}), 404, "not_found"
    )


def test_catchup_all_with_a_zero_cap_is_refused(
    make_client: ClientFactory, hello_archive: bytes
) -> None:
    client = make_client(schedule_max_catchup=0)
    team = TeamClient.bootstrap(client, "nocatch", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    error = expect_error(
        team.post(BASE, json={"cron": "@daily", "catchup": "all"}), 400, "invalid_request"
    )
    assert "MINITOWER_SCHEDULE_MAX_CATCHUP" in error["message"]
    check(team.post(BASE, json={"cron": "@daily", "catchup": "latest"}), 201)


def test_another_teams_schedules_are_out_of_reach(
    team: TeamClient, other_team: TeamClient, deployed: dict[str, Any]
) -> None:
    created = check(team.post(BASE, json={"cron": "@daily"}), 201)
    path = f"{BASE}/{created['schedule_id']}"
    expect_error(other_team.post(BASE, json={"cron": "@daily"}), 404, "not_found")
    expect_error(other_team.get(BASE), 404, "not_found")
    expect_error(other_team.get(path), 404, "not_found")
    expect_error(other_team.patch(path, json={"enabled": False}), 404, "not_found")
    expect_error(other_team.delete(path), 404, "not_found")
    # The other team's own app of the same name does not reach it either.
    other_team.create_app("hello")
    expect_error(other_team.get(path), 404, "not_found")
    assert check(team.get(path), 200) == created


def test_patch_refuses_nulls_and_bad_changes(team: TeamClient, deployed: dict[str, Any]) -> None:
    created = check(team.post(BASE, json={"cron": "@daily"}), 201)
    path = f"{BASE}/{created['schedule_id']}"
    for body in (
        {"cron": None},
        {"enabled": None},
        {"cron": "99 * * * *"},
        {"timezone": "Nowhere/City"},
        {"retry_backoff": 0},
        {"schedule_id": 5},
    ):
        response = team.patch(path, json=body)
        assert response.status_code == 400, (body, response.text)
    assert check(team.get(path), 200) == created
    expect_error(team.get(f"{BASE}/0"), 400, "invalid_request")
    expect_error(team.get(f"{BASE}/99999"), 404, "not_found")


def test_ready_and_metrics_report_the_scheduler_and_the_schedule_lag(
    team: TeamClient, client: Any, database: Database, deployed: dict[str, Any]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from minitower_scheduler.service import tick
    from minitower_shared.clock import utcnow
    from minitower_shared.db import create_db_engine, write_session
    from minitower_shared.models import Schedule

    created = check(team.post(BASE, json={"cron": "* * * * *"}), 201)
    assert "minitower_schedule_lag_seconds 0.0" in client.get("/metrics").text
    engine = create_db_engine(database)
    try:
        # The scheduler is 90 s behind on this schedule.
        with write_session(engine) as session:
            session.execute(
                update(Schedule)
                .where(Schedule.id == created["schedule_id"])  # type: ignore[arg-type]
                .values(next_fire_at=utcnow() - timedelta(seconds=90))
            )
        lag_line = next(
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("minitower_schedule_lag_seconds ")
        )
        assert 89 <= float(lag_line.split()[1]) <= 120, lag_line
        with write_session(engine) as session:
            tick(session, utcnow(), max_catchup=10, grace=timedelta(seconds=60), name="t")
    finally:
        engine.dispose()
    text = client.get("/metrics").text
    assert "minitower_schedule_lag_seconds 0.0" in text
    # Of the due times in the last 90 s, the latest is under a minute old: it fires.
    assert "minitower_schedule_runs_fired_total 1.0" in text
    assert "minitower_schedule_fires_skipped_total 0.0" in text
    assert check(client.get("/ready"), 200)["scheduler"] == "ok"


def test_openapi_documents_the_additions(client: Any) -> None:
    document = check(client.get("/openapi.json"), 200)
    paths = document["paths"]
    for method, path in [
        ("post", "/api/v1/apps/{app}/schedules"),
        ("get", "/api/v1/apps/{app}/schedules"),
        ("get", "/api/v1/apps/{app}/schedules/{schedule_id}"),
        ("patch", "/api/v1/apps/{app}/schedules/{schedule_id}"),
        ("delete", "/api/v1/apps/{app}/schedules/{schedule_id}"),
        ("get", "/api/v1/environments"),
        ("patch", "/api/v1/environments/{name}"),
    ]:
        operation = paths[path][method]
        assert "400" in operation["responses"] and "404" in operation["responses"], (method, path)
        assert "422" not in operation["responses"]
    schemas = document["components"]["schemas"]
    assert {"scheduled_for", "retry_on", "retry_delay", "retry_backoff", "retry_max_delay"} <= set(
        schemas["RunCreate"]["properties"]
    )
    assert {"not_before", "schedule_id", "scheduled_for", "retry_on"} <= set(
        schemas["RunPublic"]["properties"]
    )
    assert "max_concurrent_runs" in schemas["AppUpdate"]["properties"]
    assert "max_concurrent_runs" in schemas["AppPublic"]["properties"]
    assert "retry_policy" in schemas["VersionPublic"]["properties"]
    assert {"next_fire_at", "last_fired_at", "overlap", "catchup"} <= set(
        schemas["SchedulePublic"]["properties"]
    )
    assert "scheduler" in schemas["HealthStatus"]["properties"]
