"""The one error shape of the API: ``{"error": {"code", "message", "details"?}}``.

Every failure, including FastAPI's own validation and routing errors, leaves through
these handlers, so clients never see a stack trace or a 422.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from minitower_api.storage_errors import install_storage_error_handlers
from minitower_shared.schemas import ErrorResponse

log = logging.getLogger("minitower.api")


class ApiError(Exception):
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


def invalid(message: str, details: list[dict[str, Any]] | None = None) -> ApiError:
    return ApiError(400, "invalid_request", message, details)


def unauthorized(message: str = "missing or invalid token") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


def gone(message: str = "the lease is gone: it expired, finished or was reassigned") -> ApiError:
    return ApiError(410, "gone", message)


# How long a caller over a per-token stream cap should wait: streams end within seconds
# to minutes, so a short wait and a retry is the normal way through.
RETRY_AFTER_SECONDS = 5


def too_many_requests(message: str) -> ApiError:
    return ApiError(
        429, "too_many_requests", message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def insufficient_storage(message: str) -> ApiError:
    """The server's disk is full: nothing was kept, and the same request succeeds once an
    operator frees space (deploy/runbooks/disk-full.md)."""
    return ApiError(507, "insufficient_storage", message)


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
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
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

    install_storage_error_handlers(app)

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
