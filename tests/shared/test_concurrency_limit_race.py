"""A concurrency limit holds under racing runners: four OS processes drain 50 runs of an
app limited to one at a time, and 50 runs of another app, from one SQLite file. The whole
attempt history then shows the limited app's attempts never overlapping, while the other
app's runs were leased during its backlog."""

import itertools
import multiprocessing
import queue
import time
from collections import Counter

import pytest
from sqlalchemy import update
from sqlmodel import col

from minitower_shared.clock import as_utc
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.models import App
from minitower_shared.states import RunStatus
from tests.support.databases import Database
from tests.support.invariants import history_problems, snapshot
from tests.support.race_workers import draining_worker
from tests.support.seed import queue_runs, seed_app

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

        runs, attempts = snapshot(engine)
        assert Counter(r.status for r in runs) == {RunStatus.COMPLETED: 2 * RUNS}
        limited_spans = sorted(
            (as_utc(a.leased_at), as_utc(a.finished_at))  # type: ignore[arg-type]
            for a in attempts
            if a.run_id in limited_ids
        )
        assert len(limited_spans) == RUNS
        for (_, end), (begin, _) in itertools.pairwise(limited_spans):
            assert end <= begin, "two runs of the limited app were leased at once"
        # The free app was not held up behind the limited app's backlog.
        last_limited_lease = limited_spans[-1][0]
        free_leases = [as_utc(a.leased_at) for a in attempts if a.run_id in free_ids]
        assert len(free_leases) == RUNS
        assert sum(t < last_limited_lease for t in free_leases) == RUNS
        assert history_problems(engine) == []
    finally:
        engine.dispose()
