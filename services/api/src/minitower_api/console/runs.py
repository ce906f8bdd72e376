"""Runs: the list (filters, pages, refreshing itself while runs are active) and one run
(timeline, input, attempts, live log, cancel and rerun)."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Form, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse

from minitower_api.console.calls import api, api_async
from minitower_api.console.session import PageError, PostViewerDep, Viewer, ViewerDep
from minitower_api.console.templating import render
from minitower_api.deps import Page, RunId, Services, ServicesDep
from minitower_api.routers import logs as log_routes
from minitower_api.routers import runs as run_routes
from minitower_api.routers import versions as version_routes
from minitower_shared.schemas import MAX_INT64, LogPage, RunRerun
from minitower_shared.states import RunStatus
from minitower_shared.store import apps as app_store
from minitower_shared.store import logs as log_store
from minitower_shared.store import runs as run_store

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
LOG_PAGE_LINES = 10_000
_DOWNLOAD_BATCH = 5000


def _or_none(value: str | None) -> str | None:
    return value or None


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    viewer: ViewerDep,
    services: ServicesDep,
    app: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
    fragment: bool = False,
) -> HTMLResponse:
    app, status, environment = _or_none(app), _or_none(status), _or_none(environment)
    if status is not None and status not in {s.value for s in RunStatus}:
        raise PageError(400, f"status: no such status {status!r}")
    page = Page(limit=PAGE_SIZE, cursor=before, offset=0)
    listing = api(
        run_routes.list_runs,
        viewer.caller,
        services,
        page,
        RunStatus(status) if status else None,
        app,
        environment,
    )
    with services.read() as session:
        apps = [
            a.slug
            for a in app_store.list_apps(session, viewer.caller.team_id, after_id=0, limit=500)
        ]
    context = {
        "viewer": viewer,
        "runs": listing.runs,
        "next_cursor": listing.next_cursor,
        "filters": {"app": app or "", "status": status or "", "environment": environment or ""},
        "statuses": [s.value for s in RunStatus],
        "apps": apps,
        "before": before,
    }
    return render(request, "runs_table.html" if fragment else "runs.html", context)


def _run_context(viewer: Viewer, services: Services, run_id: int) -> dict[str, object]:
    run = api(run_routes.get_run, run_id, viewer.caller, services)
    attempts = api(run_routes.list_attempts, run_id, viewer.caller, services).attempts
    versions = api(
        version_routes.list_versions,
        run.app_slug,
        viewer.caller,
        services,
        Page(limit=200, cursor=None, offset=0),
    ).versions
    return {"run": run, "attempts": attempts, "versions": versions}


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request, run_id: RunId, viewer: ViewerDep, services: ServicesDep
) -> HTMLResponse:
    context = _run_context(viewer, services, run_id)
    return render(request, "run.html", {"viewer": viewer, **context})


@router.get("/runs/{run_id}/state.json")
def run_state(run_id: RunId, viewer: ViewerDep, services: ServicesDep) -> JSONResponse:
    """What the run page refreshes while the run is active."""
    run = api(run_routes.get_run, run_id, viewer.caller, services)
    attempts = api(run_routes.list_attempts, run_id, viewer.caller, services).attempts
    return JSONResponse(
        {
            "run": run.model_dump(mode="json"),
            "attempts": [a.model_dump(mode="json") for a in attempts],
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/runs/{run_id}/log.json")
def run_log_page(
    run_id: RunId,
    viewer: ViewerDep,
    services: ServicesDep,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
    after_seq: Annotated[int, Query(ge=-1, le=MAX_INT64)] = -1,
) -> LogPage:
    """A page of one attempt's lines (the JSON API's), in pages large enough that a
    100,000-line log loads in ten requests before the live stream takes over."""
    return api(
        log_routes.read_logs,
        run_id,
        viewer.caller,
        services,
        after_seq,
        attempt,
        LOG_PAGE_LINES,
    )


@router.get("/runs/{run_id}/log/stream")
async def run_log_stream(
    run_id: RunId,
    viewer: ViewerDep,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[str | None, Query(max_length=40)] = None,
) -> StreamingResponse:
    """The JSON API's live log stream, for the session's caller. ``after`` (an event id,
    ``attempt_no:seq``) starts it where the pages the page loaded first end; a
    reconnecting browser's Last-Event-ID wins."""
    return await api_async(
        log_routes.follow_logs, run_id, viewer.caller, services, last_event_id or after
    )


@router.get("/runs/{run_id}/log.txt")
def run_log_text(
    run_id: RunId,
    viewer: ViewerDep,
    services: ServicesDep,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
) -> StreamingResponse:
    """One attempt's whole log as text (stderr lines marked), streamed in batches."""
    with services.read() as session:
        api(run_routes.require_run, session, viewer.caller.team_id, run_id)
        record = run_store.get_attempt(session, run_id, attempt)
    if record is None:
        raise PageError(404, f"run {run_id} has no attempt {attempt or ''}".strip())
    attempt_id = record.id
    assert attempt_id is not None

    def lines() -> Iterator[str]:
        after = -1
        while True:
            with services.read() as session:
                batch = log_store.list_attempt_log_text(
                    session, attempt_id, after_seq=after, limit=_DOWNLOAD_BATCH
                )
            # One chunk per batch: each chunk of a plain iterator is a hop to the threadpool.
            yield "".join(
                f"{'[stderr] ' if stream == 'stderr' else ''}{line}\n" for _, stream, line in batch
            )
            if len(batch) < _DOWNLOAD_BATCH:
                return
            after = batch[-1][0]

    filename = f"run-{run_id}-attempt-{record.attempt_no}.log"
    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: RunId, viewer: PostViewerDep, services: ServicesDep) -> RedirectResponse:
    api(run_routes.cancel_run, run_id, viewer.caller, services)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/rerun")
def rerun(
    run_id: RunId,
    viewer: PostViewerDep,
    services: ServicesDep,
    version_no: Annotated[str, Form(max_length=20)] = "",
) -> RedirectResponse:
    digits = version_no.isascii() and version_no.isdigit()
    version = int(version_no) if digits and 1 <= int(version_no) <= MAX_INT64 else None
    if version_no and version is None:
        raise PageError(400, "version_no: must be a version number")
    run = api(run_routes.rerun, run_id, viewer.caller, services, RunRerun(version_no=version))
    return RedirectResponse(f"/runs/{run.run_id}", status_code=303)
