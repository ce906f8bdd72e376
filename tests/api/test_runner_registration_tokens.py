"""POST/GET/DELETE /api/v1/runner-registration-tokens, and registering with one: a
runner bound to the team."""

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support.api_assertions import assert_timestamps, expect_error
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.tokens import REGISTRATION_TOKEN

PATH = "/api/v1/runner-registration-tokens"


def mint(team: TeamClient, name: str = "ci") -> dict[str, Any]:
    body: dict[str, Any] = check(team.post(PATH, json={"name": name}), 201)
    return body


def register(client: TestClient, name: str, token: str) -> httpx.Response:
    return client.post(
        "/api/v1/runners/register",
        json={"name": name},
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.sqlite_only(
    "searches the SQLite file (and its WAL or dump) for secrets; PostgreSQL's would be pg_dump"
)
def test_secret_is_shown_once_and_stored_only_as_its_hash(team: TeamClient, db_path: Path) -> None:
    created = mint(team, "build-hosts")
    token = created["token"]
    assert isinstance(token, str) and token.startswith("mtg_") and len(token) >= 4 + 43
    assert created["name"] == "build-hosts"
    assert_timestamps(created, "created_at")

    listed = check(team.get(PATH), 200)
    assert listed["next_cursor"] is None
    (entry,) = listed["registration_tokens"]
    assert set(entry) == {
        "registration_token_id",
        "name",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert entry["registration_token_id"] == created["registration_token_id"]
    assert token not in str(listed)
    with closing(sqlite3.connect(db_path)) as db:
        stored = db.execute("SELECT token_hash FROM runner_registration_token").fetchall()
        dump = "\n".join(db.iterdump())
    assert len(stored) == 1 and len(stored[0][0]) == 64
    assert token not in dump


def test_only_admins_manage_registration_tokens(team: TeamClient, member: TeamClient) -> None:
    created = mint(team)
    expect_error(member.post(PATH, json={"name": "mine"}), 403, "forbidden")
    expect_error(member.get(PATH), 403, "forbidden")
    expect_error(member.delete(f"{PATH}/{created['registration_token_id']}"), 403, "forbidden")
    expect_error(team.http.get(PATH), 401, "unauthorized")


def test_another_teams_token_is_404_and_stays_usable(
    client: TestClient, team: TeamClient, other_team: TeamClient
) -> None:
    theirs = mint(other_team)
    expect_error(team.delete(f"{PATH}/{theirs['registration_token_id']}"), 404, "not_found")
    assert check(team.get(PATH), 200)["registration_tokens"] == []
    expect_error(team.delete(f"{PATH}/999999"), 404, "not_found")
    expect_error(team.delete(f"{PATH}/0"), 400, "invalid_request")
    assert check(register(client, "globex-1", str(theirs["token"])), 201)["name"] == "globex-1"


def test_a_runner_registered_with_it_is_bound_to_the_team(
    client: TestClient, team: TeamClient, other_team: TeamClient
) -> None:
    token = str(mint(team)["token"])
    body = check(register(client, "acme-1", token), 201)
    assert body["team_id"] == team.team_id and body["token"].startswith("mtr_")
    again = check(register(client, "acme-1", token), 200)
    assert again["runner_id"] == body["runner_id"] and again["team_id"] == team.team_id

    ours = check(team.get("/api/v1/admin/runners"), 200)["runners"]
    assert [(r["name"], r["shared"]) for r in ours] == [("acme-1", False)]
    # Another team does not even see it.
    assert check(other_team.get("/api/v1/admin/runners"), 200)["runners"] == []
    entry = check(team.get(PATH), 200)["registration_tokens"][0]
    assert entry["last_used_at"] is not None


def test_revoked_token_registers_nothing(client: TestClient, team: TeamClient) -> None:
    created = mint(team)
    revoked = check(team.delete(f"{PATH}/{created['registration_token_id']}"), 200)
    assert revoked["revoked_at"] is not None
    again = check(team.delete(f"{PATH}/{created['registration_token_id']}"), 200)
    assert again["revoked_at"] == revoked["revoked_at"]
    expect_error(register(client, "late", str(created["token"])), 401, "unauthorized")
    expect_error(register(client, "forged", "mtg_" + "x" * 43), 401, "unauthorized")


def test_a_name_cannot_change_hands_between_bindings(
    client: TestClient, team: TeamClient, other_team: TeamClient
) -> None:
    """Registering a name again revokes its token: a team must not take over a shared
    runner, or another team's, by registering its name."""
    shared = RunnerClient.register(client, "worker-1", REGISTRATION_TOKEN)
    acme = str(mint(team)["token"])
    globex = str(mint(other_team)["token"])
    expect_error(register(client, "worker-1", acme), 409, "name_taken")
    assert shared.lease_response().status_code == 204  # still registered, token intact

    check(register(client, "acme-1", acme), 201)
    expect_error(register(client, "acme-1", globex), 409, "name_taken")
    expect_error(register(client, "acme-1", REGISTRATION_TOKEN), 409, "name_taken")


def test_openapi_documents_the_routes(client: TestClient) -> None:
    document = check(client.get("/openapi.json"), 200)
    paths = document["paths"]
    assert set(paths[PATH]) == {"get", "post"}
    assert set(paths[PATH + "/{registration_token_id}"]) == {"delete"}
    assert {"201", "401", "403"} <= set(paths[PATH]["post"]["responses"])
    assert {"200", "401", "403", "404"} <= set(
        paths[PATH + "/{registration_token_id}"]["delete"]["responses"]
    )
    register_responses = paths["/api/v1/runners/register"]["post"]["responses"]
    assert {"200", "201", "401", "403", "409"} <= set(register_responses)


def test_hostile_inputs_are_clear_4xx(client: TestClient, team: TeamClient) -> None:
    # 60 KB of token is over the server's head cap; 8 KB gets as far as the lookup.
    expect_error(register(client, "huge", "mtg_" + "x" * 60_000), 431, "header_too_large")
    expect_error(register(client, "big", "mtg_" + "x" * 8_000), 401, "unauthorized")
    expect_error(team.post(PATH, json={"name": "n" * 60_000}), 400, "invalid_request")
    expect_error(team.post(PATH, json={"name": "ok", "team_id": 2}), 400, "invalid_request")
    expect_error(team.delete(f"{PATH}/{2**63}"), 400, "invalid_request")
    expect_error(team.delete(f"{PATH}/abc"), 400, "invalid_request")


def test_a_revoked_admin_token_reaches_nothing(team: TeamClient) -> None:
    other_admin = check(team.post("/api/v1/tokens", json={"role": "admin"}), 201)
    revoked = TeamClient(http=team.http, token=other_admin["token"], team_id=team.team_id)
    created = mint(revoked)
    check(team.delete(f"/api/v1/tokens/{other_admin['token_id']}"), 200)
    expect_error(revoked.get(PATH), 401, "unauthorized")
    expect_error(revoked.post(PATH, json={}), 401, "unauthorized")
    expect_error(revoked.delete(f"{PATH}/{created['registration_token_id']}"), 401, "unauthorized")
