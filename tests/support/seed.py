"""Seed rows straight through the shared store functions, for tests that drive the store
(or the reaper) without an API in between, and read the whole history back.

Every helper opens its own write transaction, as a route would, so the rows are committed
and visible to other connections, threads and processes when it returns.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from minitower_shared.clock import utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.models import App, AppVersion, Environment, Run, RunAttempt, Runner
from minitower_shared.retry import RetryPolicy
from minitower_shared.schemas import ScheduleCreate
from minitower_shared.states import ACTIVE_ATTEMPT_STATUSES, AttemptStatus, RunStatus
from minitower_shared.store import apps as app_store
from minitower_shared.store import lifecycle
from minitower_shared.store import runners as runner_store
from minitower_shared.store import runs as run_store
from minitower_shared.store import schedules as schedule_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.lifecycle import Granted, LeaseKey, Refusal, Refused
from minitower_shared.tokens import LEASE_TOKEN_PREFIX, RUNNER_TOKEN_PREFIX, hash_token, new_token

TTL = timedelta(seconds=30)


@dataclass(frozen=True)
class Seeded:
    """One team with one app, one version and the ``default`` environment."""

    team_id: int
    app: App
    version: AppVersion
    environment: Environment


def seed_app(
    engine: Engine, *, slug: str = "hello", environment: str = "default", team: str | None = None
) -> Seeded:
    """A new app ``slug`` of the team ``team`` (default: ``slug`` too), made if missing."""
    team_slug = team or slug
    with write_session(engine) as session:
        found = team_store.get_team_by_slug(session, team_slug)
        owner = found or team_store.create_team(session, slug=team_slug, name=team_slug.title())
        assert owner.id is not None
        app = app_store.create_app(session, team_id=owner.id, slug=slug, description="")
        assert app is not None
        version = app_store.create_version(
            session,
            app=app,
            artifact_object_key=f"{slug}/1.tar.gz",
            artifact_sha256="0" * 64,
            artifact_size=1,
            entrypoint="main.py",
            timeout_seconds=60,
            params_schema=None,
            import_paths=[],
        )
        env = team_store.get_or_create_environment(session, owner.id, environment)
        return Seeded(team_id=owner.id, app=app, version=version, environment=env)


def load_app(engine: Engine, team_id: int, slug: str, *, environment: str = "default") -> Seeded:
    """An app created through the API, with its latest version, ready for ``queue_runs``."""
    with write_session(engine) as session:
        app = app_store.get_app(session, team_id, slug)
        assert app is not None and app.id is not None
        version = app_store.latest_version(session, app.id)
        assert version is not None
        env = team_store.get_or_create_environment(session, team_id, environment)
        return Seeded(team_id=team_id, app=app, version=version, environment=env)


def add_runner(
    engine: Engine,
    name: str,
    *,
    environment: str = "default",
    now: datetime | None = None,
    token: str | None = None,
) -> int:
    """A registered runner's id; ``token`` is its runner token (default: a new one)."""
    with write_session(engine) as session:
        runner, _created = runner_store.register_runner(
            session,
            name=name,
            environment=environment,
            labels={},
            token_hash=hash_token(token or new_token(RUNNER_TOKEN_PREFIX)),
            now=now or utcnow(),
        )
        assert runner.id is not None
        return runner.id


def queue_runs(
    engine: Engine,
    seeded: Seeded,
    count: int = 1,
    *,
    priority: int = 0,
    max_retries: int = 0,
    now: datetime | None = None,
    input: dict[str, Any] | None = None,
    retry: RetryPolicy | None = None,
    scheduled_for: datetime | None = None,
) -> list[int]:
    """``count`` queued runs, all in one transaction; returns their ids. ``retry``
    (a whole policy) wins over ``max_retries``."""
    ids = []
    with write_session(engine) as session:
        for _ in range(count):
            run = run_store.create_run(
                session,
                app=seeded.app,
                version=seeded.version,
                environment=seeded.environment,
                input=input or {},
                priority=priority,
                retry=retry or RetryPolicy(max_retries=max_retries),
                now=now or utcnow(),
                scheduled_for=scheduled_for,
            )
            assert run.id is not None
            ids.append(run.id)
    return ids


def lease(
    engine: Engine,
    runner_id: int,
    *,
    now: datetime | None = None,
    ttl: timedelta = TTL,
    environment: str = "default",
    team_id: int | None = None,
) -> Granted | Refused | None:
    """``team_id``: the runner's binding (None: a shared runner)."""
    with write_session(engine) as session:
        return lifecycle.lease(
            session,
            runner_id=runner_id,
            environment=environment,
            lease_token_hash=hash_token(new_token(LEASE_TOKEN_PREFIX)),
            now=now or utcnow(),
            ttl=ttl,
            team_id=team_id,
        )


