"""Which runs a runner is handed: a bound runner only its team's; a shared runner those
of every team that allows shared runners. And what a stolen runner token reaches."""

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.support.api_assertions import expect_error
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import Database, database_env
from tests.support.maintenance import minitowerd
from tests.support.tokens import REGISTRATION_TOKEN


def bound_runner(client: TestClient, team: TeamClient, name: str) -> RunnerClient:
    token = check(team.post("/api/v1/runner-registration-tokens", json={}), 201)["token"]
    return RunnerClient.register(client, name, token)


def deploy(team: TeamClient, hello_archive: bytes) -> None:
    team.deploy("hello", hello_archive)


def test_a_bound_runner_never_gets_another_teams_run(
    client: TestClient, team: TeamClient, other_team: TeamClient, hello_archive: bytes
) -> None:
    deploy(team, hello_archive)
    deploy(other_team, hello_archive)
    # Globex's run is older and of higher priority: only the binding keeps it away.
    theirs = other_team.create_run("hello", priority=10)["run_id"]
    ours = team.create_run("hello")["run_id"]
    acme_runner = bound_runner(client, team, "acme-1")
    lease = acme_runner.lease()
    assert lease is not None and lease.run_id == ours
    assert lease.body["team_id"] == team.team_id
    check(acme_runner.start(lease), 200)
    check(acme_runner.result(lease, "completed", exit_code=0), 200)
    assert acme_runner.lease() is None  # globex's run waits for a runner it may use
    assert other_team.run(theirs)["status"] == "queued"

    globex_runner = bound_runner(client, other_team, "globex-1")
    lease = globex_runner.lease()
    assert lease is not None and lease.run_id == theirs


def test_a_long_poll_of_a_bound_runner_is_not_handed_another_teams_new_run(
    client: TestClient, team: TeamClient, other_team: TeamClient, hello_archive: bytes
) -> None:
    deploy(other_team, hello_archive)
    acme_runner = bound_runner(client, team, "acme-1")
    other_team.create_run("hello")
    assert acme_runner.lease_response(wait_seconds=0.5).status_code == 204


def test_shared_runner_serves_teams_that_allow_it_only(
    client: TestClient,
    team: TeamClient,
    other_team: TeamClient,
    hello_archive: bytes,
    database: Database,
    tmp_path: Path,
) -> None:
    deploy(team, hello_archive)
    deploy(other_team, hello_archive)
    env = {**database_env(database), "MINITOWER_OBJECTS_DIR": str(tmp_path)}
    done = minitowerd("team-shared-runners", "acme", "--deny", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "team acme: shared runners denied"
    assert check(team.get("/api/v1/me"), 200)["allow_shared_runners"] is False

    ours = team.create_run("hello", priority=10)["run_id"]
    theirs = other_team.create_run("hello")["run_id"]
    shared = RunnerClient.register(client, "shared-1", REGISTRATION_TOKEN)
    lease = shared.lease()
    assert lease is not None and lease.run_id == theirs
    check(shared.start(lease), 200)
    check(shared.result(lease, "completed", exit_code=0), 200)
    assert shared.lease() is None
    assert team.run(ours)["status"] == "queued"
    # The team's own runner still serves it.
    lease = bound_runner(client, team, "acme-1").lease()
    assert lease is not None and lease.run_id == ours

    done = minitowerd("team-shared-runners", "acme", "--allow", env=env, cwd=tmp_path)
    assert done.stdout.strip() == "team acme: shared runners allowed"
    done = minitowerd("team-shared-runners", "acme", "--allow", env=env, cwd=tmp_path)
    assert done.stdout.strip() == "team acme: shared runners already allowed"
    done = minitowerd("team-shared-runners", "acme", env=env, cwd=tmp_path)
    assert done.stdout.strip() == "team acme: shared runners allowed"


def test_team_shared_runners_names_a_missing_team(database: Database, tmp_path: Path) -> None:
    env = {**database_env(database), "MINITOWER_OBJECTS_DIR": str(tmp_path)}
    done = minitowerd("team-shared-runners", "nope", "--deny", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "minitowerd team-shared-runners: no team 'nope'"


def test_a_stolen_bound_runner_token_reaches_no_other_teams_run(
    client: TestClient, team: TeamClient, other_team: TeamClient, hello_archive: bytes
) -> None:
    """What team A can do with its own runner's token: lease nothing of team B's, and
    touch none of B's runs (every call about a run needs that run's lease token)."""
    deploy(other_team, hello_archive)
    theirs = other_team.create_run("hello", input={"db_password": "hunter2"})["run_id"]
    victim_runner = RunnerClient.register(client, "shared-1", REGISTRATION_TOKEN)
    victim_lease = victim_runner.lease()
    assert victim_lease is not None and victim_lease.run_id == theirs
    other_team.create_run("hello", input={"db_password": "hunter2"})

    stolen = bound_runner(client, team, "acme-1")
    assert stolen.lease_response().status_code == 204
    headers: dict[str, Any] = {**stolen.headers, "X-Lease-Token": "mtl_guessed"}
    for method, action in [
        ("POST", "start"),
        ("POST", "heartbeat"),
        ("GET", "artifact"),
    ]:
        answer = client.request(method, f"/api/v1/runs/{theirs}/{action}", headers=headers)
        expect_error(answer, 410, "gone")
    # Even the real lease token, stolen too, is refused with A's runner token.
    headers["X-Lease-Token"] = victim_lease.token
    expect_error(
        client.post(
            f"/api/v1/runs/{theirs}/result",
            headers=headers,
            json={"status": "completed", "exit_code": 0},
        ),
        410,
        "gone",
    )
    assert "hunter2" not in str(stolen.lease_response().content)
