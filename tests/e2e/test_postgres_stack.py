"""The PostgreSQL stack (compose.yaml + compose.postgres.yaml): PostgreSQL 15 from its
own image, API replicas behind the nginx proxy (2, scaled to 3 with the step of
deploy/runbooks/multi-host.md), 2 reapers, 4 runners, all talking through the proxy.
200 runs are submitted and executed while one API replica is killed and started again:
every run the API acknowledged completes, none executed twice at once, and the proxy
sends requests to the restarted replica again (it resolves the replicas by name, not
once at start).

Leases last 15 s, longer than a replica takes to come back, as in test_failures.py.
"""

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.clients import check
from tests.support.compose_stack import Stack, bring_up, no_restart, tear_down
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    up = bring_up(
        tmp_path_factory.mktemp("e2e-postgres"),
        runners=RUNNERS,
        lease_ttl=f"{LEASE_TTL}s",
        postgres=True,
        env={"MINITOWER_API_REPLICAS": "2", "MINITOWER_REAPERS": str(REAPERS)},
    )
    try:
        yield up
    finally:
        tear_down(up)


class Submitter:
    """Creates runs until ``RUNS`` are acknowledged, each under an Idempotency-Key kept
    until the API answers 201, so a create whose answer was lost with a replica is
    retried without making a second run. Bounded in time and in tries."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.acknowledged: list[int] = []
        self.retried = 0
        self.lock = threading.Lock()
        self.numbers = itertools.count()

    def _create(self, key: str) -> int:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = self.stack.team.post(
                    "/api/v1/apps/ping/runs",
                    json={"max_retries": 3},
                    headers={"Idempotency-Key": key},
                )
                if response.status_code == 201:
                    run_id: int = response.json()["run_id"]
                    return run_id
                assert response.status_code in (502, 503, 504), response.text
            except httpx.TransportError:
                pass  # the replica went away with the request: retry with the same key
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


def _listed_runs(stack: Stack, app: str) -> list[int]:
    found: list[int] = []
    params: dict[str, Any] = {"app": app, "limit": 200}
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
    stack.deploy("ping", APP)

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
    assert sorted(_listed_runs(stack, "ping")) == sorted(acknowledged)

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
        f" {submitter.retried} create retries, {retried_runs} runs with a second attempt"
    )
