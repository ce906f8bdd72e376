"""Liveness, readiness and metrics for operators and orchestrators."""

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from minitower_api.deps import ServicesDep
from minitower_shared.db import reader
from minitower_shared.migrate import current_revision, head_revision
from minitower_shared.schemas import HealthStatus

router = APIRouter(tags=["operations"])
log = logging.getLogger("minitower.api")


@router.get("/health", response_model=HealthStatus)
def health() -> HealthStatus:
    """200 while the process lives."""
    return HealthStatus(status="ok")


@router.get(
    "/ready",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "not ready"}},
)
def ready(services: ServicesDep) -> Response:
    """200 when the database answers and every migration is applied, else 503."""
    try:
        with services.read() as session:
            session.execute(text("SELECT 1"))
        revision = current_revision(reader(services.engine))
    except Exception:  # any database failure means not ready, whatever its kind
        log.exception("readiness check: the database does not answer")
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    head = head_revision()
    if revision != head:
        return JSONResponse(
            {"status": f"migrations pending (database at {revision}, code at {head})"},
            status_code=503,
        )
    return JSONResponse({"status": "ok"})


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
