"""The queue pick on PostgreSQL: one statement (plus the limits lock and a second pick
when a limit decides), choosing as the SQLite pick's statements do.

Run in every pass, on a PostgreSQL database of the test's own (``postgres_database``);
the rules themselves are tested on both engines in test_flow_control.py and the race
tests."""

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col

from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.models import App, Environment, Run, Team
from minitower_shared.states import AttemptStatus
from minitower_shared.store import queue
from minitower_shared.store.lifecycle import Granted
from tests.support.databases import Database
from tests.support.seed import (
    Outcome,
    Seeded,
    add_runner,
    finish,
    lease,
    queue_runs,
    seed_app,
    start,
)
from tests.support.statements import captured


@pytest.fixture
def pg_engine(postgres_database: Database) -> Iterator[Engine]:
    engine = create_db_engine(postgres_database, pool_size=2)
    yield engine
    engine.dispose()


def _set_app_limit(engine: Engine, app_id: int | None, limit: int | None) -> None:
    with write_session(engine) as session:
        session.execute(update(App).where(col(App.id) == app_id).values(max_concurrent_runs=limit))


def test_an_unlimited_pick_is_one_statement(pg_engine: Engine) -> None:
    first = seed_app(pg_engine, slug="first")
    second = seed_app(pg_engine, slug="second")
    now = utcnow()
    queue_runs(pg_engine, first, 2, now=now)
    wanted = queue_runs(pg_engine, second, 2, priority=1, now=now)
    with write_session(pg_engine) as session, captured(pg_engine) as statements:
        picked = queue.pick_next_run(session, "default", None)
    assert len(statements) == 1
    # Both apps' best runs were locked; the first app's stays queued.
    assert picked == queue.Picked(run_id=wanted[0], limited=False, passed_over=True)


def test_a_pick_that_a_limit_decides_is_made_again_under_the_limits_lock(
    pg_engine: Engine,
) -> None:
    seeded = seed_app(pg_engine)
    _set_app_limit(pg_engine, seeded.app.id, 2)
    wanted = queue_runs(pg_engine, seeded, 2, now=utcnow())
    with write_session(pg_engine) as session, captured(pg_engine) as statements:
        picked = queue.pick_next_run(session, "default", None)
    # The pick, the advisory lock, the pick again.
    assert len(statements) == 3
    assert "pg_advisory_xact_lock" in statements[1][0]
    assert picked == queue.Picked(run_id=wanted[0], limited=True, under_lock=True)


def test_a_run_another_pick_holds_is_passed_over_without_waiting(pg_engine: Engine) -> None:
    seeded = seed_app(pg_engine)
    runs = queue_runs(pg_engine, seeded, 2, now=utcnow())
    with write_session(pg_engine) as holder:
        held = queue.pick_next_run(holder, "default", None)
        assert held is not None and held.run_id == runs[0]
        with write_session(pg_engine) as racer:
            other = queue.pick_next_run(racer, "default", None)
        assert other is not None and other.run_id == runs[1]


# --- the one statement against the SQLite pick's statements, on a mixed queue ----------


@dataclass
class _Queue:
    """A mixed queue over four teams' apps: priorities, equal queue times, app and
    environment limits, delayed runs, cancel-requested runs, overlap predecessors, a
    team that refuses shared runners, and an environment of another name."""

    teams: list[int]
    runs: list[int]
    live: list[int] = field(default_factory=list)
    runners: int = 0


def _mixed_queue(engine: Engine, rng: random.Random, now: datetime) -> _Queue:
    apps = [
        seed_app(engine, slug="a1", team="alpha"),
        seed_app(engine, slug="a2", team="alpha"),
        seed_app(engine, slug="a3", team="alpha", environment="gpu"),
        seed_app(engine, slug="b1", team="beta"),
        seed_app(engine, slug="c1", team="gamma"),
        seed_app(engine, slug="d1", team="delta"),
    ]
    runs: list[int] = []
    for _ in range(60):
        app: Seeded = rng.choice(apps)
        delay = rng.choice([None] * 8 + [timedelta(minutes=-1), timedelta(minutes=1)])
        runs += queue_runs(
            engine,
            app,
            priority=rng.choice([0, 0, 1, 2]),
            # Few distinct times: ties go to the lower id.
            now=now - timedelta(seconds=rng.randrange(3)),
            scheduled_for=None if delay is None else now + delay,
        )
    with write_session(engine) as session:
        for app in apps:
            session.execute(
                update(App)
                .where(col(App.id) == app.app.id)
                .values(max_concurrent_runs=rng.choice([None, None, 1, 2]))
            )
            session.execute(
                update(Environment)
                .where(col(Environment.id) == app.environment.id)
                .values(max_concurrent_runs=rng.choice([None, None, 1, 3]))
            )
        session.execute(
            update(Team).where(col(Team.slug) == "delta").values(allow_shared_runners=False)
        )
        for run_id in rng.sample(runs, 6):
            session.execute(update(Run).where(col(Run.id) == run_id).values(cancel_requested=True))
        for run_id in rng.sample(runs[1:], 12):
            earlier = rng.choice([r for r in runs if r < run_id])
            session.execute(update(Run).where(col(Run.id) == run_id).values(after_run_id=earlier))
    return _Queue(teams=sorted({app.team_id for app in apps}), runs=runs)


def _both_picks(
    engine: Engine, environment: str, team_id: int | None
) -> tuple[queue.Picked | None, queue.Picked | None]:
    with write_session(engine) as session:
        return (
            queue._pick_on_sqlite(session, environment, team_id),
            queue._pick_on_postgresql(session, environment, team_id),
        )


def _same_choice(ours: queue.Picked | None, theirs: queue.Picked | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    return (ours.run_id, ours.limited) == (theirs.run_id, theirs.limited)


# No lease runs out while the test's clock moves on.
_TTL = timedelta(hours=1)


@pytest.mark.parametrize("seed", range(4))
def test_the_one_statement_picks_as_the_sqlite_pick_does(pg_engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    now = utcnow()
    mixed = _mixed_queue(pg_engine, rng, now)
    kinds: list[int | None] = [None, *mixed.teams]
    leased = 0
    for step in range(200):
        if step == 60:
            # The delayed runs' time comes: the next lease releases them.
            now += timedelta(minutes=2)
        for environment in ("default", "gpu"):
            for team_id in kinds:
                ours, theirs = _both_picks(pg_engine, environment, team_id)
                assert _same_choice(ours, theirs), (step, environment, team_id, ours, theirs)
        if mixed.live and (rng.random() < 0.4 or step % 10 == 9):
            attempt_id = mixed.live.pop(rng.randrange(len(mixed.live)))
            assert start(pg_engine, attempt_id, now=now, ttl=_TTL) == Outcome.OK
            assert finish(pg_engine, attempt_id, AttemptStatus.COMPLETED, now=now) == Outcome.OK
            continue
        mixed.runners += 1
        runner = add_runner(
            pg_engine, f"r{mixed.runners}", environment=rng.choice(["default", "gpu"])
        )
        grant = lease(
            pg_engine,
            runner,
            now=now,
            environment=rng.choice(["default", "default", "gpu"]),
            team_id=rng.choice(kinds),
            ttl=_TTL,
        )
        if isinstance(grant, Granted):
            assert grant.attempt.id is not None
            mixed.live.append(grant.attempt.id)
            leased += 1
    # The drain went through most of the queue, limits, delays and predecessors included.
    assert leased >= 30
