"""``minitower-reaper`` as a real process beside a real ``minitowerd`` on one database.

The live API's lease TTL is 2 s and the reaper checks every 0.2 s, so a silent runner's
lease is reaped about two seconds after its last word. The races between reapers and
runners run against one API, and against three over one PostgreSQL database with each
client's calls spread over them.
"""

import functools
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from minitower_shared.clock import utcnow
from minitower_shared.db import read_session
from minitower_shared.models import ReaperPass, RunAttempt
from minitower_shared.states import ACTIVE_ATTEMPT_STATUSES, AttemptStatus, RunStatus
from tests.support.api_group import ONE_OR_THREE_APIS, LiveApiGroup
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.concurrency import ResponseLog, Watch, run_in_threads
from tests.support.databases import Database, database_env
from tests.support.invariants import ForwardOnly, history_problems, snapshot
from tests.support.processes import Process, spawn, start_reaper
from tests.support.seed import (
    add_runner,
    doubly_active,
    get_run,
    must_lease,
    queue_runs,
    seed_app,
)
from tests.support.tokens import REGISTRATION_TOKEN
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

REAPER_ENV = {"MINITOWER_EXPIRY_CHECK_INTERVAL": "0.2s"}


def clean_log(process: Process) -> str:
    text = process.log()
    assert "Traceback" not in text, text
    assert "database is locked" not in text, text
    return text


def stop_cleanly(process: Process, timeout: float = 5) -> None:
    started = time.monotonic()
    assert process.stop(timeout) == 0, process.log()
    assert time.monotonic() - started < timeout


@pytest.fixture
def reapers(tmp_path: Path, apis: LiveApiGroup) -> Iterator[Callable[[int], list[Process]]]:
    """Reapers over the database of ``apis``."""
    started: list[Process] = []

    def start(count: int) -> list[Process]:
        new = [
            start_reaper(tmp_path, apis.database, REAPER_ENV, f"reaper-{len(started) + i}")
            for i in range(count)
        ]
        started.extend(new)
        # Up means past start-up, signal handlers installed: on a loaded machine a reaper
        # still importing would die of a SIGTERM instead of stopping cleanly.
        for process in new:
            wait_for(
                lambda process=process: process.events("reaper started", service="reaper"),
                timeout=60,
                what=f"{process.log_path.name} to start",
            )
        return new

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def live_team(apis: LiveApiGroup, hello_archive: bytes) -> Iterator[TeamClient]:
    """A team acting through the first API of ``apis``."""
    with apis.client(0) as http:
        team = TeamClient.bootstrap(http, "acme", apis.env["MINITOWER_BOOTSTRAP_TOKEN"])
        team.deploy("hello", hello_archive)
        yield team


def runner_client(http: httpx.Client, name: str) -> RunnerClient:
    return RunnerClient.register(http, name, REGISTRATION_TOKEN)


def expired_lines(*processes: Process) -> list[tuple[int, str]]:
    return [
        (line["run_id"], line["status"])
        for process in processes
        for line in process.events("lease expired", service="reaper", level="info")
    ]


@ONE_OR_THREE_APIS
def test_silent_runners_runs_are_requeued_or_buried_by_two_reapers(
    apis: LiveApiGroup,
    live_team: TeamClient,
    reapers: Callable[[int], list[Process]],
    apis_engine: Engine,
) -> None:
    """Two runners go silent at once: the run with a retry left goes back to the queue
    and another runner completes it; the run without retries dies. Two reapers watch the
    same database at once, and each transition is applied by exactly one of them. With
    several APIs each runner talks to another one than the team."""
    both = reapers(2)
    retried = live_team.create_run("hello", max_retries=1, priority=1)["run_id"]
    buried = live_team.create_run("hello", max_retries=0)["run_id"]
    engine = apis_engine
    with apis.clients() as http:
        silent = runner_client(http[1 % len(http)], "silent")
        lease = silent.lease()
        assert lease is not None and lease.run_id == retried
        check(silent.start(lease), 200)
        mute = runner_client(http[2 % len(http)], "mute")
        mute_lease = mute.lease()
        assert mute_lease is not None and mute_lease.run_id == buried
        check(mute.start(mute_lease), 200)
        check(mute.heartbeat(mute_lease), 200)

        # Both runners go silent: no heartbeat. The reaper requeues one and buries the other.
        wait_for(
            lambda: (
                live_team.run(retried)["status"] == "queued"
                and live_team.run(buried)["status"] == "dead"
            ),
            timeout=15,
            what="the reaper to requeue one run and bury the other",
        )
        requeued = live_team.run(retried)
        assert (requeued["retry_count"], requeued["finished_at"]) == (1, None)
        dead = live_team.run(buried)
        assert dead["retry_count"] == 0
        assert dead["finished_at"] is not None
        assert "expired" in (dead["error_message"] or "")
        # The silent runners are fenced off for good.
        assert silent.heartbeat(lease).status_code == 410
        assert silent.result(lease, "completed").status_code == 410
        assert mute.heartbeat(mute_lease).status_code == 410

        rescuer = runner_client(http[1 % len(http)], "rescuer")
        second = rescuer.lease()
        assert second is not None and second.run_id == retried
        assert second.body["attempt_no"] == 2
        check(rescuer.start(second), 200)
        check(rescuer.result(second, "completed", exit_code=0), 200)
        assert silent.result(lease, "completed").status_code == 410
        # Nothing is left to lease, and the dead run never changes again.
        assert rescuer.lease() is None
        check(live_team.post(f"/api/v1/runs/{buried}/cancel"), 200)

    final = live_team.run(retried)
    assert (final["status"], final["retry_count"], final["exit_code"]) == ("completed", 1, 0)
    attempts = check(live_team.get(f"/api/v1/runs/{retried}/attempts"), 200)["attempts"]
    assert [(a["attempt_no"], a["runner_name"], a["status"]) for a in attempts] == [
        (1, "silent", "expired"),
        (2, "rescuer", "completed"),
    ]
    assert live_team.run(buried)["status"] == "dead"
    attempts = check(live_team.get(f"/api/v1/runs/{buried}/attempts"), 200)["attempts"]
    assert [(a["runner_name"], a["status"]) for a in attempts] == [("mute", "expired")]
    # Give both reapers more passes over the finished runs: nothing changes any more.
    time.sleep(0.5)
    assert sorted(expired_lines(*both)) == sorted([(retried, "queued"), (buried, "dead")])
    assert get_run(engine, retried).retry_count == 1
    assert history_problems(engine) == []
    for reaper in both:
        stop_cleanly(reaper)
        clean_log(reaper)


