"""The compose stack moved from SQLite to the PostgreSQL stack and run there, as an
operator would: the steps of deploy/runbooks/move-to-postgresql.md ("Compose") move a
running SQLite stack (runs, logs, tokens) onto compose.postgres.yaml (PostgreSQL 15 from
its own image, API replicas behind the nginx proxy); the step of
deploy/runbooks/multi-host.md scales it to 3 API replicas (2 reapers, 4 runners, all
talking through the proxy); 200 runs are submitted and executed while one API replica is
killed and started again: every run the API acknowledged completes, none executed twice
at once, and the proxy sends requests to the restarted replica again (it resolves the
replicas by name, not once at start). Last, the compose roll back returns to SQLite as
it was at the copy.

The tests share one stack and run in order (a module goes to one worker, whole).
Leases last 15 s, longer than a replica takes to come back, as in test_failures.py.
"""

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import check
from tests.support.compose_stack import (
    Stack,
    bring_up,
    layer_postgres,
    no_restart,
    tear_down,
)
from tests.support.runbooks import run_step
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

RUNS = 200
SUBMITTERS = 4
API_REPLICAS = 3
REAPERS = 2
RUNNERS = 4
LEASE_TTL = 15
APP = """\
import os
print("ran", os.environ["MINITOWER_RUN_ID"], "attempt", os.environ["MINITOWER_ATTEMPT_NO"])
"""


BEFORE_MOVE = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A SQLite stack at first; the first test moves it."""
    up = bring_up(
        tmp_path_factory.mktemp("e2e-postgres"),
        runners=RUNNERS,
        lease_ttl=f"{LEASE_TTL}s",
        postgres_images=True,
        env={"MINITOWER_API_REPLICAS": "2", "MINITOWER_REAPERS": str(REAPERS)},
    )
    try:
        yield up
    finally:
        # Down with both files whatever the tests got to: postgres, proxy and pgdata too.
        if "compose.postgres.yaml" not in up.compose_file:
            layer_postgres(up)
        tear_down(up)


@pytest.fixture(scope="module")
def moved(stack: Stack) -> dict[int, list[str]]:
    """The runs made on SQLite before the move, with their log lines."""
    return {}


def test_a_sqlite_stack_moves_to_the_postgresql_stack_with_the_runbook(
    stack: Stack, moved: dict[int, list[str]]
) -> None:
    sqlite_files = stack.compose_file
    stack.deploy("ping", APP)
    run_ids = [stack.start_run("ping") for _ in range(BEFORE_MOVE)]
    for run_id in run_ids:
        assert stack.wait_status(run_id)["status"] == "completed"
        moved[run_id] = stack.lines(run_id)
    env = stack.runbook_env()

    run_step("move-to-postgresql", "compose-start-postgres", env=env, timeout=240)
    assert "MINITOWER_POSTGRES_PASSWORD=" in Path(stack.env_file).read_text()
    copied = run_step("move-to-postgresql", "compose-copy-to", env=env, timeout=300)
    assert "verified:" in copied.stdout, copied.stdout
    password = Path(stack.env_file).read_text().split("MINITOWER_POSTGRES_PASSWORD=")[1]
    assert password.split()[0] not in copied.stdout + copied.stderr
    run_step("move-to-postgresql", "compose-switch-to-postgresql", env=env, timeout=300)
    layer_postgres(stack)
    assert Path(f"{stack.env_file}.sqlite").is_file()

    stack.wait_ready()
    assert len(stack.containers("postgres")) == 1 and len(stack.containers("proxy")) == 1
    assert len(stack.containers("api")) == 2
    # The same runs, ids, statuses and lines, for the same team token, through the proxy.
    for run_id, lines in moved.items():
        assert stack.run(run_id)["status"] == "completed"
        assert stack.lines(run_id) == lines
    # New runs follow the copied ids, with their artifact from the database.
    after = stack.start_run("ping")
    assert after > max(moved)
    assert stack.wait_status(after)["status"] == "completed"
    verified = run_step(
        "move-to-postgresql",
        "verify-moved",
        env=stack.runbook_env(MINITOWER_VERIFY_APP="ping"),
        timeout=180,
    )
    assert "completed" in verified.stdout
    assert sqlite_files != stack.compose_file


class Submitter:
    """Creates runs until ``RUNS`` are acknowledged, each under an Idempotency-Key kept
    until the API answers with its run (201, or 200 to a retry after a lost answer), so
    a create whose answer was lost with a replica is retried without making a second
    run. Bounded in time and in tries."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.acknowledged: list[int] = []
        self.retried = 0
        self.replayed = 0
        self.lock = threading.Lock()
        self.numbers = itertools.count()

    def _create(self, key: str) -> int:
        deadline = time.monotonic() + 60
        tried = False
        while True:
            try:
                response = self.stack.team.post(
                    "/api/v1/apps/load/runs",
                    json={"max_retries": 3},
                    headers={"Idempotency-Key": key},
                )
                if response.status_code == 201:
                    run_id: int = response.json()["run_id"]
                    return run_id
                if response.status_code == 200:
                    # The key's run was made but its answer was lost with the replica:
                    # the retry is answered with that run (api-v1: 200), not a new one.
                    assert tried, f"a first create answered 200: {response.text}"
                    with self.lock:
                        self.replayed += 1
                    replayed: int = response.json()["run_id"]
                    return replayed
                assert response.status_code in (502, 503, 504), response.text
            except httpx.TransportError:
                pass  # the replica went away with the request: retry with the same key
            tried = True
            assert time.monotonic() < deadline, f"run {key} not acknowledged within 60 s"
            with self.lock:
                self.retried += 1
            time.sleep(0.2)

    def work(self) -> None:
        while next(self.numbers) < RUNS:
            run_id = self._create(str(uuid.uuid4()))
            with self.lock:
                self.acknowledged.append(run_id)
            time.sleep(0.05)


