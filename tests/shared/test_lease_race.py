"""Many runners leasing from one database at once: every run is leased exactly once.

The store test uses real OS processes, each with its own engine and its own runner row,
on ONE database; the HTTP test uses threads against one real ``minitowerd``, and again
against three over one PostgreSQL database (where only ``FOR UPDATE SKIP LOCKED`` and
the store's locks keep two processes from handing out one run). Each then checks the
whole history in ``run_attempt``, and a watcher samples the live invariants (no two
active attempts for a run or a runner; states only move forward) while the race is on.
"""

import functools
import itertools
import multiprocessing
import queue
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.states import AttemptStatus, RunStatus
from minitower_shared.store import lifecycle
from minitower_shared.store.lifecycle import Granted
from minitower_shared.tokens import LEASE_TOKEN_PREFIX, hash_token, new_token
from tests.support.api_group import ONE_OR_THREE_APIS, LiveApiGroup, runner_spread
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.concurrency import ResponseLog, Watch, run_in_threads
from tests.support.databases import Database
from tests.support.invariants import ForwardOnly, history_problems, snapshot
from tests.support.race_workers import lease_worker
from tests.support.seed import (
    add_runner,
    doubly_active,
    lease,
    load_app,
    must_lease,
    queue_runs,
    seed_app,
)
from tests.support.tokens import REGISTRATION_TOKEN

PROCESSES = 8
PROCESS_RUNS = 300
THREADS = 8
HTTP_RUNS = 200


def assert_each_run_leased_once_and_completed(
    engine: Engine, run_ids: list[int], done: dict[int, list[int]]
) -> None:
    """``done``: runner id → the run ids that runner says it completed."""
    runs, attempts = snapshot(engine)
    assert sorted(r.id for r in runs if r.id is not None) == sorted(run_ids)
    assert Counter(r.status for r in runs) == {RunStatus.COMPLETED: len(run_ids)}
    # Exactly one attempt per run, numbered 1, completed: nobody leased a run twice.
    assert len(attempts) == len(runs)
    assert Counter(a.run_id for a in attempts) == dict.fromkeys(run_ids, 1)
    assert {(a.attempt_no, a.status) for a in attempts} == {(1, AttemptStatus.COMPLETED)}
    # What each runner did, by its own account, is what the database says it did.
    claimed = [run_id for ids in done.values() for run_id in ids]
    assert sorted(claimed) == sorted(run_ids)
    by_runner: dict[int, list[int]] = {}
    for a in attempts:
        by_runner.setdefault(a.runner_id, []).append(a.run_id)
    assert {k: sorted(v) for k, v in by_runner.items()} == {
        k: sorted(v) for k, v in done.items() if v
    }
    # One runner never held two leases at once: its attempts follow one another.
    for runner_attempts in by_runner:
        spans = sorted(
            (a.leased_at, a.finished_at) for a in attempts if a.runner_id == runner_attempts
        )
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert end is not None and end <= begin
    assert history_problems(engine) == []


@pytest.mark.slow
def test_processes_racing_for_leases_on_one_file(database: Database) -> None:
    engine = create_db_engine(database, pool_size=2)
    try:
        run_ids = queue_runs(engine, seed_app(engine), PROCESS_RUNS)
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        barrier = ctx.Barrier(PROCESSES)
        deadline = time.time() + 60
        procs = [
            ctx.Process(
                target=lease_worker,
                args=(str(database), f"proc-runner-{i}", barrier, results, deadline),
                name=f"lease-worker-{i}",
            )
            for i in range(PROCESSES)
        ]
        with Watch(lambda: doubly_active(engine)) as watch:
            for proc in procs:
                proc.start()
            reports: list[tuple[str, str, Any]] = []
            try:
                for _ in procs:
                    reports.append(results.get(timeout=max(1.0, deadline + 5 - time.time())))
            except queue.Empty:
                pytest.fail(f"only {len(reports)} of {PROCESSES} workers reported: {reports}")
            finally:
                for proc in procs:
                    proc.join(timeout=max(0.1, deadline + 10 - time.time()))
                    if proc.is_alive():
                        proc.terminate()
                        proc.join(5)
        errors = [f"{name}:\n{detail}" for kind, name, detail in reports if kind == "error"]
        assert not errors, "\n".join(errors)
        assert [p.exitcode for p in procs] == [0] * PROCESSES
        assert watch.errors == [] and watch.violations == []
        assert watch.samples > 0

        done = {
            payload["runner_id"]: [run_id for run_id, _attempt in payload["done"]]
            for _kind, _name, payload in reports
        }
        assert len(done) == PROCESSES
        assert_each_run_leased_once_and_completed(engine, run_ids, done)
        # Real contention: the work was spread over several processes.
        assert sum(1 for ids in done.values() if ids) >= 2
    finally:
        engine.dispose()


