"""A concurrency limit holds under racing runners: four OS processes drain 50 runs of an
app limited to one at a time, and 50 runs of another app, from one database. The whole
attempt history then shows the limited app's attempts never overlapping, while the other
app's runs were leased during its backlog. Over HTTP the same race runs against one API,
and against three on one PostgreSQL database, where the limit holds across processes
only by the lease's advisory lock."""

import functools
import itertools
import multiprocessing
import queue
import time
from collections import Counter

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from minitower_shared.clock import as_utc
from minitower_shared.db import create_db_engine, read_session, write_session
from minitower_shared.models import App, Run
from minitower_shared.states import RunStatus
from tests.support.api_group import ONE_OR_THREE_APIS, LiveApiGroup, runner_spread
from tests.support.clients import TeamClient, check
from tests.support.concurrency import ResponseLog, Watch, run_in_threads
from tests.support.databases import Database
from tests.support.invariants import ForwardOnly, history_problems, snapshot
from tests.support.race_workers import draining_worker
from tests.support.seed import doubly_active, load_app, queue_runs, seed_app

RUNNERS = 4
RUNS = 50


@pytest.mark.slow
def test_limit_of_one_is_never_exceeded_while_another_app_flows(database: Database) -> None:
    engine = create_db_engine(database, pool_size=2)
    try:
        limited, free = seed_app(engine, slug="limited"), seed_app(engine, slug="free")
        with write_session(engine) as session:
            session.execute(
                update(App).where(col(App.id) == limited.app.id).values(max_concurrent_runs=1)
            )
        # The limited app's runs are older and of higher priority: without the limit's
        # skip they would be leased first by every runner.
        limited_ids = set(queue_runs(engine, limited, RUNS, priority=5))
        free_ids = set(queue_runs(engine, free, RUNS))
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        barrier = ctx.Barrier(RUNNERS)
        deadline = time.time() + 90
        procs = [
            ctx.Process(
                target=draining_worker,
                args=(str(database), f"runner-{i}", barrier, results, deadline, 0.005),
            )
            for i in range(RUNNERS)
        ]
        for proc in procs:
            proc.start()
        outcomes = []
        try:
            for _ in procs:
                outcomes.append(results.get(timeout=max(deadline - time.time(), 1) + 10))
        except queue.Empty:
            pytest.fail("a worker did not report back in time")
        finally:
            for proc in procs:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
        errors = [detail for kind, _name, detail in outcomes if kind == "error"]
        assert not errors, "\n".join(errors)
        assert_limit_held_while_the_other_app_flowed(engine, limited_ids, free_ids)
    finally:
        engine.dispose()


def assert_limit_held_while_the_other_app_flowed(
    engine: Engine, limited_ids: set[int], free_ids: set[int]
) -> None:
    runs, attempts = snapshot(engine)
    assert Counter(r.status for r in runs) == {
        RunStatus.COMPLETED: len(limited_ids) + len(free_ids)
    }
    limited_spans = sorted(
        (as_utc(a.leased_at), as_utc(a.finished_at))  # type: ignore[arg-type]
        for a in attempts
        if a.run_id in limited_ids
    )
    assert len(limited_spans) == len(limited_ids)
    for (_, end), (begin, _) in itertools.pairwise(limited_spans):
        assert end <= begin, "two runs of the limited app were leased at once"
    # The free app was not held up behind the limited app's backlog.
    last_limited_lease = limited_spans[-1][0]
    free_leases = [as_utc(a.leased_at) for a in attempts if a.run_id in free_ids]
    assert len(free_leases) == len(free_ids)
    assert sum(t < last_limited_lease for t in free_leases) == len(free_ids)
    assert history_problems(engine) == []


HTTP_RUNNERS = 6
HTTP_RUNS = 30
# Between start and result: long enough that a second lease of the limited app would
# overlap the first in the history.
HOLD_SECONDS = 0.01


@pytest.mark.slow
@ONE_OR_THREE_APIS
def test_limit_of_one_holds_over_http(
    long_lease_ttl: None, apis: LiveApiGroup, apis_engine: Engine, hello_archive: bytes
) -> None:
    """The same race through the API: runner threads spread over the API processes (each
    call of a run through another one), and the limit set through the API."""
    engine = apis_engine
    log = ResponseLog()
    with apis.client(0) as http:
        team = TeamClient.bootstrap(http, "acme", apis.env["MINITOWER_BOOTSTRAP_TOKEN"])
        team.deploy("limited", hello_archive)
        team.deploy("free", hello_archive)
        check(team.patch("/api/v1/apps/limited", json={"max_concurrent_runs": 1}), 200)
    limited_ids = set(
        queue_runs(engine, load_app(engine, team.team_id, "limited"), HTTP_RUNS, priority=5)
    )
    free_ids = set(queue_runs(engine, load_app(engine, team.team_id, "free"), HTTP_RUNS))

    def queued_left() -> bool:
        with read_session(engine) as session:
            return session.exec(select(Run.id).where(Run.status == "queued")).first() is not None

    def runner_loop(index: int) -> list[int]:
        with apis.clients(hooks=log.hooks) as clients:
            via = runner_spread(clients, index, f"limit-runner-{index}")
            done: list[int] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                lease = via[0].lease()
                if lease is None:
                    # Runs behind the limit are not offered yet: look again until none
                    # is left.
                    if not queued_left():
                        return done
                    time.sleep(0.005)
                    continue
                check(via[1].start(lease), 200)
                time.sleep(HOLD_SECONDS)
                check(via[2].result(lease, "completed", exit_code=0), 200)
                done.append(lease.run_id)
            raise TimeoutError(f"runner {index}: queue not drained in time")

    forward = ForwardOnly(engine)
    with Watch(lambda: doubly_active(engine) + forward()) as watch:
        results = run_in_threads(
            [functools.partial(runner_loop, i) for i in range(HTTP_RUNNERS)],
            timeout=90,
            name="runner",
        )
    assert watch.errors == [] and watch.violations == [] and watch.samples > 0
    assert log.server_errors() == []
    assert sorted(run_id for done in results for run_id in done) == sorted(limited_ids | free_ids)
    assert_limit_held_while_the_other_app_flowed(engine, limited_ids, free_ids)
