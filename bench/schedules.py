"""Schedules and flow-control benchmark (store level, one SQLite file, no HTTP).

1. Schedule lag: S enabled schedules due every minute (``* * * * *``), fired for M real
   minutes by the scheduler's own loop body (``tick`` in one write transaction per batch,
   sleeping until the next due time as ``minitower-scheduler`` does). A fire's lag is the
   wall-clock time its transaction committed minus the due time it stands for.
2. Lease cost at depth: the time of one ``lease_next_run`` transaction (lease + commit)
   with (a) D plain queued runs, (b) D/2 delayed + D/2 concurrency-blocked runs ahead of
   the eligible ones, and (c) the lease as it was before flow control (its code from git
   history, over the old index, recreated for the comparison) over D plain runs.

Run: ``uv run python bench/schedules.py`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text, update
from sqlmodel import col

from minitower_api.params import prepare_input
from minitower_shared.clock import as_utc, utcnow
from minitower_shared.db import create_db_engine, read_session, write_session
from minitower_shared.migrate import upgrade_to_head
from minitower_shared.models import App
from minitower_shared.retry import RetryPolicy
from minitower_shared.schemas import ScheduleCreate
from minitower_shared.store import apps as app_store
from minitower_shared.store import lifecycle
from minitower_shared.store import runners as runner_store
from minitower_shared.store import runs as run_store
from minitower_shared.store import schedules as schedule_store
from minitower_shared.store import teams as team_store
from minitower_shared.tokens import LEASE_TOKEN_PREFIX, hash_token, new_token


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed_app(session, slug: str):  # type: ignore[no-untyped-def]
    team = team_store.get_team_by_slug(session, "bench") or team_store.create_team(
        session, slug="bench", name="Bench"
    )
    app = app_store.create_app(session, team_id=team.id, slug=slug, description="")
    version = app_store.create_version(
        session,
        app=app,
        artifact_object_key=f"{slug}.tar.gz",
        artifact_sha256="0" * 64,
        artifact_size=1,
        entrypoint="main.py",
        timeout_seconds=60,
        params_schema=None,
        import_paths=[],
    )
    env = team_store.get_or_create_environment(session, team.id, "default")
    return app, version, env


def schedule_lag(db: Path, schedules: int, minutes: int) -> None:
    engine = create_db_engine(db, pool_size=2)
    with write_session(engine) as session:
        app, _version, _env = seed_app(session, "sched")
        # The fields the API stores for a schedule created with just a cron.
        base = ScheduleCreate(cron="* * * * *").model_dump(
            include=set(schedule_store.SCHEDULE_FIELDS)
        )
        for _ in range(schedules):
            schedule_store.create_schedule(session, app=app, fields=base, retry={}, now=utcnow())
    lags: list[float] = []
    ticks: list[float] = []
    deadline = time.monotonic() + minutes * 60 + 70
    fired_minutes = 0
    while fired_minutes < minutes and time.monotonic() < deadline:
        with read_session(engine) as session:
            due = schedule_store.oldest_due_at(session)
        assert due is not None
        pause = (due - utcnow()).total_seconds()
        if pause > 0:
            time.sleep(pause)
        fired = 0
        started = time.perf_counter()
        while True:
            now = utcnow()
            with write_session(engine) as session:
                work = schedule_store.fire_due_schedules(
                    session,
                    now,
                    max_catchup=10,
                    grace=timedelta(seconds=60),
                    prepare_input=prepare_input,
                    limit=200,
                )
            committed = utcnow()
            if not work.runs_fired:
                break
            fired += work.runs_fired
            with read_session(engine) as session:
                times = session.exec(
                    text("SELECT scheduled_for FROM run WHERE queued_at = :now").bindparams(
                        now=now.replace(tzinfo=None).isoformat(sep=" ")
                    )
                ).all()
            lags += [(committed - as_utc(row[0])).total_seconds() for row in times]
        ticks.append(time.perf_counter() - started)
        fired_minutes += fired > 0
        print(f"  minute {fired_minutes}: fired {fired} runs in {ticks[-1] * 1000:.0f} ms")
    with read_session(engine) as session:
        total = session.exec(text("SELECT count(*) FROM run")).one()[0]
    print(
        f"schedule lag, {schedules} schedules every minute, {fired_minutes} minutes, "
        f"{total} runs: p50 {pct(lags, 0.5) * 1000:.0f} ms, p99 {pct(lags, 0.99) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms (lags measured: {len(lags)})"
    )
    engine.dispose()


def _lease_once(engine, runner_id: int, lease: Any = lifecycle.lease) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with write_session(engine) as session:
        grant = lease(
            session,
            runner_id=runner_id,
            environment="default",
            lease_token_hash=hash_token(new_token(LEASE_TOKEN_PREFIX)),
            now=utcnow(),
            ttl=timedelta(seconds=60),
        )
    elapsed = time.perf_counter() - started
    assert grant is not None and hasattr(grant, "attempt"), grant  # granted, not refused
    # Free the runner (not timed): finish is not what is measured.
    with write_session(engine) as session:
        session.execute(
            text("UPDATE run_attempt SET status = 'completed' WHERE id = :id").bindparams(
                id=grant.attempt.id
            )
        )
        session.execute(
            text("UPDATE run SET status = 'completed' WHERE id = :id").bindparams(id=grant.run.id)
        )
    return elapsed


def _old_store() -> Any:
    """``store/leases.py`` as it was before flow control (git history), as a module."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:shared/src/minitower_shared/store/leases.py"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("leases_before_flow_control")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "leases_before_flow_control.py", "exec"), module.__dict__)
    return module