def test_sigterm_stops_the_reaper_promptly(tmp_path: Path, database: Database) -> None:
    # A long interval: the reaper is asleep between passes when the signal arrives.
    reaper = start_reaper(
        tmp_path, database, {"MINITOWER_EXPIRY_CHECK_INTERVAL": "30s"}, "sleepy-reaper"
    )
    try:
        wait_for(
            lambda: reaper.events("reaper started", interval_seconds=30.0),
            timeout=20,
            what="the reaper to start",
        )
        started = time.monotonic()
        reaper.proc.send_signal(signal.SIGTERM)
        assert reaper.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        reaper.stop()
    clean_log(reaper)
    assert reaper.events("stopping", signal="SIGTERM")
    assert reaper.events("reaper stopped")


def test_reaper_once_makes_one_pass_and_exits(
    tmp_path: Path, database: Database, engine: Engine
) -> None:
    seeded = seed_app(engine)
    (run_id,) = queue_runs(engine, seeded, max_retries=1)
    runner = add_runner(engine, "silent")
    must_lease(engine, runner, now=utcnow() - timedelta(minutes=5))
    once = spawn(
        "minitower-reaper",
        ["--once"],
        {
            **database_env(database),
            "MINITOWER_LOG_LEVEL": "info",
            "MINITOWER_REAPER_NAME": "reaper-once",
        },
        tmp_path / "reaper-once.log",
    )
    assert once.proc.wait(timeout=30) == 0, once.log()
    assert "expired 1 leases" in clean_log(once)
    run = get_run(engine, run_id)
    assert (run.status, run.retry_count) == (RunStatus.QUEUED, 1)
    with read_session(engine) as session:
        recorded = session.get(ReaperPass, "reaper-once")
    assert recorded is not None
    assert (recorded.passes, recorded.leases_expired, recorded.runs_retried) == (1, 1, 1)


def test_reaper_refuses_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "minitower.db"
    reaper = spawn(
        "minitower-reaper",
        ["--once"],
        {"MINITOWER_DB_PATH": str(missing)},
        tmp_path / "reaper-missing.log",
    )
    assert reaper.proc.wait(timeout=30) == 2
    assert "does not exist" in reaper.log()
    assert not missing.exists()


# --- load ----------------------------------------------------------------------------

LOAD_SECONDS = 8.0
LOAD_THREADS = 6
RUNNERS_PER_THREAD = 2

# What a well-behaved client may be answered under load: 410 when its lease ran out
# (the 2 s TTL is short on a busy machine), 409 when a runner still holds an abandoned
# lease, 204 when the queue is momentarily empty.
ALLOWED = {
    "create": {201},
    "lease": {200, 204, 409},
    "start": {200, 410},
    "heartbeat": {200, 410},
    "logs": {200, 410},
    "result": {200, 410},
    "cancel": {200},
}