def must_lease(
    engine: Engine, runner_id: int, *, now: datetime | None = None, ttl: timedelta = TTL
) -> Granted:
    grant = lease(engine, runner_id, now=now, ttl=ttl)
    assert isinstance(grant, Granted), f"expected a lease, got {grant!r}"
    return grant


class Outcome(Enum):
    """A lifecycle verdict as the store tests compare it: accepted, or why not."""

    OK = "ok"
    GONE = Refusal.GONE.value
    CONFLICT = Refusal.CONFLICT.value
    BUSY = Refusal.BUSY.value


def outcome_of(verdict: object) -> Outcome:
    return Outcome(verdict.kind.value) if isinstance(verdict, Refused) else Outcome.OK


def key_of(session: Session, attempt_id: int) -> LeaseKey:
    """The key a runner's calls about the attempt carry (run, runner, lease token hash),
    read from its row: the tests do not keep the tokens their leases were granted."""
    attempt = session.get(RunAttempt, attempt_id)
    assert attempt is not None
    return LeaseKey(
        run_id=attempt.run_id, runner_id=attempt.runner_id, token_hash=attempt.lease_token_hash
    )


def start(
    engine: Engine, attempt_id: int, *, now: datetime | None = None, ttl: timedelta = TTL
) -> Outcome:
    with write_session(engine) as session:
        key = key_of(session, attempt_id)
        return outcome_of(lifecycle.start(session, key, now=now or utcnow(), ttl=ttl))


def heartbeat(engine: Engine, attempt_id: int, *, now: datetime, ttl: timedelta = TTL) -> Outcome:
    with write_session(engine) as session:
        key = key_of(session, attempt_id)
        return outcome_of(lifecycle.heartbeat(session, key, now=now, ttl=ttl))


def finish(
    engine: Engine,
    attempt_id: int,
    reported: AttemptStatus,
    *,
    now: datetime,
    exit_code: int | None = 0,
    error_message: str | None = None,
) -> Outcome:
    """As the result route does, in its own write transaction."""
    with write_session(engine) as session:
        key = key_of(session, attempt_id)
        return outcome_of(
            lifecycle.report_result(
                session,
                key,
                reported=reported,
                exit_code=exit_code,
                error_message=error_message,
                now=now,
            )
        )


def cancel(engine: Engine, run_id: int, *, now: datetime | None = None) -> None:
    with write_session(engine) as session:
        lifecycle.cancel(session, run_id, now or utcnow())


def expire_stale(engine: Engine, now: datetime) -> list[tuple[int, RunStatus]]:
    with write_session(engine) as session:
        return lifecycle.expire_stale(session, now)


def add_schedule(
    engine: Engine, app: App, *, now: datetime, retry: dict[str, Any] | None = None, **fields: Any
) -> int:
    """A schedule of ``app`` made as the API makes one (every minute, UTC, enabled,
    unless ``fields`` say otherwise); its id."""
    # The fields the API stores for a schedule created with just a cron.
    base = ScheduleCreate(cron="* * * * *").model_dump(include=set(schedule_store.SCHEDULE_FIELDS))
    with write_session(engine) as session:
        schedule = schedule_store.create_schedule(
            session, app=app, fields={**base, **fields}, retry=retry or {}, now=now
        )
        assert schedule is not None and schedule.id is not None
        return schedule.id


def get_run(engine: Engine, run_id: int) -> Run:
    with read_session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def get_runner(engine: Engine, runner_id: int) -> Runner:
    with read_session(engine) as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        return runner


def attempts_of(engine: Engine, run_id: int) -> list[RunAttempt]:
    with read_session(engine) as session:
        return list(
            session.exec(
                select(RunAttempt)
                .where(RunAttempt.run_id == run_id)
                .order_by(col(RunAttempt.attempt_no))
            )
        )


def all_runs(engine: Engine) -> list[Run]:
    with read_session(engine) as session:
        return list(session.exec(select(Run).order_by(col(Run.id))))


def all_attempts(engine: Engine) -> list[RunAttempt]:
    with read_session(engine) as session:
        return list(session.exec(select(RunAttempt).order_by(col(RunAttempt.id))))


def doubly_active(engine: Engine) -> list[tuple[str, int, int]]:
    """(kind, id, active attempts) for every run or runner with more than one active
    attempt right now: always empty while the invariants hold."""
    statuses = ", ".join(f"'{s.value}'" for s in ACTIVE_ATTEMPT_STATUSES)
    found = []
    with read_session(engine) as session:
        for kind in ("run_id", "runner_id"):
            rows = session.execute(
                text(
                    f"SELECT {kind}, count(*) FROM run_attempt WHERE status IN ({statuses}) "
                    f"GROUP BY {kind} HAVING count(*) > 1"
                )
            ).all()
            found += [(kind, int(row[0]), int(row[1])) for row in rows]
    return found
