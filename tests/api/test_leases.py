"""The runner endpoints: lease (and long poll), start, artifact, heartbeat, logs, result,
and the fencing of stale, foreign and expired leases."""

import hashlib
import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api_assertions import JSON, assert_timestamps, expect_error, finish
from tests.support.archives import make_archive
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.inprocess_api import Sandbox, ShortTtl
from tests.support.tokens import REGISTRATION_TOKEN

LEASE_KEYS = {
    "run_id",
    "run_no",
    "app_id",
    "app_slug",
    "version_no",
    "entrypoint",
    "timeout_seconds",
    "input",
    "import_paths",
    "attempt_id",
    "attempt_no",
    "lease_token",
    "lease_expires_at",
}


def take(runner: RunnerClient) -> Lease:
    lease = runner.lease()
    assert lease is not None, "expected work"
    return lease


def fake_lease(lease: Lease, *, run_id: int | None = None, token: str | None = None) -> Lease:
    return Lease(
        run_id=lease.run_id if run_id is None else run_id,
        token=lease.token if token is None else token,
        body=lease.body,
    )


ATTEMPT_CALLS: list[tuple[str, str, Any]] = [
    ("POST", "start", None),
    ("GET", "artifact", None),
    ("POST", "heartbeat", None),
    ("POST", "logs", {"logs": [{"seq": 1, "stream": "stdout", "line": "x"}]}),
    ("POST", "result", {"status": "completed", "exit_code": 0}),
    (
        "POST",
        "result",
        {"status": "completed", "logs": [{"seq": 9, "stream": "stdout", "line": "x"}]},
    ),
]
CALL_IDS = [action for _, action, _ in ATTEMPT_CALLS[:-1]] + ["result-with-logs"]


# --- lease --------------------------------------------------------------------------------


