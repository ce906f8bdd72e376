"""The whole team → runner path once, in-process."""

from tests.support.clients import RunnerClient, TeamClient, check


def test_run_lifecycle_end_to_end(
    team: TeamClient, runner: RunnerClient, hello_archive: bytes
) -> None:
    version = team.deploy("hello", hello_archive)
    assert version["version_no"] == 1
    run = team.create_run("hello", input={"greeting": "hey"})
    assert run["status"] == "queued"
    assert run["input"] == {"greeting": "hey", "count": 1}

    lease = runner.lease()
    assert lease is not None and lease.run_id == run["run_id"]
    assert check(runner.start(lease), 200)["status"] == "running"
    artifact = runner.artifact(lease)
    assert artifact.status_code == 200
    assert artifact.headers["X-Artifact-SHA256"] == version["artifact_sha256"]
    check(runner.logs(lease, [{"seq": 1, "stream": "stdout", "line": "hey"}]), 200)
    check(runner.result(lease, "completed", exit_code=0), 200)

    finished = team.run(run["run_id"])
    assert finished["status"] == "completed"
    assert finished["exit_code"] == 0
    logs = check(team.get(f"/api/v1/runs/{run['run_id']}/logs"), 200)
    assert [line["line"] for line in logs["logs"]] == ["hey"]
