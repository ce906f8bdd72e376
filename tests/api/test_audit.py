"""The audit log: every change made with a team token, a console session or an operator
secret leaves exactly one row naming who, what and where from; refused changes leave
none; GET /api/v1/audit shows admins their own team's rows only."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from minitower_api.maintenance import prune, runner_tokens, shared_runners
from minitower_api.settings import ApiSettings
from tests.support.api_assertions import expect_error, walk_pages
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import Database, database_env
from tests.support.inprocess_api import ClientFactory
from tests.support.maintenance import minitowerd
from tests.support.rows import Rows
from tests.support.secrets import KEY, delete_secret, put_secret
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

AUDIT = "/api/v1/audit"


def audit_rows(rows: Rows, after_id: int = 0) -> list[dict[str, Any]]:
    """The audit rows after ``after_id``: ``detail`` decoded, ``at`` as text (a row can
    be searched with ``json.dumps``)."""
    found = rows.select("audit_event", "id > :after_id", after_id=after_id)
    return [row | {"at": row["at"].isoformat()} for row in found]


class Tail:
    """The rows appended since the last look."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        existing = audit_rows(rows)
        self.last = existing[-1]["id"] if existing else 0

    def new(self) -> list[dict[str, Any]]:
        added = audit_rows(self.rows, self.last)
        if added:
            self.last = added[-1]["id"]
        return added

    def one(self, action: str, object_type: str, object_id: object, **expected: Any) -> Any:
        added = self.new()
        assert [r["action"] for r in added] == [action], added
        (row,) = added
        assert (row["object_type"], row["object_id"]) == (object_type, str(object_id)), row
        for key, value in expected.items():
            assert row[key] == value, (key, row)
        return row

    def none(self) -> None:
        assert self.new() == []


def token_id_of(team: TeamClient) -> int:
    me = check(team.get("/api/v1/me"), 200)
    return int(me["token_id"])


