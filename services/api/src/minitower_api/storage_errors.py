"""The database refusing work: SQLite's lock held past the busy timeout, or no room left.

Both are the server's condition, not a bug in the request: "database is locked" answers
503 ``database_busy`` with ``Retry-After`` (a client that retries later gets through once
the lock holder lets go), and "database or disk is full" answers 507
``insufficient_storage``. Any other ``OperationalError`` stays a 500.
"""

import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

log = logging.getLogger("minitower.api")

# Seconds a client should wait before retrying a request that met a held lock: the
# request already waited the whole busy timeout, so the holder is a long transaction
# (a backup, a migration, a stuck process) rather than ordinary contention.
RETRY_AFTER_SECONDS = 5

_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_FULL = {"SQLITE_FULL"}


def sqlite_condition(exc: OperationalError) -> str | None:
    """``busy``, ``full``, or None for any other operational error."""
    original = exc.orig
    name = getattr(original, "sqlite_errorname", "") if isinstance(original, sqlite3.Error) else ""
    # Extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED_SHAREDCACHE) share the prefix.
    primary = "_".join(str(name).split("_")[:2])
    message = str(original).lower()
    if primary in _BUSY or "database is locked" in message or "database is busy" in message:
        return "busy"
    if primary in _FULL or "database or disk is full" in message:
        return "full"
    return None


def install_storage_error_handlers(app: FastAPI) -> None:
    # Imported here: errors.py installs these handlers, and this module needs its helper.
    from minitower_api.errors import error_response

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        ids = {"method": request.method, "path": request.url.path}
        condition = sqlite_condition(exc)
        if condition == "busy":
            log.warning("database busy", extra=ids)
            return error_response(
                503,
                "database_busy",
                "the database stayed locked past MINITOWER_DB_BUSY_TIMEOUT; retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
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
