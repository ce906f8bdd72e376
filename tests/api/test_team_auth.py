"""Password sign-in: bootstrap with a password, public signup, login, auth options, and
what an attacker could try against them (guessing, enumerating, oversized input)."""

from typing import Any

from fastapi.testclient import TestClient

from tests.support.api_assertions import expect_error
from tests.support.clients import check
from tests.support.inprocess_api import ClientFactory
from tests.support.rows import Rows
from tests.support.tokens import BOOTSTRAP_TOKEN

PASSWORD = "correct horse battery"
LOGIN = "/api/v1/teams/login"
SIGNUP = "/api/v1/teams/signup"


def bootstrap(client: TestClient, slug: str = "acme", **extra: Any) -> Any:
    return client.post(
        "/api/v1/bootstrap/team",
        json={"slug": slug, "name": slug.title(), **extra},
        headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"},
    )


def login(client: TestClient, slug: str, password: str, **kwargs: Any) -> Any:
    return client.post(LOGIN, json={"slug": slug, "password": password}, **kwargs)


def me(client: TestClient, token: str) -> Any:
    return check(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 200)


def test_bootstrap_with_a_password_then_login_gives_a_fresh_admin_token(
    client: TestClient,
) -> None:
    created = check(bootstrap(client, password=PASSWORD), 201)
    body = check(login(client, "acme", PASSWORD), 201)
    assert set(body) == {"team_id", "slug", "token", "token_id", "role"}
    assert body["team_id"] == created["team_id"] and body["slug"] == "acme"
    assert body["role"] == "admin" and body["token"].startswith("mtk_")
    assert body["token"] != created["token"]
    assert me(client, body["token"])["token_id"] == body["token_id"]
    # Each login is a token of its own, listed (and revocable) like any other.
    again = check(login(client, "acme", PASSWORD), 201)
    assert again["token_id"] != body["token_id"]
    tokens = check(
        client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {body['token']}"}), 200
    )["tokens"]
    assert [t["name"] for t in tokens].count("login") == 2


def test_the_password_is_stored_only_as_a_salted_scrypt_hash(
    client: TestClient, rows: Rows
) -> None:
    check(bootstrap(client, password=PASSWORD), 201)
    check(bootstrap(client, "globex", password=PASSWORD), 201)
    hashes = [row["password_hash"] for row in rows.select("team")]
    assert len(hashes) == 2
    assert all(h.startswith("scrypt$16384$8$1$") for h in hashes), hashes
    assert PASSWORD not in "".join(hashes)
    assert hashes[0] != hashes[1]  # salted


def test_bootstrap_again_with_a_password_resets_it(client: TestClient) -> None:
    check(bootstrap(client, password=PASSWORD), 201)
    check(bootstrap(client, password="another password"), 200)
    expect_error(login(client, "acme", PASSWORD), 401, "unauthorized")
    check(login(client, "acme", "another password"), 201)
    # Without a password, bootstrap leaves the one set.
    check(bootstrap(client), 200)
    check(login(client, "acme", "another password"), 201)


def test_wrong_password_unknown_team_and_no_password_get_the_same_answer(
    client: TestClient,
) -> None:
    check(bootstrap(client, password=PASSWORD), 201)
    check(bootstrap(client, "globex"), 201)  # no password: token sign-in only
    answers = [
        expect_error(login(client, "acme", "wrong password"), 401, "unauthorized"),
        expect_error(login(client, "nosuchteam", PASSWORD), 401, "unauthorized"),
        expect_error(login(client, "globex", PASSWORD), 401, "unauthorized"),
        expect_error(login(client, "NOT A SLUG!", PASSWORD), 401, "unauthorized"),
        expect_error(login(client, "acme", ""), 401, "unauthorized"),
    ]
    assert all(answer == answers[0] for answer in answers), answers


def test_short_passwords_are_refused_with_the_minimum(
    client: TestClient, make_client: ClientFactory
) -> None:
    error = expect_error(bootstrap(client, password="short"), 400, "invalid_request")
    assert "at least 8 characters" in error["message"]
    # Nothing was created by the refused request.
    expect_error(login(client, "acme", "short"), 401, "unauthorized")
    relaxed = make_client(min_password_length=4)
    check(bootstrap(relaxed, password="four"), 201)
    check(login(relaxed, "acme", "four"), 201)


