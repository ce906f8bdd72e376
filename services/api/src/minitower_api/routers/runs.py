"""Runs as a team sees them: trigger, list, inspect, cancel."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sqlmodel import Session

from minitower_api.deps import CallerDep, PageDep, RunId, ServicesDep, paged
from minitower_api.errors import HttpProblem, conflict, invalid, not_found, responses
from minitower_api.params import InputError, InputLimits, prepare_input
from minitower_api.routers.apps import require_app
from minitower_api.views import attempt_public, run_public, runs_summary_public
from minitower_shared.clock import utcnow
from minitower_shared.models import App, AppVersion
from minitower_shared.retry import RetryPolicy
from minitower_shared.schemas import (
    AttemptList,
    RunCreate,
    RunList,
    RunPublic,
    RunRerun,
    RunsSummary,
)
from minitower_shared.states import RunStatus
from minitower_shared.store import apps as app_store
from minitower_shared.store import audit, lifecycle
from minitower_shared.store import runs as run_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.store.runs import RunView

router = APIRouter(prefix="/api/v1", tags=["runs"])

StatusFilter = Annotated[RunStatus | None, Query(description="Only runs in this status")]


def require_run(session: Session, team_id: int, run_id: int) -> RunView:
    view = run_store.get_run_view(session, team_id, run_id)
    if view is None:
        raise not_found(f"run {run_id} not found")
    return view


@router.post(
    "/apps/{app}/runs",
    status_code=201,
    response_model=RunPublic,
    responses={**responses(409), 200: {"model": RunPublic, "description": "idempotent replay"}},
)
def create_run(
    app: str,
    caller: CallerDep,
    services: ServicesDep,
    response: Response,
    body: RunCreate | None = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The same key within 24 h returns the first run (200) instead of a new one",
        ),
    ] = None,
) -> RunPublic:
    """Queue a run of the app's latest version (or of ``version_no``). Parameter defaults
    fill missing input keys; input that fails the version's parameter schema is refused.
    Every key of the body is optional, so no body at all means every default.
    ``scheduled_for`` delays the run; the retry fields override the version's
    ``[app.retry]`` policy."""
    body = body or RunCreate()
    # Everything that can be decided without the write lock is decided first: versions
    # never change, and validating input against a team's own schema must not hold up
    # every other writer.
    with services.read() as session:
        record, earlier = _open_app_or_replay(session, caller.team_id, app, idempotency_key)
        if earlier is not None:
            response.status_code = 200
            return earlier
        assert record.id is not None
        version = _pick_version(session, record.id, app, body.version_no)
    try:
        run_input = prepare_input(
            version.params_schema, body.input, InputLimits.from_settings(services.settings)
        )
    except InputError as exc:
        raise invalid(str(exc), exc.details) from exc
    with services.write() as session:
        now = utcnow()
        # Again under the lock: the app may have been disabled, or the same key used,
        # since the read (on PostgreSQL, the key is locked first: see
        # run_store.lock_idempotency_key).
        record, earlier = _open_app_or_replay(
            session, caller.team_id, app, idempotency_key, lock_key=True
        )
        if earlier is not None:
            response.status_code = 200
            return earlier
        assert record.id is not None
        environment = team_store.get_or_create_environment(
            session, caller.team_id, body.environment
        )
        run = run_store.create_run(
            session,
            app=record,
            version=version,
            environment=environment,
            input=run_input,
            priority=body.priority,
            retry=resolve_retry(version, body.retry_overrides()),
            now=now,
            scheduled_for=body.scheduled_for,
        )
        assert run.id is not None
        if idempotency_key:
            run_store.remember_idempotency_key(
                session,
                team_id=caller.team_id,
                app_id=record.id,
                key=idempotency_key,
                run_id=run.id,
                now=now,
            )
        audit.record(
            session,
            caller.actor,
            "run.create",
            AuditObject("run", run.id),
            {"app": record.slug, "version_no": version.version_no},
        )
        view = RunView(run, record.slug, version.version_no, environment.name)
    services.signal.notify()
    services.metrics.runs_created.labels(f"{caller.team.slug}/{record.slug}").inc()
    return run_public(view)


def _open_app_or_replay(
    session: Session,
    team_id: int,
    slug: str,
    idempotency_key: str | None,
    *,
    lock_key: bool = False,
) -> tuple[App, RunPublic | None]:
    """The app, and the run an earlier request with the same Idempotency-Key created
    (None if there is none). A disabled app refuses new runs, but still replays. With
    ``lock_key`` (the write transaction), the key is held until the transaction ends."""
    app = require_app(session, team_id, slug)
    assert app.id is not None
    if idempotency_key:
        if lock_key:
            run_store.lock_idempotency_key(
                session, team_id=team_id, app_id=app.id, key=idempotency_key
            )
        earlier = run_store.find_idempotent_run(
            session, team_id=team_id, app_id=app.id, key=idempotency_key, now=utcnow()
        )
        if earlier is not None:
            assert earlier.id is not None
            return app, run_public(require_run(session, team_id, earlier.id))
    if app.disabled:
        raise conflict(f"app {slug!r} is disabled", code="app_disabled")
    return app, None


def _pick_version(session: Session, app_id: int, slug: str, version_no: int | None) -> AppVersion:
    if version_no is None:
        version = app_store.latest_version(session, app_id)
        if version is None:
            raise HttpProblem(400, "no_version", f"app {slug!r} has no version yet: upload one")
        return version
    version = app_store.get_version(session, app_id, version_no)
    if version is None:
        raise not_found(f"app {slug!r} has no version {version_no}")
    return version


def _list(
    services: ServicesDep,
    team_id: int,
    app_slug: str | None,
    status: RunStatus | None,
    page: PageDep,
    environment: str | None = None,
) -> RunList:
    with services.read() as session:
        app_id = None
        if app_slug is not None:
            app_id = require_app(session, team_id, app_slug).id
        views = run_store.list_run_views(
            session,
            team_id,
            app_id=app_id,
            status=status.value if status else None,
            before_id=page.cursor,
            offset=page.offset,
            limit=page.limit + 1,
            environment=environment,
        )
    views, next_cursor = paged(views, page, lambda view: view.run.id)
    return RunList(
        runs=[run_public(v) for v in views],
        next_cursor=next_cursor,
    )


@router.get("/apps/{app}/runs", response_model=RunList, responses=responses())
def list_app_runs(
    app: str, caller: CallerDep, services: ServicesDep, page: PageDep, status: StatusFilter = None
) -> RunList:
    """The app's runs, newest first."""
    return _list(services, caller.team_id, app, status, page)


