"""The hot queries use their indexes: no table scan and no sort while holding the write
lock. The SQL is captured as the store functions run it and explained by SQLite itself."""

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from minitower_reaper.service import tick
from minitower_shared.clock import utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.store import audit as audit_store
from minitower_shared.store import runs as run_store
from minitower_shared.store.audit import AuditActor, AuditObject
from tests.support.seed import Seeded, add_runner, lease, must_lease, queue_runs, seed_app
from tests.support.statements import captured

pytestmark = pytest.mark.sqlite_only("explains the queries with SQLite's EXPLAIN QUERY PLAN")


def plans(engine: Engine, statements: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(statement, plan) for each statement, the plan as SQLite's detail lines."""
    explained = []
    with engine.connect() as conn:
        for sql, params in statements:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            explained.append((sql, "\n".join(row[-1] for row in rows)))
        conn.rollback()
    return explained


def assert_indexed(engine: Engine, statements: list[tuple[str, Any]], *tables: str) -> None:
    assert statements, "nothing was captured"
    for sql, plan in plans(engine, statements):
        for table in tables:
            # "SCAN t USING COVERING INDEX" walks an index; a bare "SCAN t" reads the table.
            assert not re.search(rf"\bSCAN {table}\b(?! USING)", plan), (sql, plan)
        assert "USE TEMP B-TREE" not in plan, (sql, plan)


@pytest.fixture
def busy_history(engine: Engine, seeded: Seeded) -> Seeded:
    """Enough finished history and queue in two environments that a scan would show."""
    other = seed_app(engine, slug="other", environment="gpu")
    queue_runs(engine, seeded, 30)
    queue_runs(engine, other, 30)
    runner = add_runner(engine, "history")
    for _ in range(20):
        grant = must_lease(engine, runner, ttl=timedelta(seconds=-1))
        assert grant.attempt.id is not None
        with write_session(engine) as session:
            tick(session, utcnow(), runner_offline_after=timedelta(hours=1))
    return seeded


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("lease", lambda engine, runner: lease(engine, runner)),
        # A runner bound to the team of the queued runs (seed_app's first team, id 1).
        ("bound lease", lambda engine, runner: lease(engine, runner, team_id=1)),
        (
            "reaper tick",
            lambda engine, _runner: _tick(engine),
        ),
    ],
)
def test_hot_queries_use_indexes(
    engine: Engine,
    busy_history: Seeded,
    name: str,
    action: Callable[[Engine, int], object],
) -> None:
    runner = add_runner(engine, f"probe-{name.replace(' ', '-')}")
    with captured(engine) as statements:
        action(engine, runner)
    assert_indexed(engine, statements, "run", "run_attempt", "idempotency_key")


def _tick(engine: Engine) -> None:
    with write_session(engine) as session:
        tick(session, utcnow(), runner_offline_after=timedelta(hours=1))


def test_scrape_time_queue_figures_walk_the_queue_index(
    engine: Engine, busy_history: Seeded
) -> None:
    """/metrics reads queue depth and age per environment on every scrape: from the
    partial index of queued runs, never from the whole (mostly finished) run table."""
    with captured(engine) as statements, read_session(engine) as session:
        queues = run_store.queue_by_environment(session)
    assert {name: figures.depth for name, figures in queues.items()} == {"default": 10, "gpu": 30}
    assert_indexed(engine, statements, "run")
    ((_sql, plan),) = plans(engine, statements)
    assert "ix_run_queue" in plan, plan


def test_lease_with_delayed_and_limited_runs_uses_indexes(
    engine: Engine, busy_history: Seeded
) -> None:
    """The flow-control lease (due delayed runs released, apps at their limit skipped,
    overlap predecessors checked) walks indexes only: ix_run_delayed for the due runs,
    ix_run_queue per app, ix_run_live for the counts."""
    from sqlalchemy import update

    from minitower_shared.models import App, Environment

    queue_runs(engine, busy_history, 30, scheduled_for=utcnow() + timedelta(hours=1))
    queue_runs(engine, busy_history, 5, scheduled_for=utcnow() - timedelta(seconds=1))
    with write_session(engine) as session:
        session.execute(update(App).values(max_concurrent_runs=5))
        session.execute(update(Environment).values(max_concurrent_runs=50))
    runner = add_runner(engine, "probe-flow")
    must_lease(engine, add_runner(engine, "holder"))
    with captured(engine) as statements:
        lease(engine, runner)
    assert_indexed(engine, statements, "run", "run_attempt", "app", "environment")
    explained = "\n".join(plan for _sql, plan in plans(engine, statements))
    for index in ("ix_run_queue", "ix_run_delayed", "ix_run_live"):
        assert index in explained, explained


def test_the_audit_log_pages_and_prunes_through_its_indexes(engine: Engine) -> None:
    with write_session(engine) as session:
        for n in range(50):
            actor = AuditActor(kind="token", team_id=1 + n % 2, token_id=1, name="ci")
            audit_store.record(session, actor, "app.create", AuditObject("app", f"a{n}"))
    cutoff = utcnow() - timedelta(days=1)
    with captured(engine) as statements:
        with read_session(engine) as session:
            audit_store.list_events(session, 1, before_id=40, limit=11)
            audit_store.list_events(session, 1, before_id=None, limit=11, action="app.")
            audit_store.list_events(session, None, before_id=None, limit=11)
            audit_store.count_older_than(session, cutoff)
        with write_session(engine) as session:
            audit_store.delete_older_than(session, cutoff, limit=100)
    assert_indexed(engine, statements, "audit_event")
