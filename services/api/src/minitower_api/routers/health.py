"""Liveness, readiness and metrics for operators and orchestrators."""

import logging
import time
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from minitower_api.deps import BearerDep, ServicesDep, bearer_token
from minitower_api.errors import unauthorized
from minitower_shared.clock import utcnow
from minitower_shared.db import reader
from minitower_shared.migrate import current_revision, head_revision
from minitower_shared.schemas import ErrorResponse, HealthStatus
from minitower_shared.store import reaper_passes as pass_store
from minitower_shared.store import scheduler_passes as scheduler_pass_store
from minitower_shared.tokens import same_secret

router = APIRouter(tags=["operations"])
log = logging.getLogger("minitower.api")

REAPER_OK = "ok"
NO_REAPER_PASS = "no pass recorded"


@router.get("/health", response_model=HealthStatus, response_model_exclude_none=True)
def health() -> HealthStatus:
    """200 while the process lives."""
    return HealthStatus(status="ok")


@router.get(
    "/ready",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "not ready"}},
)
def ready(services: ServicesDep) -> Response:
    """200 when the database answers and every migration is applied, else 503. ``reaper``
    says whether a reaper made a pass within MINITOWER_REAPER_STALL_AFTER; with
    MINITOWER_READY_REQUIRES_REAPER=true a stalled or missing reaper is also 503.
    ``scheduler`` says the same of the schedulers' ticks (MINITOWER_SCHEDULER_STALL_AFTER)."""
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
    with services.read() as session:
        last_pass_at = pass_store.summary(session).last_pass_at
        last_tick_at = scheduler_pass_store.summary(session).last_tick_at
    settings = services.settings
    now = utcnow()
    reaper = reaper_state(last_pass_at, now, stall_after=settings.reaper_stall_after)
    # Reported, never a reason for 503: a deployment without schedules needs no scheduler.
    scheduler = scheduler_state(last_tick_at, now, stall_after=settings.scheduler_stall_after)
    if settings.ready_requires_reaper and reaper != REAPER_OK:
        # A fresh install gets one stall window for its reaper to make a first pass.
        waiting = time.monotonic() - services.started < settings.reaper_stall_after
        if reaper != NO_REAPER_PASS:
            return JSONResponse(
                {"status": "reaper stalled", "reaper": reaper, "scheduler": scheduler},
                status_code=503,
            )
        if not waiting:
            return JSONResponse(
                {"status": "no reaper", "reaper": reaper, "scheduler": scheduler},
                status_code=503,
            )
    return JSONResponse({"status": "ok", "reaper": reaper, "scheduler": scheduler})


def scheduler_state(last_tick_at: datetime | None, now: datetime, *, stall_after: float) -> str:
    if last_tick_at is None:
        return "no tick recorded"
    age = (now - last_tick_at).total_seconds()
    if age > stall_after:
        return f"stalled: last tick {age:.0f} s ago"
    return REAPER_OK


def reaper_state(last_pass_at: datetime | None, now: datetime, *, stall_after: float) -> str:
    if last_pass_at is None:
        return NO_REAPER_PASS
    age = (now - last_pass_at).total_seconds()
    if age > stall_after:
        return f"stalled: last pass {age:.0f} s ago"
    return REAPER_OK


@router.get(
    "/metrics",
    response_class=Response,
    responses={401: {"model": ErrorResponse, "description": "MINITOWER_METRICS_TOKEN is set"}},
    # Open unless MINITOWER_METRICS_TOKEN is set: the bearer token is optional.
    openapi_extra={"security": [{}, {"HTTPBearer": []}]},
)
def metrics(services: ServicesDep, credentials: BearerDep) -> Response:
    """Prometheus text format. With MINITOWER_METRICS_TOKEN set, only for
    ``Authorization: Bearer <that token>``."""
    expected = services.settings.metrics_token
    if expected is not None:
        given = bearer_token(credentials)
        if not same_secret(given, expected.get_secret_value()):
            raise unauthorized("invalid metrics token")
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