def test_every_team_change_leaves_one_row_naming_its_token(
    team: TeamClient, rows: Rows, hello_archive: bytes, client: TestClient
) -> None:
    admin_id = token_id_of(team)
    tail = Tail(rows)
    by_admin = {
        "team_id": team.team_id,
        "actor_kind": "token",
        "actor_token_id": admin_id,
        "actor_name": "bootstrap",
    }

    created = check(team.post("/api/v1/tokens", json={"name": "ci", "role": "member"}), 201)
    row = tail.one("token.create", "token", created["token_id"], **by_admin)
    assert row["detail"] == {"role": "member", "name": "ci"}
    assert created["token"] not in json.dumps(row)
    check(team.delete(f"/api/v1/tokens/{created['token_id']}"), 200)
    tail.one("token.revoke", "token", created["token_id"], **by_admin)
    check(team.delete(f"/api/v1/tokens/{created['token_id']}"), 200)
    tail.none()  # idempotent: revoking again changes nothing

    team.create_app("hello")
    tail.one("app.create", "app", "hello", **by_admin)
    check(team.patch("/api/v1/apps/hello", json={"disabled": True}), 200)
    tail.one("app.disable", "app", "hello", **by_admin)
    check(team.patch("/api/v1/apps/hello", json={"disabled": False}), 200)
    tail.one("app.enable", "app", "hello", **by_admin)
    check(team.patch("/api/v1/apps/hello", json={"max_concurrent_runs": 2}), 200)
    assert tail.one("app.update", "app", "hello")["detail"] == {"max_concurrent_runs": 2}

    check(team.upload("hello", hello_archive), 201)
    row = tail.one("version.upload", "version", "hello/1", **by_admin)
    assert row["detail"]["version_no"] == 1 and len(row["detail"]["sha256"]) == 64

    run = team.create_run("hello", input={"greeting": "hi"})
    row = tail.one("run.create", "run", run["run_id"], **by_admin)
    assert row["detail"] == {"app": "hello", "version_no": 1}
    check(team.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
    row = tail.one("run.cancel", "run", run["run_id"], **by_admin)
    assert row["detail"] == {"from": "queued", "to": "cancelled"}
    check(team.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
    tail.none()  # idempotent: the run was already cancelled
    again = check(team.post(f"/api/v1/runs/{run['run_id']}/rerun"), 201)
    row = tail.one("run.rerun", "run", again["run_id"], **by_admin)
    assert row["detail"]["rerun_of"] == run["run_id"]

    path = "/api/v1/apps/hello/schedules"
    schedule = check(team.post(path, json={"name": "nightly", "cron": "0 3 * * *"}), 201)
    sid = schedule["schedule_id"]
    tail.one("schedule.create", "schedule", sid, **by_admin)
    check(team.patch(f"{path}/{sid}", json={"enabled": False}), 200)
    tail.one("schedule.pause", "schedule", sid, **by_admin)
    check(team.patch(f"{path}/{sid}", json={"enabled": True}), 200)
    tail.one("schedule.resume", "schedule", sid, **by_admin)
    check(team.patch(f"{path}/{sid}", json={"cron": "0 4 * * *", "max_retries": 2}), 200)
    row = tail.one("schedule.update", "schedule", sid, **by_admin)
    assert row["detail"] == {"app": "hello", "fields": ["cron", "max_retries"]}
    check(team.delete(f"{path}/{sid}"), 204)
    tail.one("schedule.delete", "schedule", sid, **by_admin)

    check(team.patch("/api/v1/environments/gpu", json={"max_concurrent_runs": 3}), 200)
    tail.one("environment.update", "environment", "gpu", **by_admin)

    hook = check(
        team.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/mt", "events": ["run.failed"]},
        ),
        201,
    )
    hid = hook["webhook_id"]
    row = tail.one("webhook.create", "webhook", hid, **by_admin)
    assert hook["secret"] not in json.dumps(row) and "hooks.example.com" not in json.dumps(row)
    rotated = "whsec_rotated_by_the_admin_0123456789"
    check(team.patch(f"/api/v1/webhooks/{hid}", json={"secret": rotated, "enabled": False}), 200)
    row = tail.one("webhook.update", "webhook", hid, **by_admin)
    assert row["detail"] == {"changed": ["enabled", "secret"]}
    assert rotated not in json.dumps(row)
    check(team.delete(f"/api/v1/webhooks/{hid}"), 204)
    tail.one("webhook.delete", "webhook", hid, **by_admin)

    minted = check(team.post("/api/v1/runner-registration-tokens", json={"name": "fleet"}), 201)
    rid = minted["registration_token_id"]
    row = tail.one("runner_registration_token.create", "runner_registration_token", rid)
    assert minted["token"] not in json.dumps(row)
    bound = RunnerClient.register(client, "bound-1", minted["token"])
    tail.one(
        "runner.register",
        "runner",
        bound.runner_id,
        team_id=team.team_id,
        actor_kind="registration_token",
        actor_token_id=rid,
        actor_name="fleet",
    )
    check(team.delete(f"/api/v1/runner-registration-tokens/{rid}"), 200)
    tail.one("runner_registration_token.revoke", "runner_registration_token", rid, **by_admin)
    check(team.delete(f"/api/v1/runner-registration-tokens/{rid}"), 200)
    tail.none()


def test_secret_changes_leave_one_row_without_the_value(
    make_client: ClientFactory, rows: Rows
) -> None:
    team = TeamClient.bootstrap(make_client(secrets_key=SecretStr(KEY)), "acme", BOOTSTRAP_TOKEN)
    tail = Tail(rows)
    by_admin = {"actor_kind": "token", "actor_token_id": token_id_of(team)}
    value = "postgres://app:audit-s3cr3t@db/app"
    check(put_secret(team, "DB_URL", value, "prod"), 201)
    row = tail.one("secret.set", "secret", "prod/DB_URL", **by_admin)
    assert row["detail"] == {"name": "DB_URL", "environment": "prod", "created": True}
    check(put_secret(team, "DB_URL", value * 2, "prod"), 200)
    assert tail.one("secret.set", "secret", "prod/DB_URL")["detail"]["created"] is False
    check(delete_secret(team, "DB_URL", "prod"), 204)
    tail.one("secret.delete", "secret", "prod/DB_URL", **by_admin)
    check(delete_secret(team, "DB_URL", "prod"), 404)
    tail.none()  # nothing was deleted
    assert not any(value in json.dumps(r) for r in audit_rows(rows))


def test_a_member_token_is_the_actor_of_its_own_changes(
    team: TeamClient, member: TeamClient, rows: Rows
) -> None:
    tail = Tail(rows)
    member.create_app("etl")
    tail.one(
        "app.create",
        "app",
        "etl",
        actor_kind="token",
        actor_token_id=token_id_of(member),
        actor_name="ci",
    )


def test_operator_actions_are_recorded_as_the_operator(
    client: TestClient, database: Database, rows: Rows
) -> None:
    tail = Tail(rows)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    row = tail.one(
        "team.bootstrap",
        "team",
        team.team_id,
        team_id=team.team_id,
        actor_kind="operator",
        actor_token_id=None,
    )
    assert row["detail"]["created"] is True and row["detail"]["token_id"] == token_id_of(team)

    shared = RunnerClient.register(client, "shared-1", REGISTRATION_TOKEN)
    tail.one("runner.register", "runner", shared.runner_id, team_id=None, actor_kind="operator")

    line = shared_runners.set_shared_runners(database, "acme", False, busy_timeout=5)
    assert line == "team acme: shared runners denied"
    tail.one("team.shared_runners", "team", team.team_id, team_id=team.team_id)
    shared_runners.set_shared_runners(database, "acme", False, busy_timeout=5)
    tail.none()  # unchanged: nothing to record

    runner_tokens.revoke_runner_tokens(database, ["shared-1"], busy_timeout=5)
    tail.one("runner.token_revoke", "runner", shared.runner_id, actor_kind="operator")


def test_signup_and_password_login_are_recorded(make_client: ClientFactory, rows: Rows) -> None:
    http = make_client(public_signup_enabled=True)
    tail = Tail(rows)
    body = {"slug": "newco", "name": "NewCo", "password": "long-enough-1"}
    signed_up = check(http.post("/api/v1/teams/signup", json=body), 201)
    row = tail.one("team.signup", "team", signed_up["team_id"], actor_kind="password")
    assert row["detail"] == {"slug": "newco", "token_id": signed_up["token_id"]}
    assert signed_up["token"] not in json.dumps(row)
    login = {"slug": "newco", "password": "long-enough-1"}
    logged_in = check(http.post("/api/v1/teams/login", json=login), 201)
    tail.one(
        "team.login",
        "token",
        logged_in["token_id"],
        team_id=signed_up["team_id"],
        actor_kind="password",
    )
    # A wrong password changes nothing: it is throttled in memory, not written down.
    wrong = {"slug": "newco", "password": "wrong-password"}
    expect_error(http.post("/api/v1/teams/login", json=wrong), 401, "unauthorized")
    tail.none()


def test_refused_changes_leave_no_row(
    team: TeamClient, member: TeamClient, rows: Rows, hello_archive: bytes
) -> None:
    team.deploy("hello", hello_archive)
    tail = Tail(rows)
    expect_error(team.post("/api/v1/apps", json={"slug": "hello"}), 409, "slug_taken")
    path = "/api/v1/apps/hello/schedules"
    expect_error(team.post(path, json={"cron": "not a cron"}), 400, "invalid_request")
    check(team.post(path, json={"name": "a", "cron": "@daily"}), 201)
    b = check(team.post(path, json={"name": "b", "cron": "@daily"}), 201)
    tail.new()
    expect_error(team.patch(f"{path}/{b['schedule_id']}", json={"name": "a"}), 409, "conflict")
    expect_error(member.post("/api/v1/tokens", json={"role": "admin"}), 403, "forbidden")
    expect_error(member.patch("/api/v1/environments/x", json={}), 403, "forbidden")
    check(team.patch("/api/v1/apps/hello", json={"disabled": True}), 200)
    tail.new()
    expect_error(team.post("/api/v1/apps/hello/runs"), 409, "app_disabled")
    expect_error(team.post("/api/v1/runs/999/cancel"), 404, "not_found")
    tail.none()


def test_only_admins_read_the_log_and_only_their_own_team(
    team: TeamClient, member: TeamClient, other_team: TeamClient
) -> None:
    team.create_app("hello")
    other_team.create_app("theirs")
    expect_error(member.get(AUDIT), 403, "forbidden")
    ours = check(team.get(AUDIT), 200)["events"]
    assert [e["action"] for e in ours] == ["app.create", "token.create", "team.bootstrap"]
    assert {e["team_id"] for e in ours} == {team.team_id}
    theirs = check(other_team.get(AUDIT), 200)["events"]
    assert [(e["action"], e["object_id"]) for e in theirs] == [
        ("app.create", "theirs"),
        ("team.bootstrap", str(other_team.team_id)),
    ]
    expect_error(team.http.get(AUDIT), 401, "unauthorized")


def test_pages_newest_first_and_filters(team: TeamClient) -> None:
    for n in range(5):
        team.create_app(f"app-{n}")
    check(team.patch("/api/v1/apps/app-2", json={"disabled": True}), 200)
    pages = walk_pages(team, AUDIT, "events", "audit_id", limit=2)
    ids = [i for page in pages for i in page]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) == 7
    assert [len(p) for p in pages] == [2, 2, 2, 1]

    def actions(**params: Any) -> list[tuple[str, str]]:
        events = check(team.get(AUDIT, params=params), 200)["events"]
        return [(e["action"], e["object_id"]) for e in events]

    assert actions(action="app.disable") == [("app.disable", "app-2")]
    assert len(actions(action="app.")) == 6
    assert actions(action="app") == []  # exact unless it ends in "."
    assert actions(object_type="app", object_id="app-2") == [
        ("app.disable", "app-2"),
        ("app.create", "app-2"),
    ]
    assert actions(object_type="team") == [("team.bootstrap", str(team.team_id))]
    now = datetime.now(UTC)
    assert len(actions(since=(now - timedelta(minutes=5)).isoformat())) == 7
    assert actions(since=(now + timedelta(minutes=5)).isoformat()) == []
    assert actions(until=(now - timedelta(minutes=5)).isoformat()) == []
    for bad in (
        {"action": "x" * 65},
        {"action": "RUN.%"},
        {"since": "yesterday"},
        {"since": "9999-12-31T23:59:59-23:59"},
        {"object_id": ""},
        {"object_id": "x" * 10_000},
        {"action": "run." * 2_000},
        {"object_id": "x" * 60_000},  # larger than the request head may be: 431
        {"cursor": "-1"},
    ):
        response = team.get(AUDIT, params=bad)
        assert response.status_code in (400, 431), (bad, response.text)
        assert "error" in response.json()