@router.get("/runs", response_model=RunList, responses=responses())
def list_runs(
    caller: CallerDep,
    services: ServicesDep,
    page: PageDep,
    status: StatusFilter = None,
    app: Annotated[str | None, Query(description="Only runs of this app (slug)")] = None,
    environment: Annotated[
        str | None, Query(max_length=64, description="Only runs in this environment")
    ] = None,
) -> RunList:
    """The team's runs, newest first."""
    return _list(services, caller.team_id, app, status, page, environment)


@router.get("/runs/summary", response_model=RunsSummary, responses=responses())
def runs_summary(caller: CallerDep, services: ServicesDep) -> RunsSummary:
    """The team's runs at a glance: the reference's four counts, counts by status (all
    time and over the last 24 hours), the queue per environment with its oldest run's
    age, the runners online and the latest failures."""
    with services.read() as session:
        summary = run_store.summarize_team_runs(
            session, caller.team_id, since=utcnow() - timedelta(hours=24)
        )
    return runs_summary_public(summary)


@router.get("/runs/{run_id}", response_model=RunPublic, responses=responses())
def get_run(run_id: RunId, caller: CallerDep, services: ServicesDep) -> RunPublic:
    with services.read() as session:
        return run_public(require_run(session, caller.team_id, run_id))


@router.get("/runs/{run_id}/attempts", response_model=AttemptList, responses=responses())
def list_attempts(run_id: RunId, caller: CallerDep, services: ServicesDep) -> AttemptList:
    """Every attempt of the run with its runner and outcome, failures included."""
    with services.read() as session:
        require_run(session, caller.team_id, run_id)
        rows = run_store.list_attempts(session, run_id)
    return AttemptList(attempts=[attempt_public(a, name) for a, name in rows])


@router.post(
    "/runs/{run_id}/rerun", status_code=201, response_model=RunPublic, responses=responses(409)
)
def rerun(
    run_id: RunId, caller: CallerDep, services: ServicesDep, body: RunRerun | None = None
) -> RunPublic:
    """Queue a new run with the input, priority, retries and environment of run
    ``run_id``, on its version or on ``version_no``; the new run's ``rerun_of`` names the
    origin. Input that does not fit the chosen version's parameters is refused."""
    body = body or RunRerun()
    with services.read() as session:
        origin = require_run(session, caller.team_id, run_id)
        record, _ = _open_app_or_replay(session, caller.team_id, origin.app_slug, None)
        assert record.id is not None
        version = _pick_version(
            session, record.id, origin.app_slug, body.version_no or origin.version_no
        )
    try:
        run_input = prepare_input(version.params_schema, origin.run.input)
    except InputError as exc:
        raise invalid(str(exc), exc.details) from exc
    with services.write() as session:
        record, _ = _open_app_or_replay(session, caller.team_id, origin.app_slug, None)
        environment = team_store.get_or_create_environment(
            session, caller.team_id, origin.environment
        )
        run = run_store.create_run(
            session,
            app=record,
            version=version,
            environment=environment,
            input=run_input,
            priority=origin.run.priority,
            retry=run_store.retry_policy_of(origin.run),
            now=utcnow(),
            rerun_of=run_id,
        )
        assert run.id is not None
        audit.record(
            session,
            caller.actor,
            "run.rerun",
            AuditObject("run", run.id),
            {"app": record.slug, "version_no": version.version_no, "rerun_of": run_id},
        )
        view = RunView(run, record.slug, version.version_no, environment.name)
    services.signal.notify()
    services.metrics.runs_created.labels(f"{caller.team.slug}/{record.slug}").inc()
    return run_public(view)


@router.post("/runs/{run_id}/cancel", response_model=RunPublic, responses=responses())
def cancel_run(run_id: RunId, caller: CallerDep, services: ServicesDep) -> RunPublic:
    """Idempotent. A queued run is cancelled at once; a leased or running one becomes
    ``cancelling`` until its runner confirms (or its lease expires)."""
    with services.write() as session:
        require_run(session, caller.team_id, run_id)
        outcome = lifecycle.cancel(session, run_id, utcnow())
        assert outcome is not None
        public = run_public(require_run(session, caller.team_id, run_id))
        # Idempotent: cancelling a finished (or already cancelling) run changes nothing,
        # and the audit log records changes.
        if outcome.changed:
            audit.record(
                session,
                caller.actor,
                "run.cancel",
                AuditObject("run", run_id),
                {"from": outcome.before.value, "to": outcome.after.value},
            )
    services.run_signals.notify(run_id)
    return public


def resolve_retry(version: AppVersion, overrides: dict[str, object]) -> RetryPolicy:
    """The version's Towerfile policy, then the caller's overrides."""
    return RetryPolicy().with_overrides(version.retry_policy or {}).with_overrides(overrides)
