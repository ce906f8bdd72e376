"""The queue: which run a runner is handed next, and when delayed runs become eligible.

Read inside the lease's write transaction (see :func:`lifecycle.lease`), so the counts
behind the concurrency limits are current and racing leases cannot both take the last
slot. On SQLite the write lock makes them so. On PostgreSQL each app's best run is read
``FOR UPDATE SKIP LOCKED`` (a racing lease passes over it to the next one rather than
wait; ``Picked.passed_over`` says when the pick leaves such runs queued), and a pick
that a limit decides is made again under one advisory lock, so that two leases never
both count the last slot free (see :mod:`minitower_shared.db`).
"""

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Executable, bindparam, exists, false, or_, text, true, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from minitower_shared.clock import as_utc
from minitower_shared.db import is_postgresql, serialize
from minitower_shared.models import (
    LIVE_RUN_CONDITION,
    App,
    Environment,
    Run,
    RunAttempt,
    active_attempt,
)
from minitower_shared.states import TERMINAL_RUN_STATUSES
from minitower_shared.store.runner_registration import runnable_by

# Booleans compared with true()/false(): ``run.delayed = 0`` on SQLite (the words of the
# partial indexes), ``run.delayed = false`` on PostgreSQL.
_NOT_DELAYED = col(Run.delayed) == false()
_DELAYED = (text("run.status = 'queued'"), col(Run.delayed) == true())


def _eligible(environment: str, team_id: int | None) -> list[Any]:
    """Queued, not delayed runs of ``environment`` that a runner bound to ``team_id``
    (None: a shared runner) may be handed: the leading terms of ix_run_queue, then the
    binding (``runnable_by``). The literal SQL is what lets SQLite use the partial index
    (see models)."""
    return [
        text("run.status = 'queued'"),
        col(Run.environment) == environment,
        _NOT_DELAYED,
        runnable_by(team_id),
    ]


def may_lease(
    session: Session,
    *,
    runner_id: int,
    environment: str,
    now: datetime,
    team_id: int | None = None,
) -> bool:
    """Whether ``lifecycle.lease`` could change anything now: a run waits in the
    environment (or a delayed run's time has come), or the runner holds an attempt (to
    refuse, or to expire inline). Lets an idle long poll look without taking the write
    lock."""
    queued = session.exec(select(Run.id).where(*_eligible(environment, team_id)).limit(1)).first()
    if queued is not None or next_delayed_at(session, before=now) is not None:
        return True
    held = session.exec(
        select(RunAttempt.id).where(RunAttempt.runner_id == runner_id, active_attempt()).limit(1)
    ).first()
    return held is not None


def next_delayed_at(session: Session, *, before: datetime | None = None) -> datetime | None:
    """The earliest time a delayed run (of any environment) becomes eligible; with
    ``before``, only if it is not later than that. One seek of ix_run_delayed."""
    query = select(Run.not_before).where(*_DELAYED)
    if before is not None:
        query = query.where(col(Run.not_before) <= before)
    value = session.exec(query.order_by(col(Run.not_before)).limit(1)).first()
    return None if value is None else as_utc(value)


_RELEASE_DUE = (
    update(Run).where(*_DELAYED, col(Run.not_before) <= bindparam("due_by")).values(delayed=False)
)


def release_due_runs(session: Session, now: datetime) -> int:
    """Make the delayed runs whose time has come eligible for leasing; one walk of
    ix_run_delayed over the due rows only."""
    result = session.connection().execute(_RELEASE_DUE, {"due_by": now})
    return int(result.rowcount)


_PREDECESSOR = aliased(Run, name="predecessor")
# overlap = "queue": a run waits while the earlier run it names is not terminal. Built
# once: an alias made per call would be compiled again on every lease.
_PREDECESSOR_RUNNING = exists().where(
    col(_PREDECESSOR.id) == col(Run.after_run_id),
    col(_PREDECESSOR.status).not_in([s.value for s in TERMINAL_RUN_STATUSES]),
)


@dataclass(frozen=True)
class _PickStatements:
    next_app: Executable
    best_run: Executable


@cache
def _pick_statements(bound: bool) -> _PickStatements:
    """The pick's per-app statements, built once for bound and once for shared runners:
    building them per lease cost more than running them."""
    team = col(Run.team_id) == bindparam("the_team") if bound else runnable_by(None)
    eligible = [
        text("run.status = 'queued'"),
        col(Run.environment) == bindparam("environment"),
        _NOT_DELAYED,
        team,
    ]
    return _PickStatements(
        next_app=select(Run.app_id)
        .where(*eligible, col(Run.app_id) > bindparam("after_app"))
        .order_by(col(Run.app_id))
        .limit(1),
        best_run=select(Run.priority, Run.queued_at, Run.id, Run.environment_id)
        .where(
            *eligible,
            col(Run.app_id) == bindparam("the_app"),
            col(Run.cancel_requested).is_(False),
            or_(col(Run.after_run_id).is_(None), ~_PREDECESSOR_RUNNING),
        )
        .order_by(col(Run.priority).desc(), col(Run.queued_at), col(Run.id))
        .limit(1)
        # PostgreSQL only: SQLite's compiler leaves the clause out.
        .with_for_update(skip_locked=True),
    )


_LIVE_RUNS = select(Run.app_id, Run.environment_id).where(text(f"run.{LIVE_RUN_CONDITION}"))
_APP_LIMITS = select(App.id, App.max_concurrent_runs).where(
    col(App.id).in_(bindparam("apps", expanding=True)),
    col(App.max_concurrent_runs).is_not(None),
)
_ENVIRONMENT_LIMITS = select(Environment.id, Environment.max_concurrent_runs).where(
    col(Environment.id).in_(bindparam("environments", expanding=True)),
    col(Environment.max_concurrent_runs).is_not(None),
)


# Held by a PostgreSQL lease whose pick a concurrency limit decides (see the docstring).
_LIMITS_LOCK = "lease-concurrency-limits"


def pick_next_run(session: Session, environment: str, team_id: int | None) -> "Picked | None":
    """The id of the run to lease: highest priority, then oldest ``queued_at``, then
    lowest id, among eligible runs whose app and environment are below their
    ``max_concurrent_runs`` and whose overlap predecessor (if any) has ended.

    Flat in queue depth: one seek per app with eligible runs (a loose index scan of
    ix_run_queue), the app's best run another seek; an app at its limit is never
    walked, so its backlog costs nothing and never blocks other apps. The counts are
    read inside the caller's write transaction, so racing leases cannot both take the
    last slot: on PostgreSQL, a pick whose run has a limit is made again under
    ``_LIMITS_LOCK``, and the counts read after it include every lease committed before."""
    on_postgresql = is_postgresql(session)
    picked = _pick(session, environment, team_id, on_postgresql)
    if picked is None or not picked.limited or not on_postgresql:
        return picked
    serialize(session, _LIMITS_LOCK)
    picked = _pick(session, environment, team_id, on_postgresql)
    return None if picked is None else replace(picked, under_lock=True)


@dataclass(frozen=True)
class Picked:
    run_id: int
    # Whether its app's or its environment's max_concurrent_runs took part in the pick.
    limited: bool
    # Whether it was picked again under _LIMITS_LOCK (PostgreSQL).
    under_lock: bool = False
    # PostgreSQL: the pick also locked other apps' best runs, which it leaves queued. A
    # racing lease passed over them (SKIP LOCKED) and, finding nothing else, waits: once
    # this lease commits, waiting runners must look again (lifecycle.Granted).
    passed_over: bool = False


def _pick(
    session: Session, environment: str, team_id: int | None, on_postgresql: bool
) -> Picked | None:
    statements = _pick_statements(team_id is not None)
    connection = session.connection()
    where = {"environment": environment, "the_team": team_id}
    apps: list[int] = []
    previous = -1
    while True:
        app_id = connection.execute(statements.next_app, {**where, "after_app": previous}).scalar()
        if app_id is None:
            break
        apps.append(app_id)
        previous = app_id
    if not apps:
        return None
    live_apps: Counter[int] = Counter()
    live_envs: Counter[int] = Counter()
    for live_app, live_env in connection.execute(_LIVE_RUNS):
        live_apps[live_app] += 1
        live_envs[live_env] += 1
    app_limits = {app: limit for app, limit in connection.execute(_APP_LIMITS, {"apps": apps})}
    # (-priority, queued_at, id) of each app's best run, its team's environment, its app.
    candidates: list[tuple[tuple[int, Any, int], int, int]] = []
    for app_id in apps:
        limit = app_limits.get(app_id)
        if limit is not None and live_apps[app_id] >= limit:
            continue
        row = connection.execute(statements.best_run, {**where, "the_app": app_id}).first()
        if row is not None:
            priority, queued_at, run_id, environment_id = row
            candidates.append(((-priority, queued_at, run_id), environment_id, app_id))
    if not candidates:
        return None
    wanted = {"environments": sorted({env for _, env, _ in candidates})}
    env_limits = {env: limit for env, limit in connection.execute(_ENVIRONMENT_LIMITS, wanted)}
    open_candidates = [
        (key, env, app_id)
        for key, env, app_id in candidates
        if (limit := env_limits.get(env)) is None or live_envs[env] < limit
    ]
    if not open_candidates:
        return None
    key, env, app_id = min(open_candidates)
    return Picked(
        run_id=key[2],
        limited=app_id in app_limits or env in env_limits,
        passed_over=on_postgresql and len(candidates) > 1,
    )
