"""Secrets per environment: admin-only writes, never a value back, team scoping, limits,
and delivery only to the runner holding the run's live lease."""

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.support.api_assertions import expect_error
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.rows import Rows
from tests.support.secrets import (
    KEY,
    OTHER_KEY,
    delete_secret,
    put_secret,
    run_secrets,
    secrets_archive,
)
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

DB_URL = "postgres://app:s3cr3t-Pa55@db/app"
API_KEY = "sk-live-0123456789abcdef"


@pytest.fixture
def api(make_client: ClientFactory) -> TestClient:
    return make_client(secrets_key=SecretStr(KEY))


@pytest.fixture
def acme(api: TestClient) -> TeamClient:
    return TeamClient.bootstrap(api, "acme", BOOTSTRAP_TOKEN)


@pytest.fixture
def globex(api: TestClient) -> TeamClient:
    return TeamClient.bootstrap(api, "globex", BOOTSTRAP_TOKEN)


@pytest.fixture
def acme_member(acme: TeamClient) -> TeamClient:
    body = check(acme.post("/api/v1/tokens", json={"name": "ci", "role": "member"}), 201)
    return TeamClient(http=acme.http, token=body["token"], team_id=acme.team_id)


def _listing(team: TeamClient, **params: str) -> list[dict[str, object]]:
    secrets: list[dict[str, object]] = check(team.get("/api/v1/secrets", params=params), 200)[
        "secrets"
    ]
    return secrets


def test_an_admin_creates_then_replaces_and_nobody_reads_the_value_back(
    acme: TeamClient, acme_member: TeamClient
) -> None:
    created = check(put_secret(acme, "DB_URL", DB_URL), 201)
    assert created["name"] == "DB_URL" and created["environment"] == "default"
    assert created["set_by_token_id"] == 1 and created["set_by_token_name"] == "bootstrap"
    replaced = check(put_secret(acme, "DB_URL", DB_URL + "-2"), 200)
    assert replaced["created_at"] == created["created_at"]
    check(put_secret(acme, "DB_URL", "prod-only-value", environment="prod"), 201)
    for who in (acme, acme_member):
        response = who.get("/api/v1/secrets")
        assert DB_URL not in response.text and "prod-only-value" not in response.text
        rows = check(response, 200)["secrets"]
        assert [(r["name"], r["environment"]) for r in rows] == [
            ("DB_URL", "default"),
            ("DB_URL", "prod"),
        ]
        assert all("value" not in r for r in rows)
    assert [r["environment"] for r in _listing(acme_member, environment="prod")] == ["prod"]


def test_a_member_cannot_write(acme: TeamClient, acme_member: TeamClient) -> None:
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    expect_error(put_secret(acme_member, "DB_URL", "mine"), 403, "forbidden")
    expect_error(put_secret(acme_member, "NEW_ONE", "mine"), 403, "forbidden")
    expect_error(delete_secret(acme_member, "DB_URL"), 403, "forbidden")
    assert [r["name"] for r in _listing(acme)] == ["DB_URL"]


def test_another_teams_admin_never_sees_nor_touches_them(
    acme: TeamClient, globex: TeamClient
) -> None:
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    assert _listing(globex) == []
    expect_error(delete_secret(globex, "DB_URL"), 404, "not_found")
    # Its own secret of the same name is its own row: acme's stays as it was.
    check(put_secret(globex, "DB_URL", "globex-value"), 201)
    check(delete_secret(globex, "DB_URL"), 204)
    assert [r["name"] for r in _listing(acme)] == ["DB_URL"]


def test_delete_removes_and_a_second_delete_is_404(acme: TeamClient) -> None:
    check(put_secret(acme, "API_KEY", API_KEY, environment="prod"), 201)
    expect_error(delete_secret(acme, "API_KEY"), 404, "not_found")  # not in default
    check(delete_secret(acme, "API_KEY", environment="prod"), 204)
    expect_error(delete_secret(acme, "API_KEY", environment="prod"), 404, "not_found")
    assert _listing(acme) == []


@pytest.mark.parametrize(
    "name", ["db_url", "1DB", "MINITOWER_TOKEN", "A" * 65, "DB-URL", "DB%0A", "DB%20URL"]
)
def test_bad_names_are_refused(acme: TeamClient, name: str) -> None:
    expect_error(put_secret(acme, name, "value"), 400, "invalid_request")
    assert _listing(acme) == []


@pytest.mark.parametrize("environment", ["Prod", "-x", "a" * 65, "prod env"])
def test_bad_environments_are_refused(acme: TeamClient, environment: str) -> None:
    expect_error(put_secret(acme, "DB_URL", "v", environment=environment), 400, "invalid_request")
    expect_error(
        acme.get("/api/v1/secrets", params={"environment": environment}), 400, "invalid_request"
    )


