"""POST /api/v1/bootstrap/team: the operator creates a team, or gets back into one."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api_assertions import expect_error
from tests.support.clients import TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

PATH = "/api/v1/bootstrap/team"


def bootstrap(client: TestClient, body: Any, token: str | None = BOOTSTRAP_TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(PATH, json=body, headers=headers)


def test_new_team_gets_an_admin_token(client: TestClient) -> None:
    body = check(bootstrap(client, {"slug": "acme", "name": "Acme Inc."}), 201)
    assert set(body) == {"team_id", "slug", "token", "role"}
    assert body["slug"] == "acme"
    assert body["role"] == "admin"
    assert isinstance(body["team_id"], int)
    assert body["token"].startswith("mtk_")
    assert len(body["token"]) >= len("mtk_") + 43  # 32 random bytes, base64url

    me = check(client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"}), 200)
    assert me["team_id"] == body["team_id"]
    assert me["team_slug"] == "acme"
    assert me["role"] == "admin"


def test_each_team_is_separate(client: TestClient) -> None:
    acme = check(bootstrap(client, {"slug": "acme", "name": "Acme"}), 201)
    globex = check(bootstrap(client, {"slug": "globex", "name": "Globex"}), 201)
    assert acme["team_id"] != globex["team_id"]
    assert acme["token"] != globex["token"]


def test_same_slug_again_is_200_with_a_fresh_admin_token(client: TestClient) -> None:
    first = check(bootstrap(client, {"slug": "acme", "name": "Acme"}), 201)
    team = TeamClient(http=client, token=first["token"], team_id=first["team_id"])
    team.create_app("hello")

    again = check(bootstrap(client, {"slug": "acme", "name": "Acme"}), 200)
    assert again["team_id"] == first["team_id"]
    assert again["slug"] == "acme"
    assert again["role"] == "admin"
    assert again["token"] != first["token"]
    assert again["token"].startswith("mtk_")

    back_in = TeamClient(http=client, token=again["token"], team_id=again["team_id"])
    assert check(back_in.get("/api/v1/me"), 200)["role"] == "admin"
    # The way back in leads into the same team, with its data.
    assert [app["slug"] for app in check(back_in.get("/api/v1/apps"), 200)["apps"]] == ["hello"]


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "wrong-bootstrap-token-0123456789",
        BOOTSTRAP_TOKEN + "x",
        BOOTSTRAP_TOKEN[:-1],
        REGISTRATION_TOKEN,
    ],
    ids=["missing", "empty", "wrong", "longer", "shorter", "registration-token"],
)
def test_wrong_or_missing_bootstrap_token_is_401(client: TestClient, token: str | None) -> None:
    expect_error(bootstrap(client, {"slug": "acme", "name": "Acme"}, token), 401, "unauthorized")
    # Nothing was created: the first real bootstrap of that slug is still a 201.
    check(bootstrap(client, {"slug": "acme", "name": "Acme"}), 201)


def test_other_auth_schemes_are_401(client: TestClient) -> None:
    response = client.post(
        PATH,
        json={"slug": "acme", "name": "Acme"},
        headers={"Authorization": f"Basic {BOOTSTRAP_TOKEN}"},
    )
    expect_error(response, 401, "unauthorized")


def test_a_team_token_is_not_the_bootstrap_token(client: TestClient, team: TeamClient) -> None:
    expect_error(bootstrap(client, {"slug": "other", "name": "O"}, team.token), 401, "unauthorized")


@pytest.mark.parametrize(
    "body",
    [
        {"slug": "ab", "name": "Too short"},
        {"slug": "a" * 33, "name": "Too long"},
        {"slug": "Acme", "name": "Upper case"},
        {"slug": "1acme", "name": "Starts with a digit"},
        {"slug": "-acme", "name": "Starts with a dash"},
        {"slug": "acme_corp", "name": "Underscore"},
        {"slug": "acme corp", "name": "Space"},
        {"slug": "acme\n", "name": "Trailing newline"},
        {"slug": "acmé", "name": "Not ASCII"},
        {"slug": 1234, "name": "Not a string"},
        {"name": "No slug"},
        {"slug": "acme"},
        {"slug": "acme", "name": ""},
        {"slug": "acme", "name": "x" * 201},
        {"slug": "acme", "name": "Acme", "plan": "gold"},
        [],
        "acme",
    ],
)
def test_invalid_body_is_400(client: TestClient, body: Any) -> None:
    expect_error(bootstrap(client, body), 400, "invalid_request")


def test_valid_slug_edges_are_accepted(client: TestClient) -> None:
    for slug in ("abc", "a" * 32, "a-1", "z9-9-z"):
        check(bootstrap(client, {"slug": slug, "name": slug}), 201)


def test_bootstrap_is_disabled_without_a_configured_token(make_client: ClientFactory) -> None:
    client = make_client(bootstrap_token=None)
    expect_error(bootstrap(client, {"slug": "acme", "name": "Acme"}), 403, "forbidden")
