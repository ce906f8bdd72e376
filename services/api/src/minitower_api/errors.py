"""The one error shape of the API: ``{"error": {"code", "message", "details"?}}``.

Every failure, including FastAPI's own validation and routing errors, leaves through
these handlers, so clients never see a stack trace or a 422.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from minitower_api import storage_errors
from minitower_shared.schemas import ErrorResponse

log = logging.getLogger("minitower.api")


class HttpProblem(Exception):
    """Raised anywhere in a request: answered with its status and the error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def invalid(message: str, details: list[dict[str, Any]] | None = None) -> HttpProblem:
    return HttpProblem(400, "invalid_request", message, details)


def unauthorized(message: str = "missing or invalid token") -> HttpProblem:
    return HttpProblem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> HttpProblem:
    return HttpProblem(403, "forbidden", message)


def not_found(message: str) -> HttpProblem:
    return HttpProblem(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> HttpProblem:
    return HttpProblem(409, code, message)


def gone(message: str = "the lease is gone: it expired, finished or was reassigned") -> HttpProblem:
    return HttpProblem(410, "gone", message)


# How long a caller over a per-token stream cap should wait: streams end within seconds
# to minutes, so a short wait and a retry is the normal way through.
RETRY_AFTER_SECONDS = 5


def too_many_requests(message: str) -> HttpProblem:
    return HttpProblem(
        429, "too_many_requests", message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def insufficient_storage(message: str) -> HttpProblem:
    """The server's disk is full: nothing was kept, and the same request succeeds once an
    operator frees space (deploy/runbooks/disk-full.md)."""
    return HttpProblem(507, "insufficient_storage", message)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    429: "too_many_requests",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        details.append({"loc": loc, "message": str(err.get("msg", "invalid value"))})
    return details


def _validation_message(details: list[dict[str, Any]]) -> str:
    if not details:
        return "invalid request"
    first = details[0]
    where = ".".join(part for part in first["loc"] if part != "body") or "body"
    if first["message"].lower().startswith("json decode error"):
        return "the request body is not valid JSON"
    return f"{where}: {first['message']}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpProblem)
    async def _problem(_request: Request, exc: HttpProblem) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        return error_response(400, "invalid_request", _validation_message(details), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "internal" if exc.status_code >= 500 else "error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        if exc.status_code == 405:
            message = "this route does not take that method"
        if exc.status_code == 400:
            # Starlette reports an unreadable body (bad JSON, broken multipart) this way.
            message = f"invalid request: {message}"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        ids = {"method": request.method, "path": request.url.path}
        condition = storage_errors.sqlite_condition(exc)
        if condition == "busy":
            log.warning("database busy", extra=ids)
            return error_response(
                503,
                "database_busy",
                "the database stayed locked past MINITOWER_DB_BUSY_TIMEOUT; retry later",
                headers={"Retry-After": str(storage_errors.RETRY_AFTER_SECONDS)},
            )
        if condition == "full":
            log.error("database or disk is full", extra=ids)
            # Counted where the app is the API (it has services); the handlers also
            # serve bare apps built on the API's error handling.
            services = getattr(request.app.state, "services", None)
            if services is not None:
                services.metrics.storage_full.labels("database").inc()
            return error_response(
                507,
                "insufficient_storage",
                "the database's disk is full; the operator must free space",
            )
        log.exception("unhandled database error", extra=ids)
        return error_response(500, "internal", "internal error; see the server log")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged inside the request's context (access.py), so the line has its request_id.
        log.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
        return error_response(500, "internal", "internal error; see the server log")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code}
    for status, code in {
        400: "invalid_request",
        401: "unauthorized",
        404: "not_found",
        500: "internal",
    }.items()
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route adds to the common ones."""
    described = {
        403: "forbidden",
        409: "conflict, slug_taken, name_taken or app_disabled",
        410: "gone: the lease expired, finished or was reassigned",
        413: "payload_too_large",
        429: "too_many_requests: too many open streams for this token (see Retry-After)",
        507: "insufficient_storage: the server's disk is full",
    }
    extra: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse, "description": described[s]} for s in statuses
    }
    return {**ERROR_RESPONSES, **extra}
