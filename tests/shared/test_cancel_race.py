"""A cancel racing the runner's result: the run ends in exactly one terminal state.

The contract: a ``completed`` result means the work really finished, so it wins whether
it lands before or after the cancel; any other result on a run being cancelled ends it
``cancelled``. Whatever the interleaving, the run is never left ``cancelling`` and the
attempt's status matches the run's. Over HTTP the race runs against one API, and against
three on one PostgreSQL database with the cancel and the result sent to different ones.
"""

import threading
from collections import Counter
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import Engine

from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.models import Run
from minitower_shared.states import AttemptStatus, RunStatus
from minitower_shared.store import lifecycle
from tests.support.api_group import ONE_OR_THREE_APIS, LiveApiGroup
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.concurrency import ResponseLog, Watch, run_in_threads
from tests.support.databases import Database
from tests.support.invariants import ForwardOnly, history_problems
from tests.support.seed import (
    Outcome,
    Seeded,
    add_runner,
    attempts_of,
    doubly_active,
    finish,
    get_run,
    must_lease,
    queue_runs,
    start,
)
from tests.support.tokens import REGISTRATION_TOKEN

ITERATIONS = 50
HTTP_ITERATIONS = 30

# What the run ends as, by what the runner reported and whether the cancel came first.
EXPECTED = {
    (AttemptStatus.COMPLETED, True): RunStatus.COMPLETED,
    (AttemptStatus.COMPLETED, False): RunStatus.COMPLETED,
    (AttemptStatus.FAILED, True): RunStatus.CANCELLED,
    (AttemptStatus.FAILED, False): RunStatus.FAILED,
}


@pytest.mark.parametrize("reported", [AttemptStatus.COMPLETED, AttemptStatus.FAILED])
def test_cancel_racing_the_result_in_the_store(
    engine: Engine, seeded: Seeded, database: Database, reported: AttemptStatus
) -> None:
    # Each side has its own engine, hence its own connection, as two processes would.
    cancel_engine = create_db_engine(database, pool_size=1)
    result_engine = create_db_engine(database, pool_size=1)
    orders: Counter[str] = Counter()
    try:
        for i in range(ITERATIONS):
            (run_id,) = queue_runs(engine, seeded)
            grant = must_lease(engine, add_runner(engine, f"runner-{reported}-{i}"))
            attempt_id = grant.attempt.id
            assert attempt_id is not None
            assert start(engine, attempt_id) == Outcome.OK
            barrier = threading.Barrier(2)

            def cancel(run_id: int = run_id, barrier: threading.Barrier = barrier) -> str:
                barrier.wait(timeout=10)
                with write_session(cancel_engine) as session:
                    lifecycle.cancel(session, run_id, utcnow())
                    run = session.get(Run, run_id)
                    assert run is not None
                    return run.status

            def report(
                attempt_id: int = attempt_id, barrier: threading.Barrier = barrier
            ) -> Outcome:
                barrier.wait(timeout=10)
                return finish(
                    result_engine,
                    attempt_id,
                    reported,
                    now=utcnow(),
                    exit_code=0 if reported == AttemptStatus.COMPLETED else 1,
                )

            after_cancel, outcome = run_in_threads([cancel, report], timeout=30, name="racer")
            # Both sides succeed, whoever came first.
            assert outcome == Outcome.OK, f"iteration {i}"
            cancel_first = after_cancel == RunStatus.CANCELLING
            orders["cancel first" if cancel_first else "result first"] += 1
            run = get_run(engine, run_id)
            assert run.status == EXPECTED[reported, cancel_first], f"iteration {i}"
            assert run.finished_at is not None
            (attempt,) = attempts_of(engine, run_id)
            assert attempt.status == run.status, f"iteration {i}"
            assert attempt.reported_status == reported
            assert run.cancel_requested is cancel_first
        assert sum(orders.values()) == ITERATIONS
        runs = [get_run(engine, r) for r in range(1, ITERATIONS + 1)]
        assert not [r.id for r in runs if r.status == RunStatus.CANCELLING]
        assert history_problems(engine) == []
    finally:
        cancel_engine.dispose()
        result_engine.dispose()


@pytest.mark.slow
@ONE_OR_THREE_APIS
def test_cancel_racing_the_result_over_http(
    long_lease_ttl: None, apis: LiveApiGroup, hello_archive: bytes
) -> None:
    """With several APIs the cancel goes through one and the result through another,
    moving round them from one iteration to the next."""
    log = ResponseLog()
    with apis.clients(hooks=log.hooks) as team_http, apis.clients(hooks=log.hooks) as runner_http:
        team = TeamClient.bootstrap(team_http[0], "acme", apis.env["MINITOWER_BOOTSTRAP_TOKEN"])
        team.deploy("hello", hello_archive)
        teams = [replace(team, http=http) for http in team_http]
        runner = RunnerClient.register(runner_http[0], "racer", REGISTRATION_TOKEN)
        runners = [replace(runner, http=http) for http in runner_http]
        with apis.engine() as engine:
            forward = ForwardOnly(engine)
            with Watch(lambda: doubly_active(engine) + forward()) as watch:
                orders = Counter(
                    race_cancel_and_result(i, teams[i % len(apis)], runners[(i + 1) % len(apis)])
                    for i in range(HTTP_ITERATIONS)
                )
            assert watch.errors == [] and watch.violations == []
            assert watch.samples > 0
            assert history_problems(engine) == []
    assert log.server_errors() == []
    assert sum(orders.values()) == HTTP_ITERATIONS
    print(f"cancel vs result over {len(apis)} API(s): {dict(orders)}")


def race_cancel_and_result(i: int, team: TeamClient, runner: RunnerClient) -> str:
    """One iteration; which side came first."""
    reported = "completed" if i % 2 == 0 else "failed"
    run_id = team.create_run("hello")["run_id"]
    lease = runner.lease()
    assert lease is not None and lease.run_id == run_id
    check(runner.start(lease), 200)

    def cancel() -> httpx.Response:
        return team.post(f"/api/v1/runs/{run_id}/cancel")

    def report() -> httpx.Response:
        return runner.result(lease, reported, exit_code=0)

    cancelled, result = run_in_threads([cancel, report], timeout=30, name="http-racer")
    after_cancel = check(cancelled, 200)["status"]
    assert check(result, 200)["run_status"] in ("completed", "failed", "cancelled")
    cancel_first = after_cancel == "cancelling"
    expected = EXPECTED[AttemptStatus(reported), cancel_first]
    final = team.run(run_id)
    assert final["status"] == expected, f"iteration {i}: {final}"
    assert final["cancel_requested"] is cancel_first
    attempts = check(team.get(f"/api/v1/runs/{run_id}/attempts"), 200)["attempts"]
    assert [a["status"] for a in attempts] == [expected.value]
    # A repeated result is still recognised after the race.
    check(runner.result(lease, reported, exit_code=0), 200)
    return "cancel first" if cancel_first else "result first"
