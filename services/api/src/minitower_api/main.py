"""The FastAPI application: ``create_app(settings)`` wires routers, errors and metrics."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from minitower_api.deps import Services
from minitower_api.errors import install_error_handlers
from minitower_api.limits import BodyLimitMiddleware
from minitower_api.longpoll import QueueSignal
from minitower_api.metrics import Metrics, MetricsMiddleware
from minitower_api.objects import ObjectStore
from minitower_api.routers import (
    apps,
    bootstrap,
    health,
    leases,
    logs,
    runners,
    runs,
    tokens,
    versions,
)
from minitower_api.settings import ApiSettings
from minitower_shared.db import create_db_engine, read_session

API_VERSION = "1.0.0"


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    engine = create_db_engine(
        settings.db_path,
        busy_timeout=settings.db_busy_timeout,
        slow_query_threshold=settings.slow_query_threshold,
    )
    services = Services(
        settings=settings,
        engine=engine,
        objects=ObjectStore(settings.objects_dir),
        signal=QueueSignal(),
        metrics=Metrics(lambda: read_session(engine)),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.signal.bind(asyncio.get_running_loop())
        yield
        engine.dispose()

    app = FastAPI(
        title="MiniTower",
        version=API_VERSION,
        description="Deploy and run Python apps: the MiniTower control plane, HTTP API v1.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    # Lease long polls (routers/leases.py) are registered before the /runs/{run_id}
    # routes so that "lease" is never read as a run id.
    for module in (health, bootstrap, runners, tokens, apps, versions, leases, runs, logs):
        app.include_router(module.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_request_bytes=settings.max_request_bytes,
        max_artifact_bytes=settings.max_artifact_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, corrected to what the API really answers: validation errors are
    400 with the common error body, never 422."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema
