"""The queue: which run a runner is handed next, and when delayed runs become eligible.

Read inside the lease's write transaction (see :func:`lifecycle.lease`), so the counts
behind the concurrency limits are current and racing leases cannot both take the last
slot. On SQLite the write lock makes them so. On PostgreSQL each app's best run is read
``FOR UPDATE SKIP LOCKED`` (a racing lease passes over it to the next one rather than
wait; ``Picked.passed_over`` says when the pick leaves such runs queued), and a pick
that a limit decides is made again under one advisory lock, so that two leases never
both count the last slot free (see :mod:`minitower_shared.db`).

The two engines pick by the same rules in different words. SQLite runs small
statements, one seek each (a statement costs it little: 16 µs of client CPU). On
PostgreSQL each statement is a round trip (about 90 µs of the API's CPU), so the pick
is one statement (a recursive CTE over the apps, a LATERAL best run per app, the limits
and live counts beside it), three when a limit decides (the pick, the advisory lock,
the pick again); tests/shared/test_queue_pick.py holds the two to the same choices.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Executable,
    Select,
    bindparam,
    case,
    exists,
    false,
    func,
    or_,
    text,
    true,
    update,
)
from sqlalchemy import select as core_select
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

# A Core SELECT of any columns.
_Select = Select[*tuple[Any, ...]]

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


def releasing_due_runs(query: _Select) -> _Select:
    """PostgreSQL: ``query`` that also does :func:`release_due_runs` (parameter
    ``due_by``), in the same round trip: a data-modifying CTE runs once and to the end,
    whatever the query reads. The query does not see the release; the next statement
    does."""
    return query.add_cte(_RELEASE_DUE.cte("released"))


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
    # PostgreSQL: the whole pick in one round trip (see _pick_on_postgresql).
    candidates: Executable


@cache
def _pick_statements(bound: bool) -> _PickStatements:
    """The pick's statements, built once for bound and once for shared runners:
    building them per lease cost more than running them."""
    team = col(Run.team_id) == bindparam("the_team") if bound else runnable_by(None)
    eligible = [
        text("run.status = 'queued'"),
        col(Run.environment) == bindparam("environment"),
        _NOT_DELAYED,
        team,
    ]

    # Core's select: these statements run on the connection, not through session.exec.
    def next_app(*after: Any) -> _Select:
        return (
            core_select(col(Run.app_id)).where(*eligible, *after).order_by(col(Run.app_id)).limit(1)
        )

    def best_run(*of_app: Any) -> _Select:
        columns = col(Run.priority), col(Run.queued_at), col(Run.id), col(Run.environment_id)
        return (
            core_select(*columns)
            .where(
                *eligible,
                *of_app,
                col(Run.cancel_requested).is_(False),
                or_(col(Run.after_run_id).is_(None), ~_PREDECESSOR_RUNNING),
            )
            .order_by(col(Run.priority).desc(), col(Run.queued_at), col(Run.id))
            .limit(1)
            # PostgreSQL only: SQLite's compiler leaves the clause out.
            .with_for_update(skip_locked=True)
        )

    return _PickStatements(
        next_app=next_app(col(Run.app_id) > bindparam("after_app")),
        best_run=best_run(col(Run.app_id) == bindparam("the_app")),
        candidates=_candidates(next_app, best_run),
    )


_LIVE = aliased(Run, name="live")


def _live_count(*where: Any) -> Any:
    """How many live runs match ``where``: a walk of ix_run_live."""
    return (
        core_select(func.count())
        .select_from(_LIVE)
        .where(text(f"live.{LIVE_RUN_CONDITION}"), *where)
        .correlate_except(_LIVE)
        .scalar_subquery()
    )


def _candidates(next_app: Callable[..., _Select], best_run: Callable[..., _Select]) -> Executable:
    """PostgreSQL: the statements of :func:`_pick_on_sqlite` as one. The apps with
    eligible runs by a loose index scan of ix_run_queue (a recursive CTE: one seek per
    app, as ``next_app``); per app below its limit, its best run, locked ``FOR UPDATE
    SKIP LOCKED`` (a LATERAL subquery: the app's limit is tested in it, so an app at its
    limit locks nothing, as on SQLite); beside each, its environment's limit and live
    count. One row per candidate, from which :func:`_pick_on_postgresql` chooses as
    :func:`_pick_on_sqlite` does."""
    apps = next_app().cte("apps", recursive=True)
    after = next_app(col(Run.app_id) > apps.c.app_id).scalar_subquery()
    apps = apps.union_all(core_select(after).where(apps.c.app_id.is_not(None)))
    app_limit = col(App.max_concurrent_runs)
    best = best_run(
        col(Run.app_id) == apps.c.app_id,
        or_(app_limit.is_(None), _live_count(col(_LIVE.app_id) == apps.c.app_id) < app_limit),
    ).lateral("best")
    environment_limit = col(Environment.max_concurrent_runs)
    return (
        core_select(
            best.c.priority,
            best.c.queued_at,
            best.c.id,
            best.c.environment_id,
            app_limit.is_not(None).label("app_limited"),
            environment_limit.label("environment_limit"),
            # CASE: counted only where there is a limit to count against.
            case(
                (
                    environment_limit.is_not(None),
                    _live_count(col(_LIVE.environment_id) == best.c.environment_id),
                )
            ).label("environment_live"),
        )
        .select_from(apps)
        .join(App, col(App.id) == apps.c.app_id)
        .join(best, true())
        .join(Environment, col(Environment.id) == best.c.environment_id)
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
    walked, so its backlog costs nothing and never blocks other apps. On PostgreSQL
    those seeks are one statement (see the module's docstring). The counts are
    read inside the caller's write transaction, so racing leases cannot both take the
    last slot: on PostgreSQL, a pick whose run has a limit is made again under
    ``_LIMITS_LOCK``, and the counts read after it include every lease committed before."""
    if not is_postgresql(session):
        return _pick_on_sqlite(session, environment, team_id)
    picked = _pick_on_postgresql(session, environment, team_id)
    if picked is None or not picked.limited:
        return picked
    # Its own statement: a statement's snapshot is taken before it runs, so the counts
    # of a pick that waited for the lock inside it would miss the leases committed
    # while it waited.
    serialize(session, _LIMITS_LOCK)
    picked = _pick_on_postgresql(session, environment, team_id)
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


def _pick_on_sqlite(session: Session, environment: str, team_id: int | None) -> Picked | None:
    """The pick in small statements, one seek each. Its SQL is portable: the tests run
    it on PostgreSQL too, to hold :func:`_pick_on_postgresql` to its choices."""
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
    return Picked(run_id=key[2], limited=app_id in app_limits or env in env_limits)


def _pick_on_postgresql(session: Session, environment: str, team_id: int | None) -> Picked | None:
    """:func:`_pick_on_sqlite`'s choice over the candidates of one statement
    (:func:`_candidates`)."""
    candidates = (
        session.connection()
        .execute(
            _pick_statements(team_id is not None).candidates,
            {"environment": environment, "the_team": team_id},
        )
        .all()
    )
    open_candidates = [
        ((-row.priority, row.queued_at, row.id), row.app_limited or limit is not None)
        for row in candidates
        if (limit := row.environment_limit) is None or row.environment_live < limit
    ]
    if not open_candidates:
        return None
    key, limited = min(open_candidates)
    return Picked(run_id=key[2], limited=limited, passed_over=len(candidates) > 1)