def test_oversized_and_malformed_bodies_are_400_not_hashed(client: TestClient) -> None:
    huge = "x" * 60_000
    expect_error(login(client, "acme", huge), 400, "invalid_request")
    expect_error(login(client, "a" * 60_000, PASSWORD), 400, "invalid_request")
    expect_error(bootstrap(client, password=huge), 400, "invalid_request")
    expect_error(client.post(LOGIN, json={"slug": "acme"}), 400, "invalid_request")
    expect_error(client.post(LOGIN, json={"slug": 5, "password": 5}), 400, "invalid_request")
    expect_error(
        client.post(LOGIN, content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "invalid_request",
    )


def test_failed_logins_are_rate_limited_per_slug(make_client: ClientFactory) -> None:
    client = make_client(login_attempts_per_slug=3, login_attempts_per_address=100)
    check(bootstrap(client, password=PASSWORD), 201)
    for _ in range(3):
        expect_error(login(client, "acme", "guess"), 401, "unauthorized")
    # Even the right password waits now: the guesser cannot tell it was right.
    response = login(client, "acme", PASSWORD)
    error = expect_error(response, 429, "rate_limited")
    assert "this team" in error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 300
    # Another team is not held up by guesses against this one.
    check(bootstrap(client, "globex", password=PASSWORD), 201)
    check(login(client, "globex", PASSWORD), 201)


def test_failed_logins_are_rate_limited_per_address(make_client: ClientFactory) -> None:
    client = make_client(login_attempts_per_slug=100, login_attempts_per_address=4)
    check(bootstrap(client, password=PASSWORD), 201)
    # A guesser spreading guesses over many slugs is still one address.
    for n in range(4):
        expect_error(login(client, f"team-{n}", "guess"), 401, "unauthorized")
    error = expect_error(login(client, "acme", PASSWORD), 429, "rate_limited")
    assert "this address" in error["message"]


def test_a_right_password_forgives_the_teams_earlier_failures(
    make_client: ClientFactory,
) -> None:
    client = make_client(login_attempts_per_slug=3, login_attempts_per_address=100)
    check(bootstrap(client, password=PASSWORD), 201)
    for _ in range(2):
        expect_error(login(client, "acme", "typo"), 401, "unauthorized")
    check(login(client, "acme", PASSWORD), 201)
    for _ in range(2):
        expect_error(login(client, "acme", "typo"), 401, "unauthorized")
    check(login(client, "acme", PASSWORD), 201)


def test_signup_is_forbidden_unless_enabled(client: TestClient) -> None:
    body = {"slug": "acme", "name": "Acme", "password": PASSWORD}
    error = expect_error(client.post(SIGNUP, json=body), 403, "forbidden")
    assert "MINITOWER_PUBLIC_SIGNUP_ENABLED" in error["message"]
    expect_error(login(client, "acme", PASSWORD), 401, "unauthorized")


def test_signup_creates_a_team_with_a_password(make_client: ClientFactory) -> None:
    client = make_client(public_signup_enabled=True)
    body = {"slug": "acme", "name": "Acme", "password": PASSWORD}
    created = check(client.post(SIGNUP, json=body), 201)
    assert created["slug"] == "acme" and created["role"] == "admin"
    assert me(client, created["token"])["team_slug"] == "acme"
    check(login(client, "acme", PASSWORD), 201)
    # The team can run apps at once: its default environment exists.
    taken = expect_error(client.post(SIGNUP, json=body), 409, "slug_taken")
    assert "acme" in taken["message"]
    # An existing team cannot be taken over by signing up again with another password.
    expect_error(login(client, "acme", "other password"), 401, "unauthorized")
    expect_error(
        client.post(SIGNUP, json={**body, "slug": "globex", "password": "short"}),
        400,
        "invalid_request",
    )
    expect_error(client.post(SIGNUP, json={**body, "slug": "Bad Slug"}), 400, "invalid_request")
    expect_error(client.post(SIGNUP, json={**body, "extra": 1}), 400, "invalid_request")


def test_auth_options_say_which_ways_are_on(client: TestClient, make_client: ClientFactory) -> None:
    assert check(client.get("/api/v1/auth/options"), 200) == {
        "signup_enabled": False,
        "bootstrap_enabled": True,
        "password_login_enabled": True,
        "min_password_length": 8,
    }
    other = make_client(public_signup_enabled=True, bootstrap_token=None, min_password_length=12)
    options = check(other.get("/api/v1/auth/options"), 200)
    assert options["signup_enabled"] is True and options["bootstrap_enabled"] is False
    assert options["min_password_length"] == 12


def test_the_new_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = check(client.get("/openapi.json"), 200)["paths"]
    for path in (
        "/api/v1/teams/login",
        "/api/v1/teams/signup",
        "/api/v1/auth/options",
        "/api/v1/runs/summary",
        "/api/v1/runs/{run_id}/rerun",
    ):
        assert path in paths, path
    assert "429" in paths["/api/v1/teams/login"]["post"]["responses"]