def test_request_id_and_client_address_are_recorded(team: TeamClient, rows: Rows) -> None:
    tail = Tail(rows)
    check(
        team.post("/api/v1/apps", json={"slug": "hello"}, headers={"X-Request-ID": "req-42"}), 201
    )
    row = tail.one("app.create", "app", "hello")
    # TestClient's peer; behind a trusted proxy uvicorn puts X-Forwarded-For's client here.
    assert (row["request_id"], row["client_address"]) == ("req-42", "testclient")
    (event,) = check(team.get(AUDIT, params={"action": "app.create"}), 200)["events"]
    assert event["request_id"] == "req-42" and event["client_address"] == "testclient"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["at"])


def _console_csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def test_console_forms_are_recorded_with_the_sessions_token(
    make_client: ClientFactory, rows: Rows, hello_archive: bytes
) -> None:
    http = make_client()
    team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    run = team.create_run("hello")
    tail = Tail(rows)
    form_token = _console_csrf(http, "/signin")
    signed_in = http.post(
        "/signin",
        data={"csrf_token": form_token, "token": team.token, "next": "/"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    by_console = {"actor_kind": "console", "actor_token_id": token_id_of(team)}
    tail.one("session.start", "token", token_id_of(team), **by_console)
    csrf = _console_csrf(http, f"/runs/{run['run_id']}")
    done = http.post(
        f"/runs/{run['run_id']}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    tail.one("run.cancel", "run", run["run_id"], actor_name="bootstrap", **by_console)
    done = http.post(
        f"/runs/{run['run_id']}/rerun", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    assert tail.one("run.rerun", "run", run["run_id"] + 1, **by_console)
    forged = http.post(
        f"/runs/{run['run_id']}/cancel", data={"csrf_token": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    tail.none()
    done = http.post("/signout", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    tail.one("session.end", "token", token_id_of(team), **by_console)


def test_prune_deletes_rows_older_than_the_retention(
    team: TeamClient, settings: ApiSettings, database: Database, rows: Rows
) -> None:
    for n in range(3):
        team.create_app(f"app-{n}")
    old = datetime.now(UTC) - timedelta(days=400)
    moved = rows.update(
        "audit_event", {"at": old}, "action = 'team.bootstrap' OR object_id = 'app-0'"
    )
    assert moved == 2
    before = len(audit_rows(rows))
    dry = prune.prune(
        database,
        settings.objects_dir,
        older_than=timedelta(days=30),
        dry_run=True,
        audit_retention=timedelta(days=365),
    )
    assert dry.audit_rows == 2 and len(audit_rows(rows)) == before
    assert any("would delete 2 audit log rows" in line for line in prune.summary(dry))
    done = prune.prune(
        database,
        settings.objects_dir,
        older_than=timedelta(days=30),
        dry_run=False,
        audit_retention=timedelta(days=365),
    )
    assert done.audit_rows == 2
    assert any("deleted 2 audit log rows" in line for line in prune.summary(done))
    assert [r["object_id"] for r in audit_rows(rows)] == ["app-1", "app-2"]
    kept = prune.prune(
        database,
        settings.objects_dir,
        older_than=timedelta(days=30),
        dry_run=False,
        audit_retention=timedelta(days=500),
    )
    assert kept.audit_rows == 0 and len(audit_rows(rows)) == 2


@pytest.mark.parametrize("value", ["1y", "0s", "-5d", "200000d"])
def test_a_bad_audit_retention_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="audit_retention"):
        ApiSettings(audit_retention=value)  # type: ignore[arg-type]


def test_no_route_changes_or_deletes_audit_rows(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths[AUDIT]) == {"get"}
    assert not any(p.startswith(AUDIT + "/") for p in paths)


def test_minitowerd_audit_shows_the_operators_rows(
    client: TestClient, database: Database, tmp_path: Path
) -> None:
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.create_app("hello")
    RunnerClient.register(client, "shared-1", REGISTRATION_TOKEN)
    env = database_env(database)
    done = minitowerd("audit", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert " runner.register runner:" in line and "by operator:operator" in line
    done = minitowerd("audit", "--team", "acme", "--action", "app.", env=env, cwd=tmp_path)
    (line,) = done.stdout.splitlines()
    assert " app.create app:hello by token:bootstrap#" in line and "from testclient" in line
    done = minitowerd("audit", "--team", "nobody", env=env, cwd=tmp_path)
    assert done.returncode == 1 and "no team 'nobody'" in done.stderr
    assert "Traceback" not in done.stderr
