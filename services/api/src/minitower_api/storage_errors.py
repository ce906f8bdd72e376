"""The database refusing work: a lock held past the busy timeout, or no room left.

Both are the server's condition, not a bug in the request: "database is locked" answers
503 ``database_busy`` with ``Retry-After`` (a client that retries later gets through once
the lock holder lets go), and "database or disk is full" answers 507
``insufficient_storage``. On PostgreSQL the same conditions are told by SQLSTATE: a lock
or statement timeout, a deadlock or a serialization failure is busy, a full disk is
full. Any other ``OperationalError`` stays a 500. The handler that
answers so is errors.py's; this module only tells the conditions apart.
"""

import sqlite3

from sqlalchemy.exc import OperationalError

# Seconds a client should wait before retrying a request that met a held lock: the
# request already waited the whole busy timeout, so the holder is a long transaction
# (a backup, a migration, a stuck process) rather than ordinary contention.
RETRY_AFTER_SECONDS = 5

_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_FULL = {"SQLITE_FULL"}
# lock_not_available, query_canceled (statement_timeout), serialization_failure,
# deadlock_detected; disk_full, insufficient_resources.
_PG_BUSY = {"55P03", "57014", "40001", "40P01"}
_PG_FULL = {"53100", "53000"}


def sqlite_condition(exc: OperationalError) -> str | None:
    """``busy``, ``full``, or None for any other operational error."""
    original = exc.orig
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is not None:  # psycopg: PostgreSQL
        return "busy" if sqlstate in _PG_BUSY else "full" if sqlstate in _PG_FULL else None
    name = getattr(original, "sqlite_errorname", "") if isinstance(original, sqlite3.Error) else ""
    # Extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED_SHAREDCACHE) share the prefix.
    primary = "_".join(str(name).split("_")[:2])
    message = str(original).lower()
    if primary in _BUSY or "database is locked" in message or "database is busy" in message:
        return "busy"
    if primary in _FULL or "database or disk is full" in message:
        return "full"
    return None
