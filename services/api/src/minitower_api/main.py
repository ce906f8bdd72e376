"""The FastAPI application: ``create_app(settings)`` wires routers, errors and metrics."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from minitower_api.access import REQUEST_ID_HEADER, REQUEST_ID_PATTERN, RequestIdMiddleware
from minitower_api.deps import Services
from minitower_api.errors import install_error_handlers
from minitower_api.limits import BodyLimitMiddleware
from minitower_api.longpoll import QueueSignal
from minitower_api.metrics import Metrics, MetricsMiddleware
from minitower_api.objects import ObjectStore
from minitower_api.routers import (
    apps,
    bootstrap,
    environments,
    health,
    leases,
    logs,
    runners,
    runs,
    schedules,
    tokens,
    versions,
)
from minitower_api.settings import ApiSettings
from minitower_shared.db import create_db_engine, read_session

API_VERSION = "1.0.0"

DESCRIPTION = f"""Deploy and run Python apps: the MiniTower control plane, HTTP API v1.

Every answer, errors included, carries an `{REQUEST_ID_HEADER}` header. Send your own
(1-128 characters of `A-Z a-z 0-9 . _ : -`) to find the request in the server's logs,
where each line of it carries that `request_id`; without one, or with one that does not
fit, the server makes one up and returns it."""


class MiniTowerApp(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's error middleware, which answers unhandled errors with 500:
        # that answer gets the request id too, and the error's log line its request_id.
        return RequestIdMiddleware(super().build_middleware_stack())


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

    app = MiniTowerApp(
        title="MiniTower",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    # Lease long polls (routers/leases.py) are registered before the /runs/{run_id}
    # routes so that "lease" is never read as a run id.
    for module in (
        health,
        bootstrap,
        runners,
        tokens,
        apps,
        versions,
        leases,
        runs,
        logs,
        environments,
        schedules,
    ):
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
    400 with the common error body, never 422; every operation takes and every answer
    carries ``X-Request-ID``."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    request_id = {"type": "string", "pattern": REQUEST_ID_PATTERN, "maxLength": 128}
    components.setdefault("parameters", {})["RequestId"] = {
        "name": REQUEST_ID_HEADER,
        "in": "header",
        "required": False,
        "description": "The client's id for the request; one is made up when it is "
        "missing or does not fit the pattern.",
        "schema": request_id,
    }
    components.setdefault("headers", {})["RequestId"] = {
        "description": "The request's id, as sent by the client or made up by the server; "
        "the server's log lines of the request carry it as request_id.",
        "schema": request_id,
    }
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
            operation.setdefault("parameters", []).append(
                {"$ref": "#/components/parameters/RequestId"}
            )
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {})[REQUEST_ID_HEADER] = {
                    "$ref": "#/components/headers/RequestId"
                }
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema
