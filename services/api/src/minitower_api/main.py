"""The FastAPI application: ``create_app(settings)`` wires routers, errors and metrics."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from minitower_api import console
from minitower_api.access import REQUEST_ID_HEADER, REQUEST_ID_PATTERN, RequestIdMiddleware
from minitower_api.deps import Services
from minitower_api.errors import install_error_handlers
from minitower_api.follow_watch import FollowWatch
from minitower_api.header_limits import HeaderLimitMiddleware
from minitower_api.limits import BodyLimitMiddleware
from minitower_api.login_attempts import LoginAttempts
from minitower_api.longpoll import QueueSignal
from minitower_api.metrics import Metrics, MetricsMiddleware
from minitower_api.objects import Spool, open_object_store
from minitower_api.peer_signals import PeerSignals, libpq_conninfo
from minitower_api.routers import (
    apps,
    audit,
    bootstrap,
    environments,
    health,
    leases,
    logs,
    runner_registration_tokens,
    runners,
    runs,
    schedules,
    secrets,
    team_auth,
    tokens,
    versions,
    webhooks,
)
from minitower_api.run_signals import RunSignals
from minitower_api.settings import ApiSettings
from minitower_api.stream_slots import StreamSlots
from minitower_shared.db import create_db_engine, read_session
from minitower_shared.store import runs as run_store
from minitower_shared.store import teams as team_store

API_VERSION = "1.0.0"

log = logging.getLogger("minitower.api")

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
        settings.database,
        pool_size=settings.db_pool_size,
        busy_timeout=settings.db_busy_timeout,
        slow_query_threshold=settings.slow_query_threshold,
        statement_timeout=settings.db_statement_timeout,
    )
    run_signals = RunSignals()

    def read_followed(run_ids: list[int], token_ids: list[int]) -> tuple[dict[int, str], set[int]]:
        with read_session(engine) as session:
            return (
                run_store.statuses_of(session, run_ids),
                team_store.inactive_tokens(session, token_ids),
            )

    services = Services(
        settings=settings,
        engine=engine,
        spool=Spool(settings.objects_dir),
        objects=open_object_store(settings, engine),
        signal=QueueSignal(),
        metrics=Metrics(lambda: read_session(engine)),
        run_signals=run_signals,
        follow_watch=FollowWatch(run_signals, read_followed, settings.follow_recheck_interval),
        long_polls=StreamSlots(
            "lease long polls",
            settings.max_long_polls_per_token,
            "MINITOWER_MAX_LONG_POLLS_PER_TOKEN",
        ),
        followers=StreamSlots(
            "log streams", settings.max_followers_per_token, "MINITOWER_MAX_FOLLOWERS_PER_TOKEN"
        ),
        login_attempts=LoginAttempts(
            per_slug=settings.login_attempts_per_slug,
            per_address=settings.login_attempts_per_address,
            window=settings.login_rate_window,
        ),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.signal.bind(asyncio.get_running_loop())
        _sweep_stale_uploads(services.spool)
        services.run_signals.bind(asyncio.get_running_loop())
        peers = _peer_signals(services)
        watch = asyncio.create_task(services.follow_watch.run())
        try:
            yield
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            if peers is not None:
                await asyncio.to_thread(peers.close)
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
        team_auth,
        runners,
        runner_registration_tokens,
        tokens,
        apps,
        versions,
        leases,
        runs,
        logs,
        environments,
        schedules,
        audit,
        webhooks,
        secrets,
    ):
        app.include_router(module.router)
    app.include_router(secrets.delivery)
    console.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_request_bytes=settings.max_request_bytes,
        max_artifact_bytes=settings.max_artifact_bytes,
    )
    app.add_middleware(
        HeaderLimitMiddleware,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
    )
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _peer_signals(services: Services) -> PeerSignals | None:
    """On PostgreSQL, where several API processes may share the database: wake-ups to
    and from them (peer_signals.py)."""
    if services.engine.dialect.name != "postgresql":
        return None
    peers = PeerSignals(
        libpq_conninfo(services.engine.url),
        on_queue=services.signal.notify_here,
        on_run=services.run_signals.notify_here,
    )
    services.signal.peers = peers.publish_queue
    services.run_signals.peers = peers.publish_run
    peers.start()
    return peers


def _sweep_stale_uploads(spool: Spool) -> None:
    """Temporary files of uploads that died with an earlier process (`minitowerd prune`
    sweeps them too, for an API that stays up)."""
    removed = spool.sweep()
    if removed:
        log.info(
            "removed stale upload files",
            extra={"files": len(removed), "bytes": sum(size for _, size in removed)},
        )


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
        for method, operation in path.items():
            operation.get("responses", {}).pop("422", None)
            _add_server_statuses(method, operation)
            operation.setdefault("parameters", []).append(
                {"$ref": "#/components/parameters/RequestId"}
            )
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {})[REQUEST_ID_HEADER] = {
                    "$ref": "#/components/headers/RequestId"
                }
    _forms_without_nulls(schema)
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
_WRITE_METHODS = ("post", "put", "patch", "delete")


def _add_server_statuses(method: str, operation: dict[str, Any]) -> None:
    """The answers any route can give, whatever its handler does: the server's limits
    (server.py, header_limits.py, limits.py) and the database's (storage_errors.py)."""
    answers = operation.setdefault("responses", {})

    def add(status: str, description: str, headers: dict[str, Any] | None = None) -> None:
        entry: dict[str, Any] = {"description": description, "content": _ERROR_CONTENT}
        if headers:
            entry["headers"] = headers
        answers.setdefault(status, entry)

    add("431", "header_too_large: too many headers, or a head over MINITOWER_MAX_HEADER_BYTES")
    add(
        "503",
        "server_busy (MINITOWER_MAX_CONNECTIONS open connections) or database_busy (the "
        "database's write lock was held past MINITOWER_DB_BUSY_TIMEOUT)",
        _RETRY_AFTER,
    )
    if "requestBody" in operation:
        add("413", "payload_too_large")
    if method in _WRITE_METHODS:
        add("507", "insufficient_storage: the server's disk is full")


def _forms_without_nulls(schema: dict[str, Any]) -> None:
    """A multipart form has no null: an optional field is one left out. FastAPI documents
    ``int | None`` fields as "integer or null", which invites clients to send ``null``."""
    components = schema.get("components", {}).get("schemas", {})
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("multipart/form-data", {}).get("schema", {}).get("$ref", "")
            form = components.get(ref.rpartition("/")[2], {})
            for name, field in form.get("properties", {}).items():
                variants = field.get("anyOf")
                if not variants:
                    continue
                kept = [v for v in variants if v.get("type") != "null"]
                if len(kept) == 1:
                    rest = {k: v for k, v in field.items() if k not in ("anyOf", "default")}
                    form["properties"][name] = {**kept[0], **rest}