def test_values_over_64_kib_are_refused_without_echoing_them(acme: TeamClient) -> None:
    check(put_secret(acme, "BIG", "é" * (32 * 1024)), 201)  # exactly 64 KiB of UTF-8
    too_big = "Q" * (60 * 1024) + "é" * 3000  # 66 KB of UTF-8, 63 K characters
    response = put_secret(acme, "BIG", too_big)
    error = expect_error(response, 400, "invalid_request")
    assert "65536" in error["message"]
    assert "QQQQQQQQ" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"value": "hunter2-but-\u0000-nul"},
        {"value": 12345678},
        {"value": ["hunter2-list"]},
        {"value": "hunter2-extra", "extra": "x"},
        {},
    ],
)
def test_bad_bodies_never_echo_the_value(acme: TeamClient, body: dict[str, object]) -> None:
    response = acme.http.put("/api/v1/secrets/DB_URL", json=body, headers=acme.headers)
    expect_error(response, 400, "invalid_request")
    assert "hunter2" not in response.text and "12345678" not in response.text


def test_a_lone_surrogate_is_refused(acme: TeamClient) -> None:
    response = acme.http.put(
        "/api/v1/secrets/DB_URL",
        content=b'{"value": "abc\\ud800def"}',
        headers={**acme.headers, "Content-Type": "application/json"},
    )
    expect_error(response, 400, "invalid_request")
    assert "abc" not in response.text


def test_a_revoked_token_gets_401(acme: TeamClient) -> None:
    body = check(acme.post("/api/v1/tokens", json={"name": "old", "role": "admin"}), 201)
    old = TeamClient(http=acme.http, token=body["token"], team_id=acme.team_id)
    check(put_secret(old, "DB_URL", DB_URL), 201)
    check(acme.delete(f"/api/v1/tokens/{body['token_id']}"), 200)
    expect_error(put_secret(old, "DB_URL", "x"), 401, "unauthorized")
    expect_error(old.get("/api/v1/secrets"), 401, "unauthorized")
    expect_error(delete_secret(old, "DB_URL"), 401, "unauthorized")
    # Who set it stays visible after the token is revoked.
    assert _listing(acme)[0]["set_by_token_name"] == "old"


def test_without_a_key_nothing_can_be_set(client: TestClient) -> None:
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    error = expect_error(put_secret(team, "DB_URL", DB_URL), 409, "secrets_not_configured")
    assert "MINITOWER_SECRETS_KEY" in error["message"]
    assert "generate-secrets-key" in error["message"]
    assert _listing(team) == []