@ONE_OR_THREE_APIS
def test_load_with_two_reapers_on_one_database(
    apis: LiveApiGroup,
    live_team: TeamClient,
    reapers: Callable[[int], list[Process]],
    apis_engine: Engine,
) -> None:
    """The APIs and two reapers write the same database while client threads create,
    lease, start, heartbeat, log and finish runs, abandoning some so the reapers have
    work. With several APIs a thread's team and its runners talk to different ones."""
    engine = apis_engine
    both = reapers(2)
    log = ResponseLog()
    unexpected: list[str] = []
    deadline = time.monotonic() + LOAD_SECONDS

    def expect(kind: str, response: httpx.Response) -> httpx.Response:
        if response.status_code not in ALLOWED[kind]:
            unexpected.append(f"{kind}: {response.status_code} {response.text[:300]}")
        return response

    def client_loop(index: int) -> Counter[str]:
        rng = random.Random(index)
        done: Counter[str] = Counter()
        with apis.clients(hooks=log.hooks) as http:
            me = replace(live_team, http=http[index % len(http)])
            runners = [
                RunnerClient.register(
                    http[(index + 1 + i) % len(http)], f"load-{index}-{i}", REGISTRATION_TOKEN
                )
                for i in range(RUNNERS_PER_THREAD)
            ]
            turn = 0
            while time.monotonic() < deadline:
                body = {"max_retries": rng.choice([0, 1, 2]), "priority": rng.randint(0, 2)}
                expect("create", me.post("/api/v1/apps/hello/runs", json=body))
                runner = runners[turn % len(runners)]
                turn += 1
                response = expect("lease", runner.lease_response())
                if response.status_code != 200:
                    done[f"lease {response.status_code}"] += 1
                    continue
                lease = Lease(response.json()["run_id"], response.json()["lease_token"], {})
                done[work_on(lease, runner, me, rng, expect, deadline - 3)] += 1
        return done

    forward = ForwardOnly(engine)
    with Watch(lambda: doubly_active(engine) + forward(), interval=0.05) as watch:
        results = run_in_threads(
            [functools.partial(client_loop, i) for i in range(LOAD_THREADS)],
            timeout=LOAD_SECONDS + 60,
            name="client",
        )
    assert watch.errors == [] and watch.violations == []
    assert watch.samples > 0
    totals: Counter[str] = sum(results, Counter())
    assert log.server_errors() == []
    assert unexpected == []
    assert totals["completed"] > 0 and totals["abandoned"] > 0, totals

    # Every abandoned lease has run out by now: the reapers must catch up with all.

    def stale_active() -> list[RunAttempt]:
        with read_session(engine) as session:
            return list(
                session.exec(
                    select(RunAttempt).where(
                        col(RunAttempt.status).in_([s.value for s in ACTIVE_ATTEMPT_STATUSES]),
                        col(RunAttempt.lease_expires_at) < utcnow(),
                    )
                )
            )

    wait_for(lambda: not stale_active(), timeout=10, what="the reapers to expire every lease")
    for reaper in both:
        stop_cleanly(reaper)
        clean_log(reaper)
    api_log = apis.logs()
    assert "Traceback" not in api_log and "locked" not in api_log, api_log[-5000:]

    runs, attempts = snapshot(engine)
    assert history_problems(engine) == []
    statuses = Counter(r.status for r in runs)
    assert set(statuses) <= {s.value for s in RunStatus}
    # No run is left owned by a lease: every run is finished or waits in the queue.
    assert set(statuses) <= {"queued", "completed", "failed", "cancelled", "dead"}, statuses
    # The reapers did real work, and never expired one attempt twice between them.
    reaped = Counter(run_id for run_id, _ in expired_lines(*both))
    assert reaped, "the reapers expired nothing"
    expired_per_run = Counter(a.run_id for a in attempts if a.status == AttemptStatus.EXPIRED)
    assert all(reaped[r] <= expired_per_run[r] for r in reaped), (reaped, expired_per_run)


def work_on(
    lease: Lease,
    runner: RunnerClient,
    team: TeamClient,
    rng: random.Random,
    expect: Callable[[str, httpx.Response], httpx.Response],
    abandon_until: float,
) -> str:
    """Play one leased run to its end (or abandon it); returns what happened."""
    # Abandon only leases that will run out (2 s TTL) before the load ends, so that at
    # the end the reapers must have caught up with every one of them.
    if rng.random() < 0.15 and time.monotonic() < abandon_until:
        return "abandoned"
    if expect("start", runner.start(lease)).status_code == 410:
        return "gone"
    if rng.random() < 0.1:
        expect("cancel", team.post(f"/api/v1/runs/{lease.run_id}/cancel"))
    beat = expect("heartbeat", runner.heartbeat(lease))
    if beat.status_code == 410:
        return "gone"
    lines = [{"seq": i, "stream": "stdout", "line": f"line {i}"} for i in range(1, 4)]
    if expect("logs", runner.logs(lease, lines)).status_code == 410:
        return "gone"
    if beat.json()["cancel_requested"]:
        status = "cancelled"
    else:
        status = rng.choice(["completed", "completed", "completed", "failed"])
    result = expect("result", runner.result(lease, status, exit_code=0))
    if result.status_code == 410:
        return "gone"
    return str(result.json()["run_status"])