def test_lease_hands_out_the_run(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello", input={"greeting": "hey"})
    response = runner.lease_response()
    body = check(response, 200)
    assert set(body) >= LEASE_KEYS
    assert body["run_id"] == run["run_id"]
    assert body["run_no"] == 1
    assert body["app_id"] == run["app_id"]
    assert body["app_slug"] == "hello"
    assert body["version_no"] == 1
    assert body["entrypoint"] == "main.py"
    assert body["timeout_seconds"] == 3600
    assert body["input"] == {"greeting": "hey", "count": 1}
    assert body["import_paths"] == []
    assert body["attempt_no"] == 1
    assert isinstance(body["attempt_id"], int)
    assert body["lease_token"]
    assert_timestamps(body, "lease_expires_at")
    leased = team.run(run["run_id"])
    assert leased["status"] == "leased"
    assert leased["started_at"] is None


def test_no_work_is_204_with_no_body(runner: RunnerClient) -> None:
    response = runner.lease_response()
    assert response.status_code == 204
    assert response.content == b""


def test_lease_without_a_body(client: TestClient, runner: RunnerClient) -> None:
    assert client.post("/api/v1/runs/lease", headers=runner.headers).status_code == 204


def test_lease_order_is_priority_then_age(
    team: TeamClient, client: TestClient, deployed: dict[str, Any]
) -> None:
    created = {
        name: team.create_run("hello", priority=priority)["run_id"]
        for name, priority in [
            ("low-old", -1),
            ("mid-old", 0),
            ("high-old", 5),
            ("mid-new", 0),
            ("high-new", 5),
            ("top", 10),
        ]
    }
    by_id = {run_id: name for name, run_id in created.items()}
    runners = [RunnerClient.register(client, f"runner-{i}", REGISTRATION_TOKEN) for i in range(6)]
    order = [by_id[take(r).run_id] for r in runners]
    assert order == ["top", "high-old", "high-new", "mid-old", "mid-new", "low-old"]


def test_one_runner_works_through_the_queue_in_order(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    ids = [team.create_run("hello")["run_id"] for _ in range(3)]
    done = []
    while (lease := runner.lease()) is not None:
        done.append(lease.run_id)
        finish(runner, lease)
    assert done == ids


def test_runners_get_only_runs_of_their_environment(
    team: TeamClient, client: TestClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    gpu = RunnerClient.register(client, "gpu-1", REGISTRATION_TOKEN, environment="gpu")
    default_run = team.create_run("hello")
    assert gpu.lease() is None
    gpu_run = team.create_run("hello", environment="gpu")
    assert take(gpu).run_id == gpu_run["run_id"]
    assert take(runner).run_id == default_run["run_id"]


def test_environments_are_matched_across_teams(
    team: TeamClient, other_team: TeamClient, client: TestClient, hello_archive: bytes
) -> None:
    team.deploy("hello", hello_archive)
    other_team.deploy("hello", hello_archive)
    ours = team.create_run("hello", environment="gpu")
    theirs = other_team.create_run("hello", environment="gpu")
    gpu1 = RunnerClient.register(client, "gpu-1", REGISTRATION_TOKEN, environment="gpu")
    gpu2 = RunnerClient.register(client, "gpu-2", REGISTRATION_TOKEN, environment="gpu")
    assert {take(gpu1).run_id, take(gpu2).run_id} == {ours["run_id"], theirs["run_id"]}


def test_a_runner_holding_a_live_lease_gets_409(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    team.create_run("hello")
    second = team.create_run("hello")
    lease = take(runner)
    expect_error(runner.lease_response(), 409, "conflict")
    check(runner.start(lease), 200)
    expect_error(runner.lease_response(), 409, "conflict")
    check(runner.result(lease, "completed"), 200)
    assert take(runner).run_id == second["run_id"]


def test_long_poll_hands_over_a_run_created_while_waiting(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    outcome: dict[str, Any] = {}

    def wait_for_work() -> None:
        started = time.monotonic()
        outcome["lease"] = runner.lease(wait_seconds=5)
        outcome["elapsed"] = time.monotonic() - started

    waiter = threading.Thread(target=wait_for_work)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive(), "the long poll returned before any work existed"
    run = team.create_run("hello")
    created_at = time.monotonic()
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    handed_over_after = time.monotonic() - created_at
    lease = outcome["lease"]
    assert lease is not None and lease.run_id == run["run_id"]
    assert outcome["elapsed"] < 3.5, outcome
    assert handed_over_after < 2.5


def test_long_poll_ends_with_204_when_the_wait_is_over(runner: RunnerClient) -> None:
    started = time.monotonic()
    response = runner.lease_response(wait_seconds=0.5)
    elapsed = time.monotonic() - started
    assert response.status_code == 204
    assert 0.4 <= elapsed < 3


@pytest.mark.parametrize(
    "body",
    [
        {"wait_seconds": 31},
        {"wait_seconds": 30.5},
        {"wait_seconds": -1},
        {"wait_seconds": "5"},
        {"wait_seconds": None},
        {"wait_seconds": [1]},
        {"wait": 5},
        [],
        "5",
    ],
)
def test_invalid_lease_request_is_400(sandbox: Sandbox, body: Any) -> None:
    runner = sandbox.runner
    response = runner.http.post("/api/v1/runs/lease", json=body, headers=runner.headers)
    expect_error(response, 400, "invalid_request")


def test_lease_needs_a_runner_token(client: TestClient, team: TeamClient) -> None:
    expect_error(client.post("/api/v1/runs/lease", json={}), 401, "unauthorized")
    bad = {"Authorization": "Bearer mtr_unknown"}
    expect_error(client.post("/api/v1/runs/lease", json={}, headers=bad), 401, "unauthorized")
    registration = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}
    response = client.post("/api/v1/runs/lease", json={}, headers=registration)
    expect_error(response, 401, "unauthorized")


def test_cancel_requested_runs_are_not_leased(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    first = team.create_run("hello", priority=5)
    second = team.create_run("hello")
    check(team.post(f"/api/v1/runs/{first['run_id']}/cancel"), 200)
    assert take(runner).run_id == second["run_id"]


# --- start, artifact, heartbeat, logs, result --------------------------------------------


def test_start_moves_the_run_to_running(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    lease = take(runner)
    started = check(runner.start(lease), 200)
    assert set(started) == {
        "attempt_no",
        "status",
        "lease_expires_at",
        "cancel_requested",
        "server_time",
    }
    # The server's clock, to the millisecond, before the lease's end (runners time it).
    assert started["server_time"] < started["lease_expires_at"]
    assert started["attempt_no"] == 1
    assert started["status"] == "running"
    assert started["cancel_requested"] is False
    assert started["lease_expires_at"] >= lease.body["lease_expires_at"]
    after = team.run(run["run_id"])
    assert after["status"] == "running"
    assert after["started_at"] is not None
    # Starting again is harmless.
    assert check(runner.start(lease), 200)["status"] == "running"


def test_a_lease_asked_to_start_hands_out_a_running_attempt(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    lease = runner.lease(start=True)
    assert lease is not None
    assert lease.body["started"] is True
    after = team.run(run["run_id"])
    assert after["status"] == "running"
    assert after["started_at"] is not None
    (attempt,) = check(team.get(f"/api/v1/runs/{run['run_id']}/attempts"), 200)["attempts"]
    assert attempt["status"] == "running"
    # The start call stays harmless, and says what the lease did.
    started = check(runner.start(lease), 200)
    assert started["status"] == "running" and started["cancel_requested"] is False
    finish(runner, lease)
    assert team.run(run["run_id"])["status"] == "completed"


def test_a_lease_not_asked_to_start_leaves_the_attempt_leased(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    assert take(runner).body["started"] is False
    assert team.run(run["run_id"])["status"] == "leased"


def test_a_long_poll_asked_to_start_starts_the_run_it_was_woken_for(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    got: list[Lease | None] = []
    waiter = threading.Thread(target=lambda: got.append(runner.lease(5, start=True)))
    waiter.start()
    time.sleep(0.3)
    run = team.create_run("hello")
    waiter.join(10)
    (lease,) = got
    assert lease is not None and lease.run_id == run["run_id"]
    assert lease.body["started"] is True
    assert team.run(run["run_id"])["status"] == "running"


def test_artifact_is_the_uploaded_archive(
    runner: RunnerClient, team: TeamClient, hello_archive: bytes, deployed: dict[str, Any]
) -> None:
    team.create_run("hello")
    lease = take(runner)
    response = runner.artifact(lease)
    assert response.status_code == 200
    assert response.content == hello_archive
    assert response.headers["X-Artifact-SHA256"] == hashlib.sha256(hello_archive).hexdigest()
    assert response.headers["X-Artifact-SHA256"] == deployed["artifact_sha256"]
    assert response.headers["content-type"] == "application/gzip"
    # The same on both stores: a file's answer, or the database's streamed a chunk at a time.
    assert response.headers["content-length"] == str(len(hello_archive))
    assert response.headers["content-disposition"] == (
        f'attachment; filename="run-{lease.run_id}.tar.gz"'
    )


def test_heartbeat_extends_the_lease(
    runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    _, lease = running
    first = check(runner.heartbeat(lease), 200)
    assert set(first) == {"lease_expires_at", "cancel_requested", "server_time"}
    assert first["server_time"] < first["lease_expires_at"]
    assert first["cancel_requested"] is False
    time.sleep(0.01)
    second = check(runner.heartbeat(lease), 200)
    assert second["lease_expires_at"] >= first["lease_expires_at"]


def test_logs_are_stored_once_per_seq(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    batch = [
        {"seq": 1, "stream": "stdout", "line": "one"},
        {"seq": 2, "stream": "stderr", "line": "two", "logged_at": "2026-01-02T03:04:05.678Z"},
    ]
    assert check(runner.logs(lease, batch), 200) == {"accepted": 2, "dropped": 0}
    check(runner.logs(lease, batch), 200)
    check(
        runner.logs(
            lease,
            [{**batch[0], "line": "changed"}, {"seq": 3, "stream": "stdout", "line": "three"}],
        ),
        200,
    )
    check(runner.logs(lease, []), 200)

    logs = check(team.get(f"/api/v1/runs/{run['run_id']}/logs"), 200)["logs"]
    assert [(line["seq"], line["stream"], line["line"]) for line in logs] == [
        (1, "stdout", "one"),
        (2, "stderr", "two"),
        (3, "stdout", "three"),
    ]
    assert logs[1]["logged_at"] == "2026-01-02T03:04:05.678Z"


@pytest.mark.parametrize(
    "lines",
    [
        [{"seq": -1, "stream": "stdout", "line": "x"}],
        [{"seq": 1, "stream": "stdlog", "line": "x"}],
        [{"seq": 1, "stream": "stdout"}],
        [{"seq": 1, "stream": "stdout", "line": 5}],
        [{"seq": "one", "stream": "stdout", "line": "x"}],
        [{"seq": 1, "stream": "stdout", "line": "x" * (64 * 1024 + 1)}],
        [{"seq": 1, "stream": "stdout", "line": "x", "logged_at": "yesterday"}],
        [{"seq": 1, "stream": "stdout", "line": "x", "level": "info"}],
        [{"seq": i, "stream": "stdout", "line": ""} for i in range(5001)],
        "x",
    ],
    ids=[
        "negative-seq",
        "bad-stream",
        "no-line",
        "line-not-string",
        "seq-not-int",
        "line-too-long",
        "bad-time",
        "unknown-key",
        "batch-too-big",
        "not-a-list",
    ],
)
def test_invalid_log_batch_is_400(sandbox: Sandbox, lines: Any) -> None:
    lease = sandbox.lease
    expect_error(
        sandbox.runner.call(lease, "POST", "logs", {"logs": lines}), 400, "invalid_request"
    )
    assert check(sandbox.team.get(f"/api/v1/runs/{lease.run_id}/logs"), 200)["logs"] == []


def test_result_completes_the_run(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    result = check(runner.result(lease, "completed", exit_code=0), 200)
    assert result == {
        "run_id": run["run_id"],
        "attempt_no": 1,
        "status": "completed",
        "run_status": "completed",
    }
    done = team.run(run["run_id"])
    assert done["status"] == "completed"
    assert done["exit_code"] == 0
    assert done["finished_at"] is not None


def run_lines(team: TeamClient, run_id: int) -> list[tuple[int, str]]:
    logs = check(team.get(f"/api/v1/runs/{run_id}/logs"), 200)["logs"]
    return [(line["seq"], line["line"]) for line in logs]


def test_a_result_stores_its_last_lines_with_it(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    check(runner.logs(lease, [{"seq": 1, "stream": "stdout", "line": "one"}]), 200)
    last = [
        {"seq": 1, "stream": "stdout", "line": "one, resent"},
        {"seq": 2, "stream": "stderr", "line": "two", "logged_at": "2026-01-02T03:04:05Z"},
        {"seq": 3, "stream": "stdout", "line": "three"},
    ]
    first = check(runner.result(lease, "completed", exit_code=0, logs=last), 200)
    assert first["run_status"] == "completed"
    assert run_lines(team, run["run_id"]) == [(1, "one"), (2, "two"), (3, "three")]
    # The same result again (its answer was lost): 200, and no line twice.
    assert check(runner.result(lease, "completed", exit_code=0, logs=last), 200) == first
    assert run_lines(team, run["run_id"]) == [(1, "one"), (2, "two"), (3, "three")]


def test_a_refused_result_keeps_the_lines_of_its_live_lease(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    line = {"seq": 1, "stream": "stdout", "line": "said before the wrong result"}
    expect_error(runner.result(lease, "cancelled", logs=[line]), 409, "conflict")
    assert run_lines(team, run["run_id"]) == [(1, "said before the wrong result")]
    assert team.run(run["run_id"])["status"] == "running"


def test_a_result_with_lines_on_a_foreign_lease_stores_nothing(
    client: TestClient,
    team: TeamClient,
    runner: RunnerClient,
    running: tuple[dict[str, Any], Lease],
) -> None:
    run, lease = running
    other = RunnerClient.register(client, "other-runner", REGISTRATION_TOKEN)
    forged = [{"seq": 1, "stream": "stdout", "line": "forged"}]
    expect_error(other.result(lease, "completed", exit_code=0, logs=forged), 410, "gone")
    expect_error(
        runner.result(fake_lease(lease, token="mtl_" + "0" * 43), "completed", logs=forged),
        410,
        "gone",
    )
    assert run_lines(team, run["run_id"]) == []
    assert team.run(run["run_id"])["status"] == "running"


def test_a_timeout_is_reported_as_failed(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    check(runner.result(lease, "failed", exit_code=-9, error_message="timeout after 3600 s"), 200)
    done = team.run(run["run_id"])
    assert done["status"] == "failed"
    assert "timeout" in done["error_message"]


def test_result_without_start_is_409(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    lease = take(runner)
    expect_error(runner.result(lease, "completed", exit_code=0), 409, "conflict")
    assert team.run(run["run_id"])["status"] == "leased"
    # The lease is still good for the normal path.
    finish(runner, lease)
    assert team.run(run["run_id"])["status"] == "completed"


def test_cancelled_without_a_cancel_request_is_409_and_changes_nothing(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    error = expect_error(runner.result(lease, "cancelled"), 409, "conflict")
    assert "not cancelled" in error["message"]
    assert team.run(run["run_id"])["status"] == "running"
    check(runner.result(lease, "failed", exit_code=3), 200)
    assert team.run(run["run_id"])["status"] == "failed"


def test_same_result_again_is_200_a_different_one_409(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    first = check(runner.result(lease, "completed", exit_code=0), 200)
    assert check(runner.result(lease, "completed", exit_code=0), 200) == first
    expect_error(runner.result(lease, "failed", exit_code=1), 409, "conflict")
    expect_error(runner.result(lease, "cancelled"), 409, "conflict")
    done = team.run(run["run_id"])
    assert done["status"] == "completed"
    assert done["exit_code"] == 0


def test_same_result_again_after_a_cancel_mapped_it(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    check(team.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
    check(runner.result(lease, "failed", exit_code=1), 200)
    assert check(runner.result(lease, "failed", exit_code=1), 200)["run_status"] == "cancelled"
    expect_error(runner.result(lease, "completed"), 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"status": "done"},
        {"status": "COMPLETED"},
        {},
        {"status": "completed", "exit_code": "0"},
        {"status": "completed", "exit_code": 0.5},
        {"status": "failed", "error_message": 5},
        {"status": "failed", "error_message": "x" * 10_001},
        {"status": "completed", "output": {}},
        [],
    ],
)
def test_invalid_result_is_400(sandbox: Sandbox, body: Any) -> None:
    lease = sandbox.lease
    expect_error(sandbox.runner.call(lease, "POST", "result", body), 400, "invalid_request")
    assert sandbox.run(lease.run_id)["status"] == "running"


# --- fencing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "action", "body"), ATTEMPT_CALLS, ids=CALL_IDS)
def test_missing_lease_token_is_400(sandbox: Sandbox, method: str, action: str, body: Any) -> None:
    runner, lease = sandbox.runner, sandbox.lease
    path = f"/api/v1/runs/{lease.run_id}/{action}"
    expect_error(
        runner.http.request(method, path, json=body, headers=runner.headers), 400, "invalid_request"
    )
    empty = {**runner.headers, "X-Lease-Token": ""}
    expect_error(
        runner.http.request(method, path, json=body, headers=empty), 400, "invalid_request"
    )
    assert sandbox.run(lease.run_id)["status"] == "running"


@pytest.mark.parametrize(("method", "action", "body"), ATTEMPT_CALLS, ids=CALL_IDS)
def test_unknown_lease_token_is_410(sandbox: Sandbox, method: str, action: str, body: Any) -> None:
    forged = fake_lease(sandbox.lease, token="mtl_forged")
    expect_error(sandbox.runner.call(forged, method, action, body), 410, "gone")
    assert sandbox.run(sandbox.lease.run_id)["status"] == "running"


@pytest.mark.parametrize(("method", "action", "body"), ATTEMPT_CALLS, ids=CALL_IDS)
def test_lease_token_of_another_runner_is_410(
    sandbox: Sandbox, method: str, action: str, body: Any
) -> None:
    expect_error(sandbox.runner2.call(sandbox.lease, method, action, body), 410, "gone")
    expect_error(sandbox.runner.call(sandbox.lease2, method, action, body), 410, "gone")
    # The rightful holders are unaffected.
    check(sandbox.runner.heartbeat(sandbox.lease), 200)
    check(sandbox.runner2.heartbeat(sandbox.lease2), 200)
    assert sandbox.run(sandbox.lease.run_id)["status"] == "running"
    assert sandbox.run(sandbox.lease2.run_id)["status"] == "leased"


@pytest.mark.parametrize(("method", "action", "body"), ATTEMPT_CALLS, ids=CALL_IDS)
def test_lease_token_on_another_run_is_410(
    sandbox: Sandbox, method: str, action: str, body: Any
) -> None:
    runner, lease = sandbox.runner, sandbox.lease
    for run_id in (sandbox.lease2.run_id, sandbox.completed["run_id"], 999_999):
        expect_error(
            runner.call(fake_lease(lease, run_id=run_id), method, action, body), 410, "gone"
        )
    assert sandbox.run(sandbox.lease2.run_id)["status"] == "leased"
    assert sandbox.run(lease.run_id)["status"] == "running"
    assert sandbox.run(sandbox.completed["run_id"]) == sandbox.completed


@pytest.mark.parametrize(
    ("method", "action", "body"),
    [call for call in ATTEMPT_CALLS if call[1] != "result"],
    ids=[action for action in CALL_IDS if not action.startswith("result")],
)
def test_a_finished_attempt_is_410(sandbox: Sandbox, method: str, action: str, body: Any) -> None:
    expect_error(sandbox.runner.call(sandbox.completed_lease, method, action, body), 410, "gone")
    assert sandbox.run(sandbox.completed["run_id"]) == sandbox.completed


def test_result_of_another_runners_finished_attempt_is_410(
    runner: RunnerClient, runner2: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    _, lease = running
    check(runner.result(lease, "completed"), 200)
    expect_error(runner2.result(lease, "completed"), 410, "gone")


def test_runner_calls_need_the_runner_token(
    client: TestClient, team: TeamClient, running: tuple[dict[str, Any], Lease]
) -> None:
    _, lease = running
    for method, action, body in ATTEMPT_CALLS:
        path = f"/api/v1/runs/{lease.run_id}/{action}"
        response = client.request(method, path, json=body, headers={"X-Lease-Token": lease.token})
        expect_error(response, 401, "unauthorized")
        team_auth = {**team.headers, "X-Lease-Token": lease.token}
        expect_error(
            client.request(method, path, json=body, headers=team_auth), 401, "unauthorized"
        )


# --- expiry (leases of SHORT_TTL seconds) ------------------------------------------------


def expire(ttl: ShortTtl) -> None:
    time.sleep(ttl.ttl + 0.25)


def test_an_expired_lease_is_410_everywhere(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    other = RunnerClient.register(short_ttl.client, "ttl-runner-2", REGISTRATION_TOKEN)
    started_run, leased_run = team.create_run("hello"), team.create_run("hello")
    started = take(runner)
    check(runner.start(started), 200)
    leased = take(other)
    assert (started.run_id, leased.run_id) == (started_run["run_id"], leased_run["run_id"])
    expire(short_ttl)
    # One sleep for every call: a call on an expired lease changes nothing.
    for method, action, body in ATTEMPT_CALLS:
        expect_error(runner.call(started, method, action, body), 410, "gone")
        expect_error(other.call(leased, method, action, body), 410, "gone")
    # The reaper has not run: the runs still look owned, but nobody can act for them.
    assert team.run(started.run_id)["status"] == "running"
    assert team.run(leased.run_id)["status"] == "leased"


def test_heartbeat_never_revives_an_expired_lease(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    team.create_run("hello")
    lease = take(runner)
    check(runner.start(lease), 200)
    check(runner.heartbeat(lease), 200)
    expire(short_ttl)
    expect_error(runner.heartbeat(lease), 410, "gone")
    expect_error(runner.heartbeat(lease), 410, "gone")
    expect_error(runner.start(lease), 410, "gone")
    expect_error(runner.result(lease, "completed", exit_code=0), 410, "gone")


def test_heartbeats_keep_a_lease_alive_past_its_first_ttl(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    run = team.create_run("hello")
    lease = take(runner)
    check(runner.start(lease), 200)
    deadline = time.monotonic() + short_ttl.ttl * 2.5
    while time.monotonic() < deadline:
        time.sleep(short_ttl.ttl / 4)
        check(runner.heartbeat(lease), 200)
    check(runner.result(lease, "completed", exit_code=0), 200)
    assert team.run(run["run_id"])["status"] == "completed"


def test_after_expiry_the_runner_may_lease_again_and_gets_the_retry(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    run = team.create_run("hello", max_retries=1)
    first = take(runner)
    check(runner.start(first), 200)
    expire(short_ttl)

    second = take(runner)
    assert second.run_id == run["run_id"]
    assert second.body["attempt_no"] == 2
    assert second.token != first.token
    retried = team.run(run["run_id"])
    assert retried["retry_count"] == 1
    assert retried["status"] == "leased"
    # The old lease stays dead while the new one works.
    expect_error(runner.heartbeat(first), 410, "gone")
    finish(runner, second)

    attempts = check(team.get(f"/api/v1/runs/{run['run_id']}/attempts"), 200)["attempts"]
    assert [(a["attempt_no"], a["status"]) for a in attempts] == [(1, "expired"), (2, "completed")]
    assert team.run(run["run_id"])["status"] == "completed"


def test_after_expiry_without_retries_the_run_is_dead(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    run = team.create_run("hello")
    lease = take(runner)
    check(runner.start(lease), 200)
    expire(short_ttl)
    assert runner.lease_response().status_code == 204
    dead = team.run(run["run_id"])
    assert dead["status"] == "dead"
    assert dead["finished_at"] is not None
    expect_error(runner.result(lease, "completed"), 410, "gone")
    assert team.run(run["run_id"])["status"] == "dead"


def test_a_retried_run_keeps_its_place_in_the_queue(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    older = team.create_run("hello", max_retries=1)
    newer = team.create_run("hello")
    assert take(runner).run_id == older["run_id"]
    expire(short_ttl)
    # The retry goes back to where it stood (its original queued_at): before ``newer``.
    assert take(runner).run_id == older["run_id"]
    other = RunnerClient.register(short_ttl.client, "ttl-runner-2", REGISTRATION_TOKEN)
    assert take(other).run_id == newer["run_id"]


def test_an_expired_cancelling_run_ends_cancelled(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    run = team.create_run("hello", max_retries=5)
    lease = take(runner)
    check(runner.start(lease), 200)
    check(team.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
    expire(short_ttl)
    assert runner.lease_response().status_code == 204
    assert team.run(run["run_id"])["status"] == "cancelled"


def test_lease_body_accepts_json_null(client: TestClient, runner: RunnerClient) -> None:
    response = client.post(
        "/api/v1/runs/lease", content=b"null", headers={**runner.headers, **JSON}
    )
    assert response.status_code == 204


def test_artifact_answer_carries_the_versions_manifest_for_the_reference_runner(
    runner: RunnerClient, team: TeamClient
) -> None:
    towerfile = (
        '[app]\nname = "hello"\nscript = "main.py"\nimport_paths = ["lib", "src/pkg"]\n'
        "[app.timeout]\nseconds = 120\n"
    )
    team.deploy("hello", make_archive({"Towerfile": towerfile, "main.py": ""}))
    team.create_run("hello")
    response = runner.artifact(take(runner))
    assert response.status_code == 200
    assert response.headers["X-Entrypoint"] == "main.py"
    assert response.headers["X-Timeout-Seconds"] == "120"
    assert json.loads(response.headers["X-Import-Paths"]) == ["lib", "src/pkg"]


def test_artifact_without_import_paths_has_no_import_paths_header(
    runner: RunnerClient, team: TeamClient, deployed: dict[str, Any]
) -> None:
    team.create_run("hello")
    response = runner.artifact(take(runner))
    assert "X-Import-Paths" not in response.headers
    assert response.headers["X-Timeout-Seconds"] == str(deployed["timeout_seconds"])