@pytest.mark.slow
@ONE_OR_THREE_APIS
def test_runners_racing_for_leases_over_http(
    long_lease_ttl: None, apis: LiveApiGroup, hello_archive: bytes
) -> None:
    """Each runner's calls go round the API processes (lease through one, start through
    the next, result through the third), as a proxy in front of replicas spreads them."""
    log = ResponseLog()
    with apis.client(0) as http:
        team = TeamClient.bootstrap(http, "acme", apis.env["MINITOWER_BOOTSTRAP_TOKEN"])
        team.deploy("hello", hello_archive)
    with apis.engine() as engine:
        run_ids = queue_runs(engine, load_app(engine, team.team_id, "hello"), HTTP_RUNS)

        def runner_loop(index: int) -> tuple[int, list[int]]:
            with apis.clients(hooks=log.hooks) as clients:
                via = runner_spread(clients, index, f"http-runner-{index}")
                done: list[int] = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    lease = via[0].lease()
                    if lease is None:
                        return via[0].runner_id, done
                    assert check(via[1].start(lease), 200)["status"] == "running"
                    body = check(via[2].result(lease, "completed", exit_code=0), 200)
                    assert body["run_status"] == "completed"
                    done.append(lease.run_id)
                raise TimeoutError(f"runner {index}: queue not drained in time")

        forward = ForwardOnly(engine)
        with Watch(lambda: doubly_active(engine) + forward()) as watch:
            results = run_in_threads(
                [functools.partial(runner_loop, i) for i in range(THREADS)],
                timeout=90,
                name="runner",
            )
        assert watch.errors == [] and watch.violations == []
        assert watch.samples > 0 and forward.changes > 0
        assert log.server_errors() == []
        done = dict(results)
        assert len(done) == THREADS
        assert_each_run_leased_once_and_completed(engine, run_ids, done)
        assert log.count(204) == THREADS


WAKE_APPS = 4
WAKE_ROUNDS = 5
WAKE_LIMIT = 2.0


@pytest.mark.slow
@ONE_OR_THREE_APIS
# A re-check far later than any hand-off asserted: only a wake-up explains a prompt lease.
@pytest.mark.api_settings(lease_poll_interval="60s", lease_ttl="30s")
def test_runs_of_several_apps_arriving_at_once_reach_every_waiting_runner(
    apis: LiveApiGroup, apis_engine: Engine, hello_archive: bytes
) -> None:
    """As many runners as apps long-poll, spread over the APIs, while one run of each app
    is created at once (each through another API): every run is leased within moments,
    none is left for the re-check. The waiters all wake at once and race for the runs."""
    with apis.client(0) as http:
        team = TeamClient.bootstrap(http, "acme", apis.env["MINITOWER_BOOTSTRAP_TOKEN"])
        for app in range(WAKE_APPS):
            team.deploy(f"app-{app}", hello_archive)
    with apis.clients() as clients, ThreadPoolExecutor(WAKE_APPS) as pool:
        teams = [replace(team, http=http) for http in clients]
        runners = [
            RunnerClient.register(clients[i % len(clients)], f"waiter-{i}", REGISTRATION_TOKEN)
            for i in range(WAKE_APPS)
        ]

        def wait(runner: RunnerClient) -> tuple[Lease | None, float]:
            lease = runner.lease(10, start=True)
            return lease, time.monotonic()

        for round_no in range(WAKE_ROUNDS):
            waiting = [pool.submit(wait, runner) for runner in runners]
            time.sleep(0.5)  # every runner is waiting
            created_at = time.monotonic()
            created = run_in_threads(
                [
                    functools.partial(teams[(app + 1) % len(teams)].create_run, f"app-{app}")
                    for app in range(WAKE_APPS)
                ],
                timeout=30,
                name="creator",
            )
            got = [future.result(timeout=30) for future in waiting]
            leased = {lease.run_id: at for lease, at in got if lease is not None}
            assert sorted(leased) == sorted(run["run_id"] for run in created), (
                f"round {round_no}: runs left queued for the re-check: {got}"
            )
            handoffs = [at - created_at for at in leased.values()]
            assert max(handoffs) < WAKE_LIMIT, f"round {round_no}: {handoffs}"
            for runner, (lease, _) in zip(runners, got, strict=True):
                assert lease is not None
                check(runner.result(lease, "completed", exit_code=0), 200)
    assert history_problems(apis_engine) == []


def test_a_lease_that_leaves_runs_it_locked_queued_says_so(postgres_database: Database) -> None:
    """On PostgreSQL the pick locks each app's best run (FOR UPDATE SKIP LOCKED) and
    takes one: while it has not committed, a racing lease passes over the others and
    finds nothing. The grant says so, for the API to wake that lease's runner after the
    commit (test_runs_of_several_apps_arriving_at_once_reach_every_waiting_runner)."""
    holder_engine = create_db_engine(postgres_database, pool_size=1)
    racer_engine = create_db_engine(postgres_database, pool_size=1)
    try:
        first, second = (
            seed_app(holder_engine, slug="first"),
            seed_app(holder_engine, slug="second"),
        )
        (taken,) = queue_runs(holder_engine, first, priority=1)
        (left,) = queue_runs(holder_engine, second)
        holder, racer = add_runner(holder_engine, "holder"), add_runner(holder_engine, "racer")
        with write_session(holder_engine) as session:
            grant = lifecycle.lease(
                session,
                runner_id=holder,
                environment="default",
                lease_token_hash=hash_token(new_token(LEASE_TOKEN_PREFIX)),
                now=utcnow(),
                ttl=timedelta(minutes=1),
            )
            assert isinstance(grant, Granted) and grant.run.id == taken
            assert grant.passed_over
            assert lease(racer_engine, racer) is None
        after = must_lease(racer_engine, racer)
        assert after.run.id == left and not after.passed_over
    finally:
        holder_engine.dispose()
        racer_engine.dispose()
