"""Apps: the list (last run, create, disable/enable) and one app (versions, runs, and a
Run form generated from the chosen version's parameters)."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from minitower_api.console.calls import api, validation_message
from minitower_api.console.session import PageError, PostViewerDep, Viewer, ViewerDep
from minitower_api.console.templating import render
from minitower_api.deps import Page, Services, ServicesDep
from minitower_api.errors import HttpProblem
from minitower_api.routers import apps as app_routes
from minitower_api.routers import runs as run_routes
from minitower_api.routers import versions as version_routes
from minitower_shared.schemas import MAX_INT64, AppCreate, AppUpdate, RunCreate, VersionPublic
from minitower_shared.store import runs as run_store

router = APIRouter(include_in_schema=False)

PARAM_PREFIX = "param."
# The form's typed inputs; anything else is edited as JSON.
SIMPLE_TYPES = {"string", "integer", "number", "boolean"}
MAX_FORM_FIELDS = 200


@router.get("/apps", response_class=HTMLResponse)
def apps_page(request: Request, viewer: ViewerDep, services: ServicesDep) -> HTMLResponse:
    return _apps_page(request, viewer, services, error=None, form={})


def _apps_page(
    request: Request,
    viewer: Viewer,
    services: Services,
    error: str | None,
    form: dict[str, str],
    status: int = 200,
) -> HTMLResponse:
    listing = api(
        app_routes.list_apps, viewer.caller, services, Page(limit=200, cursor=None, offset=0)
    )
    with services.read() as session:
        last = run_store.last_run_status_by_app(
            session, viewer.caller.team_id, [a.app_id for a in listing.apps]
        )
    return render(
        request,
        "apps.html",
        {"viewer": viewer, "apps": listing.apps, "last": last, "error": error, "form": form},
        status_code=status,
    )


@router.post("/apps", response_class=HTMLResponse)
def create_app(
    request: Request,
    viewer: PostViewerDep,
    services: ServicesDep,
    slug: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    form = {"slug": slug, "description": description}
    try:
        body = AppCreate(slug=slug.strip(), description=description)
        app_routes.create_app(body, viewer.caller, services)
    except ValidationError as exc:
        return _apps_page(request, viewer, services, validation_message(exc), form, 400)
    except HttpProblem as exc:
        return _apps_page(request, viewer, services, exc.message, form, exc.status)
    return RedirectResponse(f"/apps/{body.slug}", status_code=303)


@router.post("/apps/{app}/disabled")
def set_disabled(
    app: str,
    viewer: PostViewerDep,
    services: ServicesDep,
    disabled: Annotated[str, Form(max_length=10)] = "",
) -> RedirectResponse:
    body = AppUpdate(disabled=disabled == "true")
    api(app_routes.update_app, app, body, viewer.caller, services)
    return RedirectResponse(f"/apps/{app}", status_code=303)


def _app_context(
    viewer: Viewer, services: Services, app: str, version_no: int | None
) -> dict[str, Any]:
    record = api(app_routes.get_app, app, viewer.caller, services)
    versions = api(
        version_routes.list_versions,
        app,
        viewer.caller,
        services,
        Page(limit=200, cursor=None, offset=0),
    ).versions
    chosen: VersionPublic | None = None
    if version_no is not None:
        chosen = next((v for v in versions if v.version_no == version_no), None)
        if chosen is None:
            raise PageError(404, f"app {app!r} has no version {version_no}")
    elif versions:
        chosen = versions[0]
    runs = api(
        run_routes.list_app_runs,
        app,
        viewer.caller,
        services,
        Page(limit=20, cursor=None, offset=0),
    ).runs
    return {
        "viewer": viewer,
        "app": record,
        "versions": versions,
        "chosen": chosen,
        "fields": _fields(chosen),
        "runs": runs,
    }


def _fields(version: VersionPublic | None) -> list[dict[str, Any]]:
    """One form field per parameter of the version's input schema."""
    schema = version.params_schema if version is not None else None
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return []
    required = schema.get("required") or []
    fields = []
    for name, prop in schema["properties"].items():
        prop = prop if isinstance(prop, dict) else {}
        kind = prop.get("type")
        kind = kind if isinstance(kind, str) and kind in SIMPLE_TYPES else "json"
        has_default = "default" in prop
        default = prop.get("default")
        if kind == "json" and has_default:
            default = json.dumps(default)
        elif kind == "boolean" and has_default:
            default = "true" if default else "false"
        fields.append(
            {
                "name": name,
                "type": kind,
                "description": prop.get("description") or "",
                "default": "" if default is None else str(default),
                "has_default": has_default,
                "required": name in required,
                "enum": prop.get("enum") if isinstance(prop.get("enum"), list) else None,
            }
        )
    return fields


@router.get("/apps/{app}", response_class=HTMLResponse)
def app_page(
    request: Request,
    app: str,
    viewer: ViewerDep,
    services: ServicesDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
) -> HTMLResponse:
    context = _app_context(viewer, services, app, version)
    return render(request, "app.html", {**context, "error": None, "values": {}})


def _typed(kind: str, raw: str) -> Any:
    """The form's text as the JSON value the parameter's type asks for; text that does
    not convert is passed on as it is, so that the API refuses it with its own message."""
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            number = float(raw)
            return int(number) if number.is_integer() and "." not in raw else number
        if kind == "boolean":
            return {"true": True, "false": False}.get(raw, raw)
        if kind == "json":
            return json.loads(raw)
    except ValueError:
        return raw
    return raw


@router.post("/apps/{app}/runs", response_class=HTMLResponse)
async def start_run(
    request: Request, app: str, viewer: PostViewerDep, services: ServicesDep
) -> Response:
    form = await request.form()
    if len(form) > MAX_FORM_FIELDS:
        raise PageError(400, "too many form fields")
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    version_no = values.get("version_no", "")
    chosen = int(version_no) if version_no.isascii() and version_no.isdigit() else None
    if chosen is not None and not 1 <= chosen <= MAX_INT64:
        chosen = None
    context = await run_in_threadpool(_app_context, viewer, services, app, chosen)
    run_input = {
        field["name"]: _typed(field["type"], values[PARAM_PREFIX + field["name"]])
        for field in context["fields"]
        if values.get(PARAM_PREFIX + field["name"], "") != ""
    }
    try:
        body = RunCreate(
            input=run_input,
            version_no=chosen,
            priority=_typed("integer", values.get("priority") or "0"),
            max_retries=_typed("integer", values.get("max_retries") or "0"),
            environment=values.get("environment") or "default",
        )
        run = await run_in_threadpool(
            run_routes.create_run, app, viewer.caller, services, Response(), body, None
        )
    except ValidationError as exc:
        error = validation_message(exc)
    except HttpProblem as exc:
        if exc.status == 404:
            raise PageError(404, exc.message) from exc
        error = exc.message
    else:
        return RedirectResponse(f"/runs/{run.run_id}", status_code=303)
    return render(
        request, "app.html", {**context, "error": error, "values": values}, status_code=400
    )
