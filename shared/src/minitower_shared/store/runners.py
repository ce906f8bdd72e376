"""Runners: registration, token lookup, liveness."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, case, func, literal, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from minitower_shared.db import is_postgresql
from minitower_shared.dialect import random_hex
from minitower_shared.models import Run, RunAttempt, Runner, active_attempt
from minitower_shared.states import RunnerStatus


def register_runner(
    session: Session,
    *,
    name: str,
    environment: str,
    labels: dict[str, Any],
    token_hash: str,
    now: datetime,
    team_id: int | None = None,
) -> tuple[Runner, bool]:
    """Create the runner, or give an existing one of that name a new token (the old one
    stops working at once). Returns the runner and whether it was created. A runner
    keeps the binding it was created with: check ``bound_elsewhere`` first."""
    runner = session.exec(select(Runner).where(Runner.name == name)).first()
    created = runner is None
    if runner is None:
        runner = Runner(name=name, token_hash=token_hash, created_at=now, team_id=team_id)
    runner.environment = environment
    runner.labels = labels
    runner.token_hash = token_hash
    runner.status = RunnerStatus.ONLINE.value
    runner.last_seen_at = now
    session.add(runner)
    session.flush()
    return runner, created


def bound_elsewhere(session: Session, *, name: str, team_id: int | None) -> Runner | None:
    """The runner of that name when it is bound otherwise (shared vs a team, or another
    team): registering it again would hand one team's runner, with its token, to
    another, so the route refuses."""
    runner = session.exec(select(Runner).where(Runner.name == name)).first()
    return runner if runner is not None and runner.team_id != team_id else None


# What a revoked runner's token hash becomes: unique per runner (the column is unique),
# and never equal to a real hash, which is 64 hex digits.
REVOKED_PREFIX = "revoked-"


def revoke_runner_tokens(session: Session, names: list[str] | None) -> list[Runner]:
    """Replace the token hash of the named runners (every runner for None), so that their
    next call answers 401 and they register again. Returns the runners it revoked;
    names that match no runner are left out."""
    condition = [col(Runner.token_hash).not_like(f"{REVOKED_PREFIX}%")]
    if names is not None:
        condition.append(col(Runner.name).in_(names))
    revoked_hash = literal(REVOKED_PREFIX) + random_hex()
    result = session.execute(
        update(Runner)
        .where(*condition)
        .values(token_hash=revoked_hash)
        .returning(col(Runner.id))
        .execution_options(synchronize_session=False)
    )
    ids = [row[0] for row in result]
    if not ids:
        return []
    return list(
        session.exec(select(Runner).where(col(Runner.id).in_(ids)).order_by(col(Runner.name)))
    )


_RUNNER: Table = Runner.__table__  # type: ignore[attr-defined]
_RUN: Table = Run.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RunnerIdentity:
    """Who a runner token belongs to: what every runner call needs, in one statement."""

    id: int
    name: str
    environment: str
    # None: a shared runner.
    team_id: int | None
    status: str
    last_seen_at: datetime | None


# Built once: every runner call starts with this lookup (store/lifecycle.py says why).
_BY_TOKEN = core_select(
    _RUNNER.c.id,
    _RUNNER.c.name,
    _RUNNER.c.environment,
    _RUNNER.c.team_id,
    _RUNNER.c.status,
    _RUNNER.c.last_seen_at,
).where(_RUNNER.c.token_hash == bindparam("token_hash"))
_SEEN = (
    update(_RUNNER)
    .where(_RUNNER.c.id == bindparam("the_runner"))
    .values(last_seen_at=bindparam("b_now"), status=RunnerStatus.ONLINE.value)
)


# The lease's lock on its runner (store/lifecycle.py), taken by the lookup itself. NO KEY:
# attempts naming the runner can still be inserted (their foreign key takes KEY SHARE).
_BY_TOKEN_LOCKED = _BY_TOKEN.with_for_update(key_share=True)


# The lookup that also takes the row lock of the run the call names (the lock
# store/lifecycle.py takes before a run and its attempt change), in the same round trip.
# The lock is taken after the runner is read, as by two statements: the runner's columns
# are those of before any wait for the lock.
_BY_TOKEN_LOCKING_RUN = _BY_TOKEN.add_columns(
    core_select(_RUN.c.id)
    .where(_RUN.c.id == bindparam("the_run"))
    .with_for_update()
    .scalar_subquery()
)


def find_runner_by_token(
    session: Session, token_hash: str, *, lock: bool = False, lock_run: int | None = None
) -> RunnerIdentity | None:
    """The runner the token belongs to; with ``lock``, its row locked until the
    transaction ends (what ``lifecycle.lease(runner_locked=True)`` needs); with
    ``lock_run``, that run's row locked likewise once the runner is found (what
    ``run_locked=True`` of the lifecycle's calls means). Locks are PostgreSQL's: SQLite's
    write lock serialises writers already."""
    params: dict[str, Any] = {"token_hash": token_hash}
    statement = _BY_TOKEN
    if is_postgresql(session):
        if lock_run is not None:
            statement, params["the_run"] = _BY_TOKEN_LOCKING_RUN, lock_run
        elif lock:
            statement = _BY_TOKEN_LOCKED
    row = session.connection().execute(statement, params).first()
    return None if row is None else RunnerIdentity(*row[:6])


# Liveness needs seconds of precision at most; writing it on every call would add a write
# to each long-poll round and heartbeat.
SEEN_RESOLUTION = timedelta(seconds=10)


def mark_seen(session: Session, runner: RunnerIdentity, now: datetime) -> None:
    """Record that the runner called, unless it was recorded moments ago."""
    recent = runner.last_seen_at is not None and now - runner.last_seen_at < SEEN_RESOLUTION
    if recent and runner.status == RunnerStatus.ONLINE:
        return
    session.connection().execute(_SEEN, {"the_runner": runner.id, "b_now": now})


def mark_silent_runners_offline(session: Session, *, seen_before: datetime) -> int:
    """Runners not heard from since ``seen_before`` go offline; returns how many."""
    result = session.execute(
        update(Runner)
        .where(
            col(Runner.status) == RunnerStatus.ONLINE.value,
            col(Runner.last_seen_at) < seen_before,
        )
        .values(status=RunnerStatus.OFFLINE.value)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def list_runners_with_current_run(
    session: Session, *, team_id: int, after_id: int, limit: int, offset: int = 0
) -> list[tuple[Runner, int | None]]:
    """The shared runners and the team's own; another team's runners are not listed.
    The run a shared runner holds is shown only to its team."""
    rows = session.exec(
        select(Runner, RunAttempt.run_id, Run.team_id)
        .outerjoin(RunAttempt, (col(RunAttempt.runner_id) == col(Runner.id)) & active_attempt())
        .outerjoin(Run, col(Run.id) == col(RunAttempt.run_id))
        .where(
            col(Runner.id) > after_id,
            col(Runner.team_id).is_(None) | (col(Runner.team_id) == team_id),
        )
        .order_by(col(Runner.id))
        .offset(offset)
        .limit(limit)
    )
    return [(runner, run_id if run_team == team_id else None) for runner, run_id, run_team in rows]


def online_by_environment(session: Session) -> dict[str, int]:
    """Online runners per environment, 0 for an environment whose runners are all
    offline (the runner table is small: a row per runner ever registered)."""
    online = func.sum(case((col(Runner.status) == RunnerStatus.ONLINE.value, 1), else_=0))
    rows = session.exec(select(Runner.environment, online).group_by(Runner.environment))
    return {environment: int(count or 0) for environment, count in rows}
