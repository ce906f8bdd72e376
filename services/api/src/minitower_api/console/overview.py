"""The overview: the team's runs at a glance (GET /api/v1/runs/summary)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from minitower_api.console.session import ViewerDep
from minitower_api.console.templating import render
from minitower_api.deps import ServicesDep
from minitower_api.routers import runs as run_routes

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, viewer: ViewerDep, services: ServicesDep) -> HTMLResponse:
    summary = run_routes.runs_summary(viewer.caller, services)
    return render(request, "overview.html", {"viewer": viewer, "summary": summary})
