"""Cron schedules of an app: the scheduler (minitower-scheduler) fires them as runs."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from sqlmodel import Session

from minitower_api.deps import CallerDep, PageDep, ServicesDep, paged
from minitower_api.errors import conflict, invalid, not_found, responses
from minitower_api.params import InputError, prepare_input
from minitower_api.routers.apps import require_app
from minitower_shared.clock import utcnow
from minitower_shared.cron import CronError, validate
from minitower_shared.models import App, Schedule
from minitower_shared.schemas import (
    MAX_INT64,
    ScheduleCreate,
    ScheduleList,
    SchedulePublic,
    ScheduleUpdate,
)
from minitower_shared.store import apps as app_store
from minitower_shared.store import audit
from minitower_shared.store import schedules as schedule_store
from minitower_shared.store.audit import AuditObject

router = APIRouter(prefix="/api/v1/apps/{app}/schedules", tags=["schedules"])

ScheduleId = Annotated[int, Path(ge=1, le=MAX_INT64, description="The schedule's id")]
_RETRY_KEYS = ("max_retries", "retry_on", "retry_delay", "retry_backoff", "retry_max_delay")


def schedule_public(schedule: Schedule, app_slug: str) -> SchedulePublic:
    assert schedule.id is not None
    return SchedulePublic(
        schedule_id=schedule.id,
        app_slug=app_slug,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        input=schedule.input,
        version_no=schedule.version_no,
        environment=schedule.environment,
        priority=schedule.priority,
        retry=schedule.retry,
        overlap=schedule.overlap,
        catchup=schedule.catchup,
        enabled=schedule.enabled,
        next_fire_at=schedule.next_fire_at,
        last_fired_at=schedule.last_fired_at,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def _require_schedule(session: Session, app: App, schedule_id: int) -> Schedule:
    assert app.id is not None
    schedule = schedule_store.get_schedule(session, app.id, schedule_id)
    if schedule is None:
        raise not_found(f"schedule {schedule_id} of app {app.slug!r} not found")
    return schedule


def _check(services: ServicesDep, session: Session, app: App, fields: dict[str, Any]) -> None:
    """Refuse what the scheduler could never fire: a bad cron or zone, catchup "all"
    with a cap of 0, a version that does not exist, input the version refuses."""
    try:
        validate(fields["cron"], fields["timezone"], utcnow())
    except CronError as exc:
        raise invalid(str(exc)) from None
    if fields["catchup"] == "all" and services.settings.schedule_max_catchup == 0:
        raise invalid('catchup "all" needs MINITOWER_SCHEDULE_MAX_CATCHUP above 0 on this server')
    assert app.id is not None
    if fields["version_no"] is None:
        version = app_store.latest_version(session, app.id)
    else:
        version = app_store.get_version(session, app.id, fields["version_no"])
        if version is None:
            raise not_found(f"app {app.slug!r} has no version {fields['version_no']}")
    if version is not None:
        try:
            prepare_input(version.params_schema, dict(fields["input"]))
        except InputError as exc:
            raise invalid(str(exc), exc.details) from exc


def _id(schedule: Schedule) -> int:
    assert schedule.id is not None
    return schedule.id


def _update_action(fields: dict[str, Any], retry: dict[str, Any]) -> str:
    """schedule.pause or schedule.resume when ``enabled`` is all the change sets."""
    if set(fields) == {"enabled"} and not retry:
        return "schedule.resume" if fields["enabled"] else "schedule.pause"
    return "schedule.update"


@router.post("", status_code=201, response_model=SchedulePublic, responses=responses(409))
def create_schedule(
    app: str, body: ScheduleCreate, caller: CallerDep, services: ServicesDep
) -> SchedulePublic:
    """Fire the app on ``cron`` (five fields or a macro such as ``@daily``) in
    ``timezone``. ``overlap``: ``allow`` always runs; ``skip`` runs nothing (and records
    the skip) while an earlier run of the schedule is unfinished; ``queue`` queues the
    run but does not lease it before the earlier one ends. ``catchup`` after downtime:
    ``none`` fires only times still due, ``latest`` the most recent missed one, ``all``
    every missed one up to MINITOWER_SCHEDULE_MAX_CATCHUP."""
    fields = body.model_dump(include=set(schedule_store.SCHEDULE_FIELDS))
    retry = body.model_dump(include=set(_RETRY_KEYS))
    with services.write() as session:
        record = require_app(session, caller.team_id, app)
        _check(services, session, record, fields)
        schedule = schedule_store.create_schedule(
            session, app=record, fields=fields, retry=retry, now=utcnow()
        )
        if schedule is None:
            raise conflict(f"app {app!r} already has a schedule named {body.name!r}")
        audit.record(
            session,
            caller.actor,
            "schedule.create",
            AuditObject("schedule", _id(schedule)),
            {"app": record.slug, "name": schedule.name, "cron": schedule.cron},
        )
        return schedule_public(schedule, record.slug)


@router.get("", response_model=ScheduleList, responses=responses())
def list_schedules(
    app: str, caller: CallerDep, services: ServicesDep, page: PageDep
) -> ScheduleList:
    with services.read() as session:
        record = require_app(session, caller.team_id, app)
        assert record.id is not None
        rows = schedule_store.list_schedules(
            session, record.id, after_id=page.cursor or 0, limit=page.limit + 1
        )
    rows, next_cursor = paged(rows, page, lambda s: s.id)
    return ScheduleList(
        schedules=[schedule_public(s, record.slug) for s in rows], next_cursor=next_cursor
    )


@router.get("/{schedule_id}", response_model=SchedulePublic, responses=responses())
def get_schedule(
    app: str, schedule_id: ScheduleId, caller: CallerDep, services: ServicesDep
) -> SchedulePublic:
    with services.read() as session:
        record = require_app(session, caller.team_id, app)
        return schedule_public(_require_schedule(session, record, schedule_id), record.slug)


@router.patch("/{schedule_id}", response_model=SchedulePublic, responses=responses(409))
def update_schedule(
    app: str,
    schedule_id: ScheduleId,
    body: ScheduleUpdate,
    caller: CallerDep,
    services: ServicesDep,
) -> SchedulePublic:
    """Change any field; ``enabled`` pauses and resumes (a resumed schedule fires from
    now on, it does not catch up on the pause). A retry field set to null goes back to
    the version's value."""
    given = body.model_fields_set
    fields = {k: getattr(body, k) for k in schedule_store.SCHEDULE_FIELDS if k in given}
    for key in ("cron", "timezone", "input", "environment", "priority", "overlap", "catchup"):
        if key in fields and fields[key] is None:
            raise invalid(f"{key} cannot be null")
    if fields.get("enabled", True) is None:
        raise invalid("enabled cannot be null")
    if fields.get("name", "") is None:
        raise invalid("name cannot be null")
    retry = {k: getattr(body, k) for k in _RETRY_KEYS if k in given}
    with services.write() as session:
        record = require_app(session, caller.team_id, app)
        schedule = _require_schedule(session, record, schedule_id)
        merged = {k: fields.get(k, getattr(schedule, k)) for k in schedule_store.SCHEDULE_FIELDS}
        _check(services, session, record, merged)
        updated = schedule_store.update_schedule(
            session, schedule, fields=fields, retry=retry, now=utcnow()
        )
        if updated is None:
            raise conflict(f"app {app!r} already has a schedule named {fields['name']!r}")
        audit.record(
            session,
            caller.actor,
            _update_action(fields, retry),
            AuditObject("schedule", schedule_id),
            {"app": record.slug, "fields": sorted([*fields, *retry])},
        )
        return schedule_public(updated, record.slug)


@router.delete("/{schedule_id}", status_code=204, responses=responses())
def delete_schedule(
    app: str, schedule_id: ScheduleId, caller: CallerDep, services: ServicesDep
) -> Response:
    """The schedule stops; the runs it made stay, with their ``schedule_id``."""
    with services.write() as session:
        record = require_app(session, caller.team_id, app)
        schedule = _require_schedule(session, record, schedule_id)
        schedule_store.delete_schedule(session, schedule)
        audit.record(
            session,
            caller.actor,
            "schedule.delete",
            AuditObject("schedule", schedule_id),
            {"app": record.slug, "name": schedule.name},
        )
    return Response(status_code=204)
