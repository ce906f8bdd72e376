"""Cron schedules and their fires.

A fire is one due time of one schedule, handled once: the ``schedule_fire`` row (unique
on ``(schedule_id, scheduled_for)``) is inserted in the same transaction as the run it
makes and as the schedule's move to its next due time. Two schedulers, or one killed in
the middle of a tick, therefore never make a schedule fire twice for the same time: the
second finds the row (or the first's transaction rolled back whole).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError
from sqlalchemy import delete, func, insert, true, update
from sqlmodel import Session, col, select

from minitower_shared.clock import as_utc
from minitower_shared.cron import CronError, expand, next_fire_time, zone
from minitower_shared.models import App, AppVersion, Environment, Run, Schedule, ScheduleFire
from minitower_shared.retry import RetryPolicy
from minitower_shared.states import TERMINAL_RUN_STATUSES
from minitower_shared.store import apps as app_store
from minitower_shared.store import runs as run_store
from minitower_shared.store import teams as team_store
from minitower_shared.store import webhooks as webhook_store

TOWERFILE_SCHEDULE_NAME = "towerfile"
# Fields a schedule may be created or updated with (besides the retry overrides).
SCHEDULE_FIELDS = (
    "name",
    "cron",
    "timezone",
    "input",
    "version_no",
    "environment",
    "priority",
    "overlap",
    "catchup",
    "enabled",
)
_TERMINAL = [s.value for s in TERMINAL_RUN_STATUSES]
# The scheduler's question, in the words of the partial index ix_schedule_due.
# ``schedule.enabled = 1`` on SQLite (the words of ix_schedule_due), ``= true`` on PostgreSQL.
_ENABLED = col(Schedule.enabled) == true()

InputPreparer = Callable[[dict[str, Any] | None, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class FireWork:
    """What one pass over the due schedules did."""

    runs_fired: int = 0
    fires_skipped: int = 0


def create_schedule(
    session: Session, *, app: App, fields: dict[str, Any], retry: dict[str, Any], now: datetime
) -> Schedule | None:
    """None when the app already has a schedule of this (non-empty) name. The cron and
    zone must have been checked (``cron.validate``)."""
    assert app.id is not None
    name = fields.get("name", "")
    if name and find_by_name(session, app.id, name) is not None:
        return None
    schedule = Schedule(
        team_id=app.team_id,
        app_id=app.id,
        retry={k: v for k, v in retry.items() if v is not None},
        created_at=now,
        updated_at=now,
        **fields,
    )
    schedule.next_fire_at = next_fire_time(schedule.cron, schedule.timezone, now)
    session.add(schedule)
    session.flush()
    return schedule


def find_by_name(session: Session, app_id: int, name: str) -> Schedule | None:
    return session.exec(
        select(Schedule).where(Schedule.app_id == app_id, Schedule.name == name)
    ).first()


def get_schedule(session: Session, app_id: int, schedule_id: int) -> Schedule | None:
    return session.exec(
        select(Schedule).where(Schedule.id == schedule_id, Schedule.app_id == app_id)
    ).first()


def list_schedules(session: Session, app_id: int, *, after_id: int, limit: int) -> list[Schedule]:
    return list(
        session.exec(
            select(Schedule)
            .where(Schedule.app_id == app_id, col(Schedule.id) > after_id)
            .order_by(col(Schedule.id))
            .limit(limit)
        )
    )


def update_schedule(
    session: Session,
    schedule: Schedule,
    *,
    fields: dict[str, Any],
    retry: dict[str, Any],
    now: datetime,
) -> Schedule | None:
    """Apply the given fields; None when a new name is taken. A change of cron, zone or
    a resume restarts the due times from ``now``: a paused schedule does not catch up
    on the times it was paused for."""
    name = fields.get("name")
    if name and name != schedule.name and find_by_name(session, schedule.app_id, name):
        return None
    resumed = fields.get("enabled") is True and not schedule.enabled
    timing = any(k in fields and fields[k] != getattr(schedule, k) for k in ("cron", "timezone"))
    for key, value in fields.items():
        setattr(schedule, key, value)
    if retry:
        merged = {**schedule.retry, **retry}
        schedule.retry = {k: v for k, v in merged.items() if v is not None}
    if resumed or timing:
        schedule.next_fire_at = next_fire_time(schedule.cron, schedule.timezone, now)
    schedule.updated_at = now
    session.add(schedule)
    session.flush()
    return schedule


def delete_schedule(session: Session, schedule: Schedule) -> None:
    """The schedule and its fire records go; the runs it made stay, naming it."""
    session.execute(delete(ScheduleFire).where(col(ScheduleFire.schedule_id) == schedule.id))
    session.execute(delete(Schedule).where(col(Schedule.id) == schedule.id))


def oldest_due_at(session: Session, now: datetime | None = None) -> datetime | None:
    """The earliest ``next_fire_at`` of an enabled schedule (with ``now``: only if due).
    One seek of ix_schedule_due."""
    query = select(Schedule.next_fire_at).where(_ENABLED, col(Schedule.next_fire_at).is_not(None))
    if now is not None:
        query = query.where(col(Schedule.next_fire_at) <= now)
    value = session.exec(query.order_by(col(Schedule.next_fire_at)).limit(1)).first()
    return None if value is None else as_utc(value)


def _missed_times(
    schedule: Schedule, since: datetime, now: datetime, *, max_catchup: int, grace: timedelta
) -> list[datetime]:
    """The due times of ``schedule`` in [since, now] that its catchup mode fires, oldest
    first. Walks back from ``now`` (cronsim's reverse iteration), so the cost is bounded
    by the cap, never by the length of an outage."""
    wanted = {"none": 1, "latest": 1, "all": max_catchup}[schedule.catchup]
    if wanted <= 0:
        return []
    tz = zone(schedule.timezone)
    try:
        # Reverse iteration yields times strictly before its start: one second past
        # ``now`` (at whole seconds) makes a time equal to ``now`` count.
        start = now.astimezone(tz).replace(microsecond=0) + timedelta(seconds=1)
        walk = CronSim(expand(schedule.cron), start, reverse=True)
    except CronSimError as exc:
        raise CronError(str(exc)) from None
    times: list[datetime] = []
    for local in walk:
        # Stored and compared in UTC: SQLite keeps a datetime's wall time, not its zone.
        when = local.astimezone(UTC)
        if when < since or len(times) >= wanted:
            break
        if when <= now:
            times.append(when)
    if schedule.catchup == "none":
        # Only a time that is due now (within the grace) fires; older ones were missed.
        times = [t for t in times if now - t <= grace]
    return sorted(times)


def fire_due_schedules(
    session: Session,
    now: datetime,
    *,
    max_catchup: int,
    grace: timedelta,
    prepare_input: InputPreparer,
    limit: int = 200,
) -> FireWork:
    """Fire every enabled schedule whose ``next_fire_at`` has come (up to ``limit``),
    and move each to its next due time after ``now``."""
    due = session.exec(
        select(Schedule)
        .where(_ENABLED, col(Schedule.next_fire_at) <= now)
        .order_by(col(Schedule.next_fire_at))
        .limit(limit)
        # PostgreSQL: a schedule is fired by the one tick that locked it; a second
        # scheduler passes over it rather than wait and roll back on its fire's key.
        .with_for_update(skip_locked=True)
    ).all()
    fired = skipped = 0
    # Rows every fire of this tick reads again (one transaction: they cannot change).
    cache = _TickCache()
    for schedule in due:
        assert schedule.id is not None and schedule.next_fire_at is not None
        since = as_utc(schedule.next_fire_at)
        try:
            times = _missed_times(schedule, since, now, max_catchup=max_catchup, grace=grace)
            following = next_fire_time(schedule.cron, schedule.timezone, now)
        except CronError:
            # Validated on the way in; should a zone vanish from tzdata, stop, visibly.
            _execute(
                session,
                update(Schedule).where(col(Schedule.id) == schedule.id).values(enabled=False),
            )
            continue
        last = None
        for when in times:
            outcome = _fire(session, schedule, when, now, prepare_input, cache)
            last = when
            fired += outcome == "fired"
            skipped += outcome == "skipped"
        # Conditional on the due time read: a step taken once, whoever takes it.
        _execute(
            session,
            update(Schedule)
            .where(
                col(Schedule.id) == schedule.id, col(Schedule.next_fire_at) == schedule.next_fire_at
            )
            .values(
                next_fire_at=following,
                last_fired_at=func.coalesce(last, col(Schedule.last_fired_at)),
            ),
        )
    return FireWork(runs_fired=fired, fires_skipped=skipped)


def _execute(session: Session, statement: Any) -> Any:
    return session.execute(statement, execution_options={"synchronize_session": False})


def _fire(
    session: Session,
    schedule: Schedule,
    when: datetime,
    now: datetime,
    prepare_input: InputPreparer,
    cache: "_TickCache",
) -> str:
    """Handle one due time: "fired" or "skipped". Its fire row goes in with its run; a
    due time handled before (which the caller's walk from ``next_fire_at`` never offers)
    would break the unique key and roll the whole tick back rather than fire twice."""
    assert schedule.id is not None
    run_id, reason = _make_run(session, schedule, when, now, prepare_input, cache)
    outcome = "fired" if run_id is not None else "skipped"
    _execute(
        session,
        insert(ScheduleFire).values(
            schedule_id=schedule.id,
            scheduled_for=when,
            outcome=outcome,
            run_id=run_id,
            reason=reason,
            created_at=now,
        ),
    )
    if run_id is None and reason is not None:
        slug = cache.app(session, schedule.app_id).slug
        webhook_store.append_schedule_skipped(session, schedule, slug, when, reason, now)
    return outcome


def _unfinished_runs(session: Session, schedule_id: int) -> Any:
    return (
        select(Run.id)
        .where(Run.schedule_id == schedule_id, col(Run.status).not_in(_TERMINAL))
        .order_by(col(Run.id).desc())
        .limit(1)
    )


def _make_run(
    session: Session,
    schedule: Schedule,
    when: datetime,
    now: datetime,
    prepare_input: InputPreparer,
    cache: "_TickCache",
) -> tuple[int | None, str | None]:
    """The run for one due time, or (None, why not)."""
    assert schedule.id is not None
    app = cache.app(session, schedule.app_id)
    if app.disabled:
        return None, "the app is disabled"
    version = cache.version(session, schedule.app_id, schedule.version_no)
    if version is None:
        return None, f"no version {schedule.version_no or ''}".rstrip() + " to run"
    after_run_id = None
    if schedule.overlap in ("skip", "queue"):
        earlier = session.exec(_unfinished_runs(session, schedule.id)).first()
        if earlier is not None and schedule.overlap == "skip":
            return None, f"run {earlier} of this schedule has not finished (overlap=skip)"
        after_run_id = earlier
    try:
        run_input = prepare_input(version.params_schema, dict(schedule.input))
    except ValueError as exc:
        return None, f"input does not fit version {version.version_no}: {exc}"[:500]
    environment = cache.environment(session, schedule.team_id, schedule.environment)
    retry = RetryPolicy().with_overrides(version.retry_policy or {}).with_overrides(schedule.retry)
    run = run_store.create_run(
        session,
        app=app,
        version=version,
        environment=environment,
        input=run_input,
        priority=schedule.priority,
        retry=retry,
        now=now,
        scheduled_for=when,
        schedule_id=schedule.id,
        after_run_id=after_run_id,
    )
    return run.id, None


class _TickCache:
    """Apps, versions and environments read once per tick rather than once per fire."""

    def __init__(self) -> None:
        self._apps: dict[int, App] = {}
        self._versions: dict[tuple[int, int | None], AppVersion | None] = {}
        self._environments: dict[tuple[int, str], Environment] = {}

    def app(self, session: Session, app_id: int) -> App:
        if app_id not in self._apps:
            found = session.get(App, app_id)
            assert found is not None
            self._apps[app_id] = found
        return self._apps[app_id]

    def version(self, session: Session, app_id: int, version_no: int | None) -> AppVersion | None:
        key = (app_id, version_no)
        if key not in self._versions:
            self._versions[key] = (
                app_store.latest_version(session, app_id)
                if version_no is None
                else app_store.get_version(session, app_id, version_no)
            )
        return self._versions[key]

    def environment(self, session: Session, team_id: int, name: str) -> Environment:
        key = (team_id, name)
        if key not in self._environments:
            self._environments[key] = team_store.get_or_create_environment(session, team_id, name)
        return self._environments[key]


def fires_of(session: Session, schedule_id: int) -> list[ScheduleFire]:
    return list(
        session.exec(
            select(ScheduleFire)
            .where(ScheduleFire.schedule_id == schedule_id)
            .order_by(col(ScheduleFire.scheduled_for))
        )
    )
