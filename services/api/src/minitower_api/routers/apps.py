"""Apps: a team's deployable units."""

from fastapi import APIRouter
from sqlmodel import Session

from minitower_api.deps import CallerDep, PageDep, ServicesDep, paged
from minitower_api.errors import conflict, not_found, responses
from minitower_api.views import app_public
from minitower_shared.clock import utcnow
from minitower_shared.models import App
from minitower_shared.schemas import AppCreate, AppList, AppPublic, AppUpdate
from minitower_shared.store import apps as app_store
from minitower_shared.store import audit
from minitower_shared.store.audit import AuditObject

router = APIRouter(prefix="/api/v1/apps", tags=["apps"])


def require_app(session: Session, team_id: int, slug: str) -> App:
    """The team's app, or 404: another team's app is indistinguishable from none."""
    app = app_store.get_app(session, team_id, slug)
    if app is None:
        raise not_found(f"app {slug!r} not found")
    return app


@router.post("", status_code=201, response_model=AppPublic, responses=responses(409))
def create_app(body: AppCreate, caller: CallerDep, services: ServicesDep) -> AppPublic:
    with services.write() as session:
        app = app_store.create_app(
            session, team_id=caller.team_id, slug=body.slug, description=body.description or ""
        )
        if app is not None:
            audit.record(session, caller.actor, "app.create", AuditObject("app", app.slug))
    if app is None:
        raise conflict(f"an app named {body.slug!r} already exists", code="slug_taken")
    return app_public(app)


@router.get("", response_model=AppList, responses=responses())
def list_apps(caller: CallerDep, services: ServicesDep, page: PageDep) -> AppList:
    with services.read() as session:
        apps = app_store.list_apps(
            session,
            caller.team_id,
            after_id=page.cursor or 0,
            limit=page.limit + 1,
            offset=page.offset,
        )
    apps, next_cursor = paged(apps, page, lambda app: app.id)
    return AppList(
        apps=[app_public(a) for a in apps],
        next_cursor=next_cursor,
    )


@router.get("/{app}", response_model=AppPublic, responses=responses())
def get_app(app: str, caller: CallerDep, services: ServicesDep) -> AppPublic:
    with services.read() as session:
        return app_public(require_app(session, caller.team_id, app))


def _update_action(body: AppUpdate) -> str:
    """app.disable or app.enable when that is what the change sets, else app.update."""
    if body.disabled is None:
        return "app.update"
    return "app.disable" if body.disabled else "app.enable"


@router.patch("/{app}", response_model=AppPublic, responses=responses())
def update_app(app: str, body: AppUpdate, caller: CallerDep, services: ServicesDep) -> AppPublic:
    """Change the description, or disable the app: a disabled app refuses new runs.
    ``max_concurrent_runs`` limits how many of its runs are leased at once (null lifts
    the limit); runs over it wait in the queue without holding up other apps."""
    with services.write() as session:
        record = require_app(session, caller.team_id, app)
        record = app_store.update_app(
            session,
            record,
            description=body.description,
            disabled=body.disabled,
            now=utcnow(),
            max_concurrent_runs=body.max_concurrent_runs,
            set_max_concurrent_runs="max_concurrent_runs" in body.model_fields_set,
        )
        audit.record(
            session,
            caller.actor,
            _update_action(body),
            AuditObject("app", record.slug),
            body.model_dump(include={"disabled", "max_concurrent_runs"}, exclude_unset=True),
        )
    return app_public(record)
