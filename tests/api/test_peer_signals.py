"""Two API processes on one PostgreSQL database wake each other's waiters at once: a run
created through one reaches a runner long-polling on the other, and a log line stored
through one reaches a follower streaming from the other, well before either's periodic
re-check (set to a minute here). Runs on PostgreSQL in every pass (``postgres_template``)."""

import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from minitower_shared.clock import utcnow
from minitower_shared.db import announce_queued, create_db_engine, write_session
from minitower_shared.retry import RetryPolicy
from minitower_shared.store import runs as run_store
from tests.support.api_group import start_api_group
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.databases import Database, Template
from tests.support.processes import LiveApi
from tests.support.seed import load_app
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

# Far longer than any hand-off asserted below: only a notification can explain one.
SLOW_RECHECK = {"MINITOWER_LEASE_POLL_INTERVAL": "60s", "MINITOWER_FOLLOW_RECHECK_INTERVAL": "60s"}
HANDOFF_LIMIT = 1.0


@pytest.fixture(scope="module")
def database(
    tmp_path_factory: pytest.TempPathFactory, postgres_template: Template
) -> Iterator[Database]:
    """A migrated PostgreSQL database of this module's own, in every pass."""
    database = postgres_template.copy(tmp_path_factory.mktemp("peers-db"))
    yield database
    postgres_template.drop(database)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, database: Database
) -> Iterator[tuple[LiveApi, LiveApi]]:
    """Two ``minitowerd`` processes over one PostgreSQL database."""
    env = {
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        **SLOW_RECHECK,
    }
    group = start_api_group(tmp_path_factory.mktemp("peers"), database, env, 2)
    try:
        yield group.apis[0], group.apis[1]
    finally:
        group.stop()


@pytest.fixture(scope="module")
def team_on_a(pair: tuple[LiveApi, LiveApi]) -> Iterator[TeamClient]:
    with pair[0].client() as http:
        team = TeamClient.bootstrap(http, "peers", BOOTSTRAP_TOKEN)
        team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": ""}))
        yield team


def _lease_into(runner: RunnerClient, got: list[tuple[Lease | None, float]]) -> None:
    """A long poll of 10 s (asking for the attempt to be started); what and when it got."""
    lease = runner.lease(10, start=True)
    got.append((lease, time.monotonic()))


def test_a_run_created_on_one_api_wakes_a_runner_long_polling_on_another(
    pair: tuple[LiveApi, LiveApi], team_on_a: TeamClient
) -> None:
    with pair[1].client() as http:
        runner = RunnerClient.register(http, "peer-runner", REGISTRATION_TOKEN)
        handoffs = []
        for _ in range(5):
            got: list[tuple[Lease | None, float]] = []
            waiter = threading.Thread(target=_lease_into, args=(runner, got))
            waiter.start()
            time.sleep(0.3)  # the long poll is waiting on B
            created_at = time.monotonic()
            run = team_on_a.create_run("hello")
            waiter.join(15)
            ((lease, leased_at),) = got
            assert lease is not None and lease.run_id == run["run_id"]
            handoffs.append(leased_at - created_at)
            check(runner.result(lease, "completed", exit_code=0), 200)
    assert max(handoffs) < HANDOFF_LIMIT, handoffs
    print(f"hand-off across API processes, median {statistics.median(handoffs) * 1000:.0f} ms")


def test_a_line_stored_through_one_api_reaches_a_follower_on_another(
    pair: tuple[LiveApi, LiveApi], team_on_a: TeamClient
) -> None:
    first, second = pair
    run = team_on_a.create_run("hello")
    with first.client() as http_a:
        runner = RunnerClient.register(http_a, "peer-writer", REGISTRATION_TOKEN)
        lease = runner.lease(start=True)
        assert lease is not None and lease.run_id == run["run_id"]
        seen: list[float] = []
        headers = {"Authorization": f"Bearer {team_on_a.token}"}
        path = f"/api/v1/runs/{run['run_id']}/logs/stream"

        def follow() -> None:
            with (
                httpx.Client(base_url=second.url, timeout=30) as http_b,
                http_b.stream("GET", path, headers=headers) as stream,
            ):
                for text in stream.iter_lines():
                    if "across processes" in text:
                        seen.append(time.monotonic())
                        return

        follower = threading.Thread(target=follow)
        follower.start()
        time.sleep(0.5)  # the follower is connected to B and has read what there was
        written_at = time.monotonic()
        line = {"seq": 1, "stream": "stdout", "line": "across processes"}
        check(runner.logs(lease, [line]), 200)
        follower.join(15)
        check(runner.result(lease, "completed", exit_code=0), 200)
    assert seen, "the follower on B never saw the line written through A"
    assert seen[0] - written_at < HANDOFF_LIMIT


def test_runs_the_scheduler_or_the_reaper_queue_wake_runners_on_every_api(
    pair: tuple[LiveApi, LiveApi], team_on_a: TeamClient, database: Database
) -> None:
    """What the scheduler and the reaper do after queueing runs (announce_queued), done
    here by hand in a transaction of this process's own."""
    engine = create_db_engine(database)
    try:
        seeded = load_app(engine, team_on_a.team_id, "hello")
        with pair[1].client() as http:
            runner = RunnerClient.register(http, "peer-store-runner", REGISTRATION_TOKEN)
            got: list[tuple[Lease | None, float]] = []
            waiter = threading.Thread(target=_lease_into, args=(runner, got))
            waiter.start()
            time.sleep(0.3)
            queued_at = time.monotonic()
            with write_session(engine) as session:
                run = run_store.create_run(
                    session,
                    app=seeded.app,
                    version=seeded.version,
                    environment=seeded.environment,
                    input={},
                    priority=0,
                    retry=RetryPolicy(),
                    now=utcnow(),
                )
                announce_queued(session)
            waiter.join(15)
            ((lease, leased_at),) = got
            assert lease is not None and lease.run_id == run.id
            assert leased_at - queued_at < HANDOFF_LIMIT
            check(runner.result(lease, "completed", exit_code=0), 200)
    finally:
        engine.dispose()