def _when(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _listed_runs(stack: Stack, app: str | None = None) -> list[int]:
    found: list[int] = []
    params: dict[str, Any] = {"limit": 200, **({"app": app} if app else {})}
    for _ in range(10):  # pages of 200: bounded
        page = check(stack.team.get("/api/v1/runs", params=params), 200)
        found += [r["run_id"] for r in page["runs"]]
        if page["next_cursor"] is None:
            return found
        params["cursor"] = page["next_cursor"]
    raise AssertionError("more pages of runs than were created")


def _healthy(container: Any) -> bool:
    container.reload()
    return bool(container.attrs["State"]["Health"]["Status"] == "healthy")


def _container_address(container: Any) -> str:
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    (address,) = {n["IPAddress"] for n in networks.values()}
    return str(address)


def test_runs_survive_an_api_replica_killed_and_restarted(stack: Stack) -> None:
    assert len(stack.containers("api")) == 2
    scaled = run_step(
        "multi-host",
        "pg-compose-scale",
        env=stack.runbook_env(MINITOWER_API_REPLICAS=str(API_REPLICAS)),
    )
    assert scaled.stdout.count("api Up") == API_REPLICAS, scaled.stdout
    assert len(stack.containers("api")) == API_REPLICAS
    assert len(stack.containers("reaper")) == REAPERS
    assert len(stack.containers("postgres")) == 1
    stack.deploy("load", APP)

    submitter = Submitter(stack)
    threads = [threading.Thread(target=submitter.work) for _ in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(submitter.acknowledged) >= 50, timeout=60, what="50 runs")
        victim = stack.containers("api")[0]
        no_restart(victim)
        victim.kill()
        killed_at = len(submitter.acknowledged)
        # Submissions go on through the other two replicas while this one is down.
        wait_for(
            lambda: len(submitter.acknowledged) >= killed_at + 20,
            timeout=60,
            what="runs acknowledged while a replica is down",
        )
        victim.start()
        wait_for(lambda: _healthy(victim), timeout=60, what="the restarted replica to be healthy")
        restarted_address = _container_address(victim)
    finally:
        for thread in threads:
            thread.join(120)
    assert not any(thread.is_alive() for thread in threads)

    acknowledged = submitter.acknowledged
    assert len(acknowledged) == RUNS and len(set(acknowledged)) == RUNS
    runs = [stack.wait_status(run_id, timeout=180) for run_id in acknowledged]
    assert [r["status"] for r in runs] == ["completed"] * RUNS, [
        r for r in runs if r["status"] != "completed"
    ]
    # The team sees exactly the runs it was told about: no create made a second run.
    assert sorted(_listed_runs(stack, "load")) == sorted(acknowledged)

    retried_runs = 0
    for run_id in acknowledged:
        attempts = stack.attempts(run_id)
        statuses = [a["status"] for a in attempts]
        assert statuses.count("completed") == 1 and statuses[-1] == "completed", statuses
        assert set(statuses) <= {"completed", "expired"}, statuses
        # Never two at once: each attempt was leased after the one before it had ended.
        for before, after in itertools.pairwise(attempts):
            assert _when(after["leased_at"]) >= _when(before["finished_at"]), attempts
        # What actually ran: at most one execution per attempt, the last one among them.
        ran = [line for line in stack.lines(run_id) if line.startswith("ran ")]
        assert len(ran) == len(set(ran)) and ran[-1] == (
            f"ran {run_id} attempt {attempts[-1]['attempt_no']}"
        ), ran
        retried_runs += len(attempts) > 1

    # The proxy found the restarted replica again by name and sends it requests.
    def served_by_restarted() -> bool:
        for _ in range(12):
            check(stack.team.get("/api/v1/me"), 200)
        logs = stack.containers("proxy")[0].logs(tail=40).decode()
        return f"upstream={restarted_address}:8080" in logs

    wait_for(served_by_restarted, timeout=30, what="the proxy to use the restarted replica")
    print(
        f"{RUNS} runs through {API_REPLICAS} replicas, one killed after {killed_at}:"
        f" {submitter.retried} create retries ({submitter.replayed} answered with the run"
        f" the lost answer had made), {retried_runs} runs with a second attempt"
    )


def test_the_compose_roll_back_returns_to_sqlite_as_it_was_at_the_copy(
    stack: Stack, moved: dict[int, list[str]]
) -> None:
    assert moved, "the move test ran first"
    sqlite_files = ":".join(
        name for name in stack.compose_file.split(":") if not name.endswith("compose.postgres.yaml")
    )
    run_step(
        "move-to-postgresql",
        "compose-roll-back",
        env=stack.runbook_env(COMPOSE_FILE=sqlite_files),
        timeout=300,
    )
    stack.wait_ready()
    assert stack.containers("postgres") == [] and stack.containers("proxy") == []
    # SQLite as the copy left it: the runs from before, none made on PostgreSQL since.
    assert sorted(_listed_runs(stack)) == sorted(moved)
    for run_id, lines in moved.items():
        assert stack.lines(run_id) == lines
