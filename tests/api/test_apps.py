"""Apps: create, list, get, update (and disable)."""

from typing import Any

import pytest

from tests.support.api_assertions import assert_timestamps, expect_error, offset_page, walk_pages
from tests.support.clients import TeamClient, check

APP_KEYS = {
    "app_id",
    "slug",
    "description",
    "disabled",
    "max_concurrent_runs",
    "created_at",
    "updated_at",
}


def test_create_returns_the_app(team: TeamClient) -> None:
    app = check(team.post("/api/v1/apps", json={"slug": "hello", "description": "Says hi"}), 201)
    assert set(app) == APP_KEYS
    assert app["slug"] == "hello"
    assert app["description"] == "Says hi"
    assert app["disabled"] is False
    assert_timestamps(app, "created_at", "updated_at")
    assert check(team.get("/api/v1/apps/hello"), 200) == app


def test_description_defaults_to_empty(team: TeamClient) -> None:
    assert team.create_app("hello")["description"] == ""


def test_same_slug_twice_is_409_slug_taken(team: TeamClient) -> None:
    team.create_app("hello")
    expect_error(team.post("/api/v1/apps", json={"slug": "hello"}), 409, "slug_taken")
    assert len(check(team.get("/api/v1/apps"), 200)["apps"]) == 1


def test_slugs_are_per_team(team: TeamClient, other_team: TeamClient) -> None:
    ours = team.create_app("hello")
    theirs = other_team.create_app("hello")
    assert ours["app_id"] != theirs["app_id"]


@pytest.mark.parametrize(
    "slug",
    [
        "ab",
        "a" * 33,
        "Hello",
        "1hello",
        "-hello",
        "hello_world",
        "hello world",
        "hello\n",
        "héllo",
        "",
    ],
)
def test_invalid_slug_is_400(team: TeamClient, slug: str) -> None:
    expect_error(team.post("/api/v1/apps", json={"slug": slug}), 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"slug": 123},
        {"slug": None},
        {"slug": "hello", "description": 5},
        {"slug": "hello", "description": "x" * 2001},
        {"slug": "hello", "disabled": True},
        {"slug": "hello", "owner": "me"},
        [],
        "hello",
    ],
)
def test_invalid_create_body_is_400(team: TeamClient, body: Any) -> None:
    expect_error(team.post("/api/v1/apps", json=body), 400, "invalid_request")


def test_slug_edges_are_accepted(team: TeamClient) -> None:
    for slug in ("abc", "a" * 32, "a-b-c", "a12"):
        team.create_app(slug)


def test_get_unknown_app_is_404(team: TeamClient) -> None:
    expect_error(team.get("/api/v1/apps/nope"), 404, "not_found")


def test_another_teams_app_is_404(team: TeamClient, other_team: TeamClient) -> None:
    other_team.create_app("secret")
    expect_error(team.get("/api/v1/apps/secret"), 404, "not_found")
    expect_error(team.patch("/api/v1/apps/secret", json={"disabled": True}), 404, "not_found")
    assert check(team.get("/api/v1/apps"), 200)["apps"] == []
    assert check(other_team.get("/api/v1/apps/secret"), 200)["disabled"] is False


def test_apps_need_a_team_token(team: TeamClient) -> None:
    team.create_app("hello")
    for method, path in [
        ("GET", "/api/v1/apps"),
        ("POST", "/api/v1/apps"),
        ("GET", "/api/v1/apps/hello"),
        ("PATCH", "/api/v1/apps/hello"),
    ]:
        response = team.http.request(method, path, json={"slug": "other"})
        expect_error(response, 401, "unauthorized")
        response = team.http.request(
            method, path, json={}, headers={"Authorization": "Bearer mtk_wrong"}
        )
        expect_error(response, 401, "unauthorized")


# --- PATCH ----------------------------------------------------------------------------------


