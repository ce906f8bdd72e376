"""The compose steps of deploy/runbooks/rotate-tokens.md, database-locked.md and
securing.md, run as written with plain ``docker compose`` against a stack of this module
(pointed at it by COMPOSE_PROJECT_NAME, COMPOSE_FILE and COMPOSE_ENV_FILES).

Rotating the registration token recreates the runners (each drains, its run finishes)
and revoking the runner tokens makes every live runner register again, with a run in
flight that keeps its lease: both runs complete in one attempt."""

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.compose_stack import REGISTRATION_TOKEN, Stack, bring_up, tear_down
from tests.support.processes import log_events
from tests.support.runbooks import run_step
from tests.support.waiting import wait_for

# One compose stack test at a time (under pytest-xdist): each drives a whole stack on
# timings of seconds (leases, heartbeats), which a second one beside it would crowd.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

# Long enough to be in flight across a runner's drain or a revocation, well under the
# stack's 10 s drain timeout.
SLOW = "import time\nprint('working', flush=True)\ntime.sleep(5)\nprint('finished', flush=True)\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every statement logged as slow, so that the slow-query step has something to count;
    # leases longer than the API's recreation (migrate, then start: about 10 s), as the
    # default 60 s are, so that runs in flight ride over it.
    up = bring_up(
        tmp_path_factory.mktemp("e2e"),
        lease_ttl="30s",
        env={"MINITOWER_SLOW_QUERY_THRESHOLD": "0"},
    )
    try:
        yield up
    finally:
        tear_down(up)


@pytest.fixture
def env(stack: Stack, tmp_path: Path) -> dict[str, str]:
    # The CLI gets a HOME of its own; docker keeps its compose plugin where it was.
    return stack.runbook_env(
        DOCKER_CONFIG=os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker")),
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / ".config"),
    )


def _registrations(stack: Stack) -> dict[str, int]:
    """How often each runner container registered, by runner name (its short id)."""
    return {
        c.id[:12]: sum(
            line["event"] == "registered" for line in log_events(c.logs().decode(errors="replace"))
        )
        for c in stack.containers("runner")
    }


def _in_flight(stack: Stack) -> int:
    run_id = stack.start_run("slow")
    stack.wait_status(run_id, {"running"}, timeout=60)
    wait_for(lambda: "working" in stack.lines(run_id), timeout=30, what="the run's first line")
    return run_id


def _completed_in_one_attempt(stack: Stack, run_id: int) -> dict[str, Any]:
    run = stack.wait_status(run_id, timeout=90)
    attempts = stack.attempts(run_id)
    assert run["status"] == "completed", (run, attempts, stack.lines(run_id))
    assert len(attempts) == 1, attempts
    return run


def test_security_checks(stack: Stack, env: dict[str, str]) -> None:
    Path(stack.env_file).chmod(0o644)
    checked = run_step("securing", "compose-security-checks", env=env).stdout
    assert "env file: mode 600" in checked
    assert f"api published on: 127.0.0.1:{stack.url.rsplit(':', 1)[1]}" in checked
    assert "MINITOWER_ENV=production" in checked
    assert Path(stack.env_file).stat().st_mode & 0o777 == 0o600


def test_denying_shared_runners_to_a_team(stack: Stack, env: dict[str, str]) -> None:
    stack.deploy("quick", "print('quick')\n")
    denied = run_step("securing", "compose-deny-shared-runners", env={**env, "TEAM": "acme"})
    assert "team acme: shared runners denied" in denied.stdout
    run_id = stack.start_run("quick")
    time.sleep(3)  # compose's runners are shared: none may take it
    assert stack.run(run_id)["status"] == "queued"
    # The roll back: allowed again, a shared runner takes it at its next lease.
    stack.cli("exec", "-T", "api", "minitowerd", "team-shared-runners", "acme", "--allow")
    assert stack.wait_status(run_id, timeout=60)["status"] == "completed"


def test_database_diagnosis(stack: Stack, env: dict[str, str]) -> None:
    status = run_step("database-locked", "compose-db-status", env=env).stdout
    assert "journal mode:    wal" in status and "busy timeout:    30000 ms" in status
    holders = run_step("database-locked", "compose-who-holds-db", env=env).stdout
    assert sorted(line.split()[0] for line in holders.splitlines()[1:]) == [
        f"{stack.project}-api-1",
        f"{stack.project}-reaper-1",
        f"{stack.project}-scheduler-1",
    ], holders
    checkpoint = run_step("database-locked", "compose-checkpoint", env=env).stdout
    assert "checkpoint:      done" in checkpoint and "integrity:       ok" in checkpoint
    counted = run_step("database-locked", "compose-count-busy-and-slow", env=env).stdout
    assert "database busy events: 0" in counted
    slow = int(counted.split("slow queries:")[1].split()[0])
    assert slow > 0, counted


def test_rotating_the_registration_token(stack: Stack, env: dict[str, str]) -> None:
    stack.deploy("slow", SLOW)
    before = set(_registrations(stack))
    draining = _in_flight(stack)

    rotated = run_step("rotate-tokens", "compose-rotate-registration-token", env=env, timeout=240)
    assert "Healthy" in rotated.stderr, rotated.stderr
    assert REGISTRATION_TOKEN not in Path(stack.env_file).read_text()
    _completed_in_one_attempt(stack, draining)  # it finished on its draining runner
    runners = _registrations(stack)
    assert len(runners) == 2 and not set(runners) & before, (runners, before)

    revoking = _in_flight(stack)
    revoked = run_step("rotate-tokens", "compose-revoke-runner-tokens", env=env).stdout
    assert all(f"revoked {name} (default, online)" in revoked for name in runners), revoked
    assert "revoked the tokens of 4 runner(s)" in revoked, revoked
    wait_for(
        lambda: all(count == 2 for count in _registrations(stack).values()),
        timeout=60,
        what="every runner to register again",
    )
    _completed_in_one_attempt(stack, revoking)

    verified = run_step("rotate-tokens", "compose-verify-registration-rotated", env=env).stdout
    assert "old registration token: HTTP 401" in verified
    assert verified.splitlines()[-1] == "4"
    online = run_step("rotate-tokens", "verify-runners-online", env=env).stdout
    for name in runners:
        assert any(name in line and "online" in line for line in online.splitlines()), online
    done = run_step("rotate-tokens", "verify-a-run-completes", env=env, timeout=180)
    assert "hello, rotation!" in done.stdout


def test_rotating_the_bootstrap_token(stack: Stack, env: dict[str, str]) -> None:
    runners = set(_registrations(stack))
    run_step("rotate-tokens", "compose-rotate-bootstrap-token", env=env, timeout=240)
    refused = run_step("rotate-tokens", "compose-verify-old-bootstrap-refused", env=env).stdout
    assert "old bootstrap token: HTTP 401" in refused
    # Only the API was recreated: the runners, and the team's token, carry on.
    assert set(_registrations(stack)) == runners
    stack.wait_ready()
    assert stack.team.get("/api/v1/me").status_code == 200