@pytest.mark.sqlite_only(
    "searches the SQLite file (and its WAL or dump) for secrets; PostgreSQL's would be pg_dump"
)
def test_the_database_holds_ciphertext_only(acme: TeamClient, db_path: Path) -> None:
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    with closing(sqlite3.connect(db_path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (ciphertext,) = db.execute("SELECT ciphertext FROM secret").fetchone()
    assert DB_URL not in ciphertext
    # Read by another process: closing a descriptor of the database file here would drop
    # this process's SQLite locks on it (POSIX advisory locks are per process).
    for path in (db_path, Path(f"{db_path}-wal")):
        if path.exists():
            found = subprocess.run(["grep", "-qaF", DB_URL, str(path)], check=False)
            assert found.returncode == 1, path


# --- delivery -----------------------------------------------------------------------------


def _leased(team: TeamClient, runner: RunnerClient, environment: str = "default") -> Lease:
    run = team.create_run("vault", environment=environment)
    lease = runner.lease()
    assert lease is not None and lease.run_id == run["run_id"]
    return lease


def test_the_leasing_runner_gets_the_declared_secrets_of_the_runs_environment(
    api: TestClient, acme: TeamClient
) -> None:
    acme.deploy("vault", secrets_archive())
    version = check(acme.get("/api/v1/apps/vault/versions/1"), 200)
    assert version["secrets"] == ["DB_URL", "API_KEY"]
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    check(put_secret(acme, "API_KEY", API_KEY), 201)
    check(put_secret(acme, "UNDECLARED", "not-for-this-app"), 201)
    check(put_secret(acme, "DB_URL", "prod-db-url", environment="prod"), 201)
    runner = RunnerClient.register(api, "runner-1", REGISTRATION_TOKEN)
    lease = _leased(acme, runner)
    # The grant names what to fetch (never a value): the runner asks only when some.
    assert lease.body["secrets"] == ["DB_URL", "API_KEY"]
    assert DB_URL not in json.dumps(lease.body)
    response = run_secrets(runner, lease)
    body = check(response, 200)
    assert response.headers["cache-control"] == "no-store"
    assert body == {
        "environment": "default",
        "secrets": {"DB_URL": DB_URL, "API_KEY": API_KEY},
        "missing": [],
    }
    # Started, the lease still lives: same answer. Finished: 410.
    check(runner.start(lease), 200)
    check(run_secrets(runner, lease), 200)
    check(runner.result(lease, "completed", exit_code=0), 200)
    expect_error(run_secrets(runner, lease), 410, "gone")


def test_a_lease_of_another_environment_gets_that_environments_secrets_only(
    api: TestClient, acme: TeamClient
) -> None:
    acme.deploy("vault", secrets_archive())
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    check(put_secret(acme, "API_KEY", API_KEY), 201)
    check(put_secret(acme, "DB_URL", "prod-db-url", environment="prod"), 201)
    prod_runner = RunnerClient.register(api, "prod-1", REGISTRATION_TOKEN, environment="prod")
    lease = _leased(acme, prod_runner, environment="prod")
    body = check(run_secrets(prod_runner, lease), 200)
    assert body == {
        "environment": "prod",
        "secrets": {"DB_URL": "prod-db-url"},
        "missing": ["API_KEY"],
    }


def test_no_live_lease_no_secrets(api: TestClient, acme: TeamClient, globex: TeamClient) -> None:
    acme.deploy("vault", secrets_archive())
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    runner = RunnerClient.register(api, "runner-1", REGISTRATION_TOKEN)
    other = RunnerClient.register(api, "runner-2", REGISTRATION_TOKEN)
    token = check(globex.post("/api/v1/runner-registration-tokens", json={}), 201)["token"]
    globex_runner = RunnerClient.register(api, "globex-1", token)
    lease = _leased(acme, runner)
    for stranger in (other, globex_runner):
        # Another runner (shared, or bound to another team) with this lease's token.
        stolen = RunnerClient(
            http=api, token=stranger.token, runner_id=stranger.runner_id, name=stranger.name
        )
        response = run_secrets(stolen, lease)
        expect_error(response, 410, "gone")
        assert DB_URL not in response.text
    wrong_lease = Lease(run_id=lease.run_id, token="mtl_" + "0" * 40, body=lease.body)
    expect_error(run_secrets(runner, wrong_lease), 410, "gone")
    no_runner = api.get(
        f"/api/v1/runs/{lease.run_id}/secrets", headers={"X-Lease-Token": lease.token}
    )
    assert no_runner.status_code == 401
    check(runner.start(lease), 200)
    check(runner.result(lease, "failed", exit_code=1), 200)
    expect_error(run_secrets(runner, lease), 410, "gone")


def test_a_ciphertext_copied_into_another_row_does_not_decrypt(
    api: TestClient, acme: TeamClient, rows: Rows
) -> None:
    acme.deploy("vault", secrets_archive())
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    check(put_secret(acme, "API_KEY", API_KEY), 201)
    copied = rows.execute(
        "UPDATE secret SET ciphertext = "
        "(SELECT ciphertext FROM secret WHERE name = 'DB_URL') WHERE name = 'API_KEY'"
    )
    assert copied == 1
    runner = RunnerClient.register(api, "runner-1", REGISTRATION_TOKEN)
    body = check(run_secrets(runner, _leased(acme, runner)), 200)
    assert body["secrets"] == {"DB_URL": DB_URL}
    assert body["missing"] == ["API_KEY"]


def test_an_app_without_declared_secrets_gets_none(
    api: TestClient, acme: TeamClient, hello_archive: bytes
) -> None:
    acme.deploy("hello", hello_archive)
    check(put_secret(acme, "DB_URL", DB_URL), 201)
    runner = RunnerClient.register(api, "runner-1", REGISTRATION_TOKEN)
    acme.create_run("hello")
    lease = runner.lease()
    assert lease is not None
    assert lease.body["secrets"] == []  # so the runner does not ask; asking gets none
    assert check(run_secrets(runner, lease), 200) == {
        "environment": "default",
        "secrets": {},
        "missing": [],
    }


def test_a_towerfile_with_a_bad_secret_name_is_refused(acme: TeamClient) -> None:
    from tests.support.archives import make_archive

    towerfile = '[app]\nname = "vault"\nscript = "main.py"\nsecrets = ["MINITOWER_X"]\n'
    acme.create_app("vault")
    response = acme.upload("vault", make_archive({"Towerfile": towerfile, "main.py": ""}))
    error = expect_error(response, 400, "invalid_request")
    assert "MINITOWER_" in error["message"]


def test_a_key_list_decrypts_with_any_key(make_client: ClientFactory) -> None:
    old = make_client(secrets_key=SecretStr(OTHER_KEY))
    team = TeamClient.bootstrap(old, "acme", BOOTSTRAP_TOKEN)
    team.deploy("vault", secrets_archive())
    check(put_secret(team, "DB_URL", DB_URL), 201)
    check(put_secret(team, "API_KEY", API_KEY), 201)
    both = make_client(secrets_key=SecretStr(f"{KEY},{OTHER_KEY}"))
    runner = RunnerClient.register(both, "runner-1", REGISTRATION_TOKEN)
    team.create_run("vault")
    lease = runner.lease()
    assert lease is not None
    assert check(run_secrets(runner, lease), 200)["secrets"] == {
        "DB_URL": DB_URL,
        "API_KEY": API_KEY,
    }


def test_a_body_that_is_not_json_never_echoes_it(acme: TeamClient) -> None:
    response = acme.http.put(
        "/api/v1/secrets/DB_URL",
        content=b'{"value": "hunter2-unterminated',
        headers={**acme.headers, "Content-Type": "application/json"},
    )
    expect_error(response, 400, "invalid_request")
    assert "hunter2" not in response.text