# The last commit before flow control (the branch's base).
BEFORE = "ee6c82d"


def lease_cost(folder: Path, depth: int, leases: int) -> None:
    results: dict[str, list[float]] = {}
    before = _old_store()
    for case in ("plain", "delayed+blocked", "before, plain"):
        db = folder / f"lease-{case.replace(' ', '_').replace(',', '')}.db"
        upgrade_to_head(db)
        engine = create_db_engine(db, pool_size=2)
        now = utcnow()
        with write_session(engine) as session:
            busy, busy_version, env = seed_app(session, "busy")
            free, free_version, _ = seed_app(session, "free")

            def queue(app, version, count, *, scheduled_for=None, env=env, now=now):  # type: ignore[no-untyped-def]
                for _ in range(count):
                    run_store.create_run(
                        session,
                        app=app,
                        version=version,
                        environment=env,
                        input={},
                        priority=0,
                        retry=RetryPolicy(),
                        now=now,
                        scheduled_for=scheduled_for,
                    )

            if case == "delayed+blocked":
                # Ahead of the eligible runs in pick order (older), and the blocked app's
                # runs of higher priority: without the flow control they would be taken.
                queue(free, free_version, depth // 2, scheduled_for=now + timedelta(days=1))
                queue(busy, busy_version, depth // 2)
                session.execute(
                    text("UPDATE run SET priority = 5 WHERE app_id = :a").bindparams(a=busy.id)
                )
                session.execute(
                    update(App).where(col(App.id) == busy.id).values(max_concurrent_runs=1)
                )
                # One of the busy app's runs is live: the app is at its limit.
                session.execute(
                    text(
                        "UPDATE run SET status = 'running' WHERE id = (SELECT min(id) FROM run "
                        "WHERE app_id = :a)"
                    ).bindparams(a=busy.id)
                )
            else:
                queue(busy, busy_version, depth // 2)
                queue(free, free_version, depth // 2)
            queue(free, free_version, leases + 10)
            runner, _ = runner_store.register_runner(
                session,
                name="bench",
                environment="default",
                labels={},
                token_hash=hash_token(new_token("mtr_")),
                now=now,
            )
        if case == "before, plain":
            with write_session(engine) as session:
                session.execute(
                    text(
                        "CREATE INDEX ix_run_queue_before ON run "
                        "(environment, priority DESC, queued_at, id) WHERE status = 'queued'"
                    )
                )
        with write_session(engine) as session:
            session.execute(text("ANALYZE"))
        assert runner.id is not None
        lease = before.lease_next_run if case == "before, plain" else lifecycle.lease
        times = [_lease_once(engine, runner.id, lease) for _ in range(leases)]
        results[case] = times
        with read_session(engine) as session:
            queued = session.exec(text("SELECT count(*) FROM run WHERE status = 'queued'")).one()[0]
        print(
            f"lease, {case:<17} depth {queued:>6}: p50 {pct(times, 0.5) * 1e3:.2f} ms, "
            f"p99 {pct(times, 0.99) * 1e3:.2f} ms, mean {statistics.mean(times) * 1e3:.2f} ms "
            f"({leases} leases)"
        )
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=3, help="real minutes of firing (1-10)")
    parser.add_argument("--depth", type=int, default=20_000, help="queued runs ahead (half each)")
    parser.add_argument("--leases", type=int, default=300)
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-schedules-") as tmp:
        folder = Path(tmp)
        lease_cost(folder, args.depth, args.leases)
        if not args.skip_lag:
            db = folder / "lag.db"
            upgrade_to_head(db)
            schedule_lag(db, args.schedules, max(1, min(args.minutes, 10)))


if __name__ == "__main__":
    main()
