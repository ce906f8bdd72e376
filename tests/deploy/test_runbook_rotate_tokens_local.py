"""deploy/runbooks/rotate-tokens.md, local processes: its steps run as written against
a real ``minitowerd`` and ``minitower-runner`` on 127.0.0.1. The registration token is
rotated in the runbook's order (runners first, then the API, then the revocation) with a
run in flight, which finishes in its one attempt: its runner registered again and kept
its lease."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.processes import LiveApi, Process, fast_runner_env, start_runner
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.waiting import wait_for

SLOW_APP = (
    "import time\nprint('working', flush=True)\ntime.sleep(6)\nprint('finished', flush=True)\n"
)


@dataclass
class Local:
    api: LiveApi
    runner: Process
    team: TeamClient
    workdir: Path
    runner_env: dict[str, str]

    def step_env(self, **extra: str) -> dict[str, str]:
        return {
            "HOME": str(self.workdir),
            "XDG_CONFIG_HOME": str(self.workdir / ".config"),
            "MINITOWER_SERVER_URL": self.api.url,
            "MINITOWER_API_TOKEN": self.team.token,
            **{k: v for k, v in self.api.env.items() if k.startswith("MINITOWER_")},
            **extra,
        }


@pytest.fixture
def local(tmp_path: Path, make_live_api: Callable[[dict[str, str]], LiveApi]) -> Iterator[Local]:
    api = make_live_api({"MINITOWER_LEASE_TTL": "3s", "MINITOWER_LEASE_POLL_INTERVAL": "0.1s"})
    runner_env = fast_runner_env("default", tmp_path / "venvs", REGISTRATION_TOKEN)
    runner = start_runner(tmp_path, api.url, "worker-1", runner_env)
    http = api.client()
    state: Local | None = None
    try:
        team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        state = Local(api=api, runner=runner, team=team, workdir=tmp_path, runner_env=runner_env)
        yield state
    finally:
        # A test may put a new runner in the first one's place: stop both (stopping a
        # runner that has ended already does nothing).
        runner.stop(timeout=20)
        if state is not None:
            state.runner.stop(timeout=20)
        http.close()


def _registrations(process: Process) -> int:
    return len(process.events("registered", runner="worker-1"))


def _wait_status(team: TeamClient, run_id: int, statuses: set[str], timeout: float) -> Any:
    def reached() -> dict[str, Any] | None:
        run = team.run(run_id)
        return run if run["status"] in statuses else None

    return wait_for(reached, timeout=timeout, what=f"run {run_id} in {statuses}", interval=0.2)


def test_rotating_the_registration_token_with_a_run_in_flight(local: Local) -> None:
    new_token = run_step("rotate-tokens", "local-generate-token").stdout.strip()
    assert len(new_token) >= 40 and new_token != REGISTRATION_TOKEN
    wait_for(lambda: _registrations(local.runner) == 1, timeout=30, what="the first registration")

    # 1. The runner gets the new token and restarts: it keeps its saved runner token.
    assert local.runner.stop(timeout=20) == 0
    env = {**local.runner_env, "MINITOWER_RUNNER_REGISTRATION_TOKEN": new_token}
    local.runner = start_runner(local.workdir, local.api.url, "worker-1", env)
    # 2. The API gets the new token and restarts.
    local.api.env["MINITOWER_RUNNER_REGISTRATION_TOKEN"] = new_token
    local.api.restart()
    http = local.api.client()
    local.team = TeamClient(http=http, token=local.team.token, team_id=local.team.team_id)

    towerfile = '[app]\nname = "slow"\nscript = "main.py"\n'
    local.team.deploy("slow", make_archive({"Towerfile": towerfile, "main.py": SLOW_APP}))
    run_id = local.team.create_run("slow")["run_id"]
    _wait_status(local.team, run_id, {"running"}, timeout=60)
    wait_for(
        lambda: "working" in str(check(local.team.get(f"/api/v1/runs/{run_id}/logs"), 200)),
        timeout=30,
        what="the run's first line",
    )

    # 3. Revoked mid-run: the runner registers again and its run goes on.
    revoked = run_step("rotate-tokens", "local-revoke-runner-tokens", env=local.step_env())
    assert "revoked worker-1 (default, online)" in revoked.stdout
    assert "revoked the tokens of 1 runner(s)" in revoked.stdout
    run = _wait_status(local.team, run_id, {"completed", "failed", "dead"}, timeout=60)
    assert run["status"] == "completed", run
    attempts = check(local.team.get(f"/api/v1/runs/{run_id}/attempts"), 200)["attempts"]
    assert len(attempts) == 1, attempts
    assert _registrations(local.runner) == 1, local.runner.log()

    # 4. Verify as the runbook says.
    refused = run_step(
        "rotate-tokens",
        "local-verify-old-registration-refused",
        env=local.step_env(OLD_REGISTRATION_TOKEN=REGISTRATION_TOKEN),
    )
    assert "old registration token: HTTP 401" in refused.stdout
    online = run_step("rotate-tokens", "verify-runners-online", env=local.step_env())
    assert "worker-1" in online.stdout and "online" in online.stdout
    done = run_step("rotate-tokens", "verify-a-run-completes", env=local.step_env(), timeout=120)
    assert "hello, rotation!" in done.stdout
    assert local.runner.proc.poll() is None, local.runner.log()
    http.close()


def test_a_runner_without_the_new_registration_token_cannot_come_back(local: Local) -> None:
    """The unsafe order the runbook warns about: revoke before the runner has the new
    registration token, and it exits 2 (once idle) naming the refusal."""
    wait_for(lambda: _registrations(local.runner) == 1, timeout=30, what="the first registration")
    local.api.env["MINITOWER_RUNNER_REGISTRATION_TOKEN"] = "a-new-registration-token-0123456789"
    local.api.restart()
    run_step("rotate-tokens", "local-revoke-runner-tokens", env=local.step_env())
    local.runner.proc.wait(timeout=60)
    assert local.runner.proc.returncode == 2
    assert "refused the registration token" in local.runner.log()


def test_rotating_the_bootstrap_token(local: Local) -> None:
    new_token = run_step("rotate-tokens", "local-generate-token").stdout.strip()
    local.api.env["MINITOWER_BOOTSTRAP_TOKEN"] = new_token
    local.api.restart()
    refused = run_step(
        "rotate-tokens",
        "local-verify-old-bootstrap-refused",
        env=local.step_env(OLD_BOOTSTRAP_TOKEN=BOOTSTRAP_TOKEN),
    )
    assert "old bootstrap token: HTTP 401" in refused.stdout
    with local.api.client() as http:
        # The new one works, and the team and its tokens are untouched.
        again = http.post(
            "/api/v1/bootstrap/team",
            headers={"Authorization": f"Bearer {new_token}"},
            json={"slug": "acme", "name": "Acme"},
        )
        assert check(again, 200)["team_id"] == local.team.team_id
        check(http.get("/api/v1/me", headers={"Authorization": f"Bearer {local.team.token}"}), 200)


def test_rotating_a_team_token(local: Local) -> None:
    leaked = check(local.team.post("/api/v1/tokens", json={"name": "ci", "role": "member"}), 201)
    env = local.step_env()
    created = run_step("rotate-tokens", "team-create-token", env=env)
    new_token = created.stdout.strip()
    assert new_token.startswith("mtk_") and "shown only this once" in created.stderr
    listing = run_step("rotate-tokens", "team-list-tokens", env=env)
    assert "ci-rotated" in listing.stdout and " ci " in listing.stdout
    revoked = run_step(
        "rotate-tokens", "team-revoke-token", env={**env, "OLD_TOKEN_ID": str(leaked["token_id"])}
    )
    assert f"token {leaked['token_id']} revoked" in revoked.stdout
    refused = run_step(
        "rotate-tokens", "team-verify-old-token-refused", env={**env, "OLD_TOKEN": leaked["token"]}
    )
    assert "old team token: HTTP 401" in refused.stdout
    with httpx.Client(base_url=local.api.url) as http:
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {new_token}"})
        assert check(me, 200)["role"] == "member"
