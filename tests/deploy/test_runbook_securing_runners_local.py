"""deploy/runbooks/securing.md, section 5 (trust boundaries), local processes: its steps
run as written against a real ``minitowerd``. A team admin binds a runner to the team
(it runs the team's queued run and is listed as the team's), then the operator denies
the team's runs to shared runners: a shared runner is handed nothing of the team's."""

from pathlib import Path

from tests.support.archives import make_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.maintenance import minitowerd
from tests.support.processes import LiveApi, fast_runner_env
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

HELLO = make_archive(
    {"Towerfile": '[app]\nname = "hello"\nscript = "main.py"\n', "main.py": "print('hi')\n"}
)


def test_bind_a_runner_to_the_team_then_deny_shared_runners(
    tmp_path: Path, live_api: LiveApi
) -> None:
    with live_api.client() as http:
        team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        team.deploy("hello", HELLO)
        first = team.create_run("hello")["run_id"]
        runner_env = {
            key: value
            for key, value in fast_runner_env("default", tmp_path / "venvs", "unused").items()
            if key
            not in ("MINITOWER_RUNNER_REGISTRATION_TOKEN", "MINITOWER_RUNNER_TRUST_ALL_TEAMS")
        }
        env = {
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / ".config"),
            "MINITOWER_SERVER_URL": live_api.url,
            "MINITOWER_API_TOKEN": team.token,
            "MINITOWER_DB_PATH": live_api.env["MINITOWER_DB_PATH"],
            "TEAM": "acme",
            "RUNNER_NAME": "acme-runner-1",
            "RUNNER_DATA_DIR": str(tmp_path / "acme-runner-1"),
            **runner_env,
        }
        bound = run_step("securing", "local-bind-runner", env=env, timeout=120)
        assert team.run(first)["status"] == "completed", bound.stderr
        # The runner's own log lines are JSON; the listing is a table.
        table = [line for line in bound.stdout.splitlines() if not line.startswith("{")]
        (row,) = [line for line in table if "acme-runner-1" in line]
        assert " team " in f" {row} ", row

        denied = run_step("securing", "local-deny-shared-runners", env=env)
        assert "team acme: shared runners denied" in denied.stdout
        second = team.create_run("hello")["run_id"]
        shared = RunnerClient.register(http, "shared-1", REGISTRATION_TOKEN)
        assert shared.lease_response().status_code == 204
        assert team.run(second)["status"] == "queued"
        # The roll back, as the runbook says: the shared runner gets the run again.
        check(http.get("/health"), 200)
        allowed = minitowerd("team-shared-runners", "acme", "--allow", env=env, cwd=tmp_path)
        assert allowed.stdout.strip() == "team acme: shared runners allowed"
        lease = shared.lease()
        assert lease is not None and lease.run_id == second
