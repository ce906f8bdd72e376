"""GET /api/v1/me and the team's tokens: create, list, revoke; and team-token auth."""

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_shared.tokens import hash_token
from tests.support.api_assertions import assert_timestamps, expect_error, offset_page, walk_pages
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.tokens import BOOTSTRAP_TOKEN

TOKEN_KEYS = {"token_id", "name", "role", "created_at", "last_used_at", "revoked_at"}


def mint(team: TeamClient, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = check(team.post("/api/v1/tokens", json=body), 201)
    return result


def as_client(team: TeamClient, created: dict[str, Any]) -> TeamClient:
    return TeamClient(http=team.http, token=created["token"], team_id=team.team_id)


def list_all(team: TeamClient) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = check(team.get("/api/v1/tokens"), 200)["tokens"]
    return result


# --- GET /api/v1/me ------------------------------------------------------------------------


def test_me_describes_the_caller(team: TeamClient) -> None:
    me = check(team.get("/api/v1/me"), 200)
    assert set(me) == {"team_id", "team_slug", "token_id", "role", "allow_shared_runners"}
    assert me["allow_shared_runners"] is True
    assert me["team_id"] == team.team_id
    assert me["team_slug"] == "acme"
    assert me["role"] == "admin"
    assert me["token_id"] in [t["token_id"] for t in list_all(team)]


def test_me_of_a_member_token(team: TeamClient) -> None:
    created = mint(team, name="ci")
    me = check(as_client(team, created).get("/api/v1/me"), 200)
    assert me["role"] == "member"
    assert me["token_id"] == created["token_id"]
    assert me["team_id"] == team.team_id


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer mtk_not-a-real-token",
        "Bearer mtr_not-a-real-token",
        f"Bearer {BOOTSTRAP_TOKEN}",
        "Basic dXNlcjpwYXNz",
        "mtk_without_scheme",
    ],
)
def test_missing_or_wrong_team_token_is_401(
    client: TestClient, team: TeamClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    error = expect_error(client.get("/api/v1/me", headers=headers), 401, "unauthorized")
    assert error["message"]


def test_401_advertises_bearer_auth(client: TestClient) -> None:
    response = client.get("/api/v1/me")
    expect_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_runner_token_is_not_a_team_token(
    client: TestClient, team: TeamClient, runner: RunnerClient
) -> None:
    expect_error(client.get("/api/v1/me", headers=runner.headers), 401, "unauthorized")
    expect_error(client.get("/api/v1/apps", headers=runner.headers), 401, "unauthorized")


def test_a_team_token_is_not_a_runner_token(client: TestClient, team: TeamClient) -> None:
    response = client.post("/api/v1/runs/lease", json={}, headers=team.headers)
    expect_error(response, 401, "unauthorized")


# --- POST /api/v1/tokens --------------------------------------------------------------------


def test_create_defaults_to_an_unnamed_member_token(team: TeamClient) -> None:
    created = mint(team)
    assert set(created) == {"token_id", "token", "name", "role"}
    assert created["role"] == "member"
    assert created["name"] == ""
    assert created["token"].startswith("mtk_")
    assert len(created["token"]) >= len("mtk_") + 43
    assert check(as_client(team, created).get("/api/v1/me"), 200)["role"] == "member"


def test_admins_mint_admins(team: TeamClient) -> None:
    created = mint(team, name="ops", role="admin")
    assert created["role"] == "admin"
    assert created["name"] == "ops"
    assert check(as_client(team, created).get("/api/v1/me"), 200)["role"] == "admin"


def test_members_mint_members_but_not_admins(member: TeamClient) -> None:
    created = mint(member, name="sub", role="member")
    assert created["role"] == "member"
    expect_error(member.post("/api/v1/tokens", json={"role": "admin"}), 403, "forbidden")
    admins = [t["name"] for t in list_all(member) if t["role"] == "admin"]
    assert admins == ["bootstrap"]


def test_every_minted_token_is_distinct(team: TeamClient) -> None:
    secrets = {mint(team)["token"] for _ in range(5)}
    assert len(secrets) == 5


@pytest.mark.parametrize(
    "body",
    [
        {"role": "owner"},
        {"role": "ADMIN"},
        {"role": None},
        {"name": "x" * 201},
        {"name": 5},
        {"name": None},
        {"scopes": ["read"]},
        [],
        "member",
    ],
)
def test_invalid_token_request_is_400(team: TeamClient, body: Any) -> None:
    expect_error(team.post("/api/v1/tokens", json=body), 400, "invalid_request")


# --- GET /api/v1/tokens ---------------------------------------------------------------------


def test_list_shows_tokens_but_never_their_secrets(
    team: TeamClient, other_team: TeamClient
) -> None:
    created = mint(team, name="ci")
    response = team.get("/api/v1/tokens")
    body = check(response, 200)
    assert set(body) == {"tokens", "next_cursor"}
    assert body["next_cursor"] is None
    assert [t["name"] for t in body["tokens"]] == ["bootstrap", "ci"]
    for token in body["tokens"]:
        assert set(token) == TOKEN_KEYS
        assert_timestamps(token, "created_at", "last_used_at")
        assert token["revoked_at"] is None
    assert created["token"] not in response.text
    assert team.token not in response.text
    # Another team's tokens are not there.
    assert other_team.token not in response.text
    assert len(list_all(other_team)) == 1


def test_list_records_last_use(team: TeamClient) -> None:
    created = mint(team, name="ci")
    unused = next(t for t in list_all(team) if t["token_id"] == created["token_id"])
    assert unused["last_used_at"] is None
    check(as_client(team, created).get("/api/v1/me"), 200)
    used = next(t for t in list_all(team) if t["token_id"] == created["token_id"])
    assert used["last_used_at"] is not None
    assert_timestamps(used, "last_used_at")


def test_list_is_paginated(team: TeamClient) -> None:
    for i in range(4):
        mint(team, name=f"t{i}")
    names = ["bootstrap", "t0", "t1", "t2", "t3"]
    assert walk_pages(team, "/api/v1/tokens", "tokens", "name", 2) == [
        names[:2],
        names[2:4],
        names[4:],
    ]
    assert offset_page(team, "/api/v1/tokens", "tokens", "name", limit=3, offset=2) == names[2:]


# --- DELETE /api/v1/tokens/{token_id} -------------------------------------------------------


def test_revoked_token_stops_working_at_once(team: TeamClient) -> None:
    created = mint(team, name="ci")
    holder = as_client(team, created)
    check(holder.get("/api/v1/me"), 200)

    revoked = check(team.delete(f"/api/v1/tokens/{created['token_id']}"), 200)
    assert set(revoked) == TOKEN_KEYS
    assert revoked["token_id"] == created["token_id"]
    assert revoked["revoked_at"] is not None

    expect_error(holder.get("/api/v1/me"), 401, "unauthorized")
    expect_error(holder.get("/api/v1/apps"), 401, "unauthorized")
    listed = next(t for t in list_all(team) if t["token_id"] == created["token_id"])
    assert listed["revoked_at"] == revoked["revoked_at"]


def test_revoking_twice_is_harmless_and_keeps_the_first_time(team: TeamClient) -> None:
    created = mint(team)
    first = check(team.delete(f"/api/v1/tokens/{created['token_id']}"), 200)
    second = check(team.delete(f"/api/v1/tokens/{created['token_id']}"), 200)
    assert second["revoked_at"] == first["revoked_at"]


def test_a_revoked_admin_token_is_401_everywhere(team: TeamClient) -> None:
    me = check(team.get("/api/v1/me"), 200)
    check(team.delete(f"/api/v1/tokens/{me['token_id']}"), 200)
    expect_error(team.get("/api/v1/me"), 401, "unauthorized")
    expect_error(team.post("/api/v1/tokens", json={}), 401, "unauthorized")
    expect_error(team.post("/api/v1/apps", json={"slug": "hello"}), 401, "unauthorized")


def test_another_teams_token_is_404(team: TeamClient, other_team: TeamClient) -> None:
    theirs = check(other_team.get("/api/v1/me"), 200)["token_id"]
    expect_error(team.delete(f"/api/v1/tokens/{theirs}"), 404, "not_found")
    check(other_team.get("/api/v1/me"), 200)


def test_unknown_token_is_404(team: TeamClient) -> None:
    expect_error(team.delete("/api/v1/tokens/999999"), 404, "not_found")


def test_members_cannot_revoke_admin_tokens(team: TeamClient, member: TeamClient) -> None:
    admin_id = check(team.get("/api/v1/me"), 200)["token_id"]
    expect_error(member.delete(f"/api/v1/tokens/{admin_id}"), 403, "forbidden")
    check(team.get("/api/v1/me"), 200)


def test_members_may_revoke_member_tokens(team: TeamClient, member: TeamClient) -> None:
    other = mint(team, name="other-member")
    check(member.delete(f"/api/v1/tokens/{other['token_id']}"), 200)
    expect_error(as_client(team, other).get("/api/v1/me"), 401, "unauthorized")


def test_admins_revoke_any_token_of_their_team(team: TeamClient, member: TeamClient) -> None:
    member_id = check(member.get("/api/v1/me"), 200)["token_id"]
    other_admin = mint(team, role="admin")
    check(team.delete(f"/api/v1/tokens/{member_id}"), 200)
    check(team.delete(f"/api/v1/tokens/{other_admin['token_id']}"), 200)
    expect_error(member.get("/api/v1/me"), 401, "unauthorized")
    expect_error(as_client(team, other_admin).get("/api/v1/me"), 401, "unauthorized")


@pytest.mark.parametrize("token_id", ["abc", "1.5", "-", "%20"])
def test_malformed_token_id_is_400(team: TeamClient, token_id: str) -> None:
    expect_error(team.delete(f"/api/v1/tokens/{token_id}"), 400, "invalid_request")


@pytest.mark.sqlite_only(
    "searches the SQLite file (and its WAL or dump) for secrets; PostgreSQL's would be pg_dump"
)
def test_secrets_are_stored_only_as_hashes(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any], db_path: Path
) -> None:
    minted = mint(team, name="ci")
    team.create_run("hello")
    lease = runner.lease()
    assert lease is not None
    secrets = {"team": minted["token"], "admin": team.token, "runner": runner.token}
    secrets["lease"] = lease.token
    with closing(sqlite3.connect(db_path)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(
            repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
        )
        team_hashes = {row[0] for row in db.execute("SELECT token_hash FROM team_token")}
        runner_hashes = {row[0] for row in db.execute("SELECT token_hash FROM runner")}
        lease_hashes = {row[0] for row in db.execute("SELECT lease_token_hash FROM run_attempt")}
    for name, secret in secrets.items():
        assert secret not in dump, f"the {name} token is stored in the clear"
    assert hash_token(minted["token"]) in team_hashes
    assert hash_token(team.token) in team_hashes
    assert hash_token(runner.token) in runner_hashes
    assert hash_token(lease.token) in lease_hashes
    assert hash_token(team.token) == hashlib.sha256(team.token.encode()).hexdigest()