def test_patch_description(team: TeamClient) -> None:
    created = team.create_app("hello")
    updated = check(team.patch("/api/v1/apps/hello", json={"description": "New"}), 200)
    assert updated["description"] == "New"
    assert updated["disabled"] is False
    assert updated["app_id"] == created["app_id"]
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] >= created["updated_at"]
    assert check(team.get("/api/v1/apps/hello"), 200) == updated


def test_empty_patch_changes_nothing(team: TeamClient) -> None:
    created = team.create_app("hello")
    updated = check(team.patch("/api/v1/apps/hello", json={}), 200)
    assert updated["description"] == created["description"]
    assert updated["disabled"] == created["disabled"]


def test_disabled_app_refuses_new_runs(team: TeamClient, deployed: dict[str, Any]) -> None:
    disabled = check(team.patch("/api/v1/apps/hello", json={"disabled": True}), 200)
    assert disabled["disabled"] is True
    expect_error(team.post("/api/v1/apps/hello/runs", json={}), 409, "app_disabled")
    assert check(team.get("/api/v1/runs"), 200)["runs"] == []
    # Reading and uploading still work while disabled.
    assert check(team.get("/api/v1/apps/hello"), 200)["disabled"] is True
    check(team.get("/api/v1/apps/hello/versions"), 200)

    check(team.patch("/api/v1/apps/hello", json={"disabled": False}), 200)
    assert team.create_run("hello")["status"] == "queued"


@pytest.mark.parametrize(
    "body",
    [
        {"disabled": "maybe"},
        {"disabled": [True]},
        {"description": 5},
        {"description": "x" * 2001},
        {"slug": "renamed"},
        [],
    ],
)
def test_invalid_patch_is_400(team: TeamClient, body: Any) -> None:
    team.create_app("hello")
    expect_error(team.patch("/api/v1/apps/hello", json=body), 400, "invalid_request")
    assert check(team.get("/api/v1/apps/hello"), 200)["disabled"] is False


def test_patch_unknown_app_is_404(team: TeamClient) -> None:
    expect_error(team.patch("/api/v1/apps/nope", json={"disabled": True}), 404, "not_found")


# --- listing --------------------------------------------------------------------------------


def test_list_is_paginated_with_a_null_cursor_on_the_last_page(team: TeamClient) -> None:
    slugs = [f"app-{i}" for i in range(5)]
    for slug in slugs:
        team.create_app(slug)
    everything = check(team.get("/api/v1/apps"), 200)
    assert [a["slug"] for a in everything["apps"]] == slugs
    assert everything["next_cursor"] is None
    assert walk_pages(team, "/api/v1/apps", "apps", "slug", 2) == [slugs[:2], slugs[2:4], slugs[4:]]
    assert offset_page(team, "/api/v1/apps", "apps", "slug", limit=2, offset=3) == slugs[3:5]
    assert offset_page(team, "/api/v1/apps", "apps", "slug", limit=2, offset=5) == []


def test_exact_last_page_has_a_null_cursor(team: TeamClient) -> None:
    for i in range(2):
        team.create_app(f"app-{i}")
    body = check(team.get("/api/v1/apps", params={"limit": 2}), 200)
    assert len(body["apps"]) == 2
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 201}, {"limit": -1}, {"limit": "ten"}, {"cursor": "abc"}],
)
def test_invalid_paging_is_400(team: TeamClient, params: dict[str, Any]) -> None:
    expect_error(team.get("/api/v1/apps", params=params), 400, "invalid_request")


def test_limit_edges_are_accepted(team: TeamClient) -> None:
    team.create_app("hello")
    assert len(check(team.get("/api/v1/apps", params={"limit": 1}), 200)["apps"]) == 1
    assert len(check(team.get("/api/v1/apps", params={"limit": 200}), 200)["apps"]) == 1


def test_a_null_description_is_an_empty_one(team: TeamClient) -> None:
    """The reference's CLI sends ``"description": null`` when none is given."""
    body = check(team.post("/api/v1/apps", json={"slug": "hello", "description": None}), 201)
    assert body["description"] == ""
