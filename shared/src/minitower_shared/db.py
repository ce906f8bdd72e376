"""SQLite engine and transactions.

pysqlite's own transaction handling opens transactions lazily and upgrades a read lock
to a write lock mid-transaction, which deadlocks two writers (both get SQLITE_BUSY and
the busy timeout cannot help). We take control instead: autocommit at the driver level
and an explicit ``BEGIN IMMEDIATE`` for every write transaction, so a writer waits for
the lock up front, inside the busy timeout. Read transactions use a plain ``BEGIN``,
which in WAL mode never blocks and is never blocked by writers.
"""

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, create_engine

from minitower_shared.db_limits import DEFAULT_BUSY_TIMEOUT

log = logging.getLogger("minitower.db")
_WRITE_LOCKS: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()
_BEGIN_OPTION = "minitower_begin"


def create_db_engine(
    db_path: str | Path,
    *,
    pool_size: int = 20,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    slow_query_threshold: float | None = None,
) -> Engine:
    """An engine for the SQLite file at ``db_path`` (its folder is created if missing).

    A writer waits up to ``busy_timeout`` seconds for the lock. With
    ``slow_query_threshold`` (seconds; 0 logs every statement), each statement that takes
    longer is logged as one ``slow query`` event.
    """
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    busy_timeout_ms = round(busy_timeout * 1000)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": busy_timeout},
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        # Errors quote the statement; its parameters hold run input, log lines and token
        # hashes, which must not reach the logs with them.
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    if slow_query_threshold is not None:
        _log_slow_queries(engine, slow_query_threshold)
    _WRITE_LOCKS[engine] = threading.Lock()
    return engine


_STARTED = "minitower_query_started"


def _log_slow_queries(engine: Engine, threshold: float) -> None:
    """One log event per statement slower than ``threshold`` seconds. The statement is
    logged without its parameters: they may hold token hashes or a run's input."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.get(_STARTED)
        if not started:
            return
        elapsed = time.perf_counter() - started.pop()
        if elapsed >= threshold:
            log.warning(
                "slow query",
                extra={
                    "duration_ms": round(elapsed * 1000, 1),
                    "statement": " ".join(statement.split()),
                },
            )

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        # A statement that raised never reaches after_cursor_execute: drop its start.
        connection = context.connection
        if connection is not None and connection.info.get(_STARTED):
            connection.info[_STARTED].pop()


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction already holds SQLite's write lock when it is yielded,
    so that ``utcnow()`` read inside it is later than every other writer's commit.

    Commits on success and rolls back on any exception.
    """
    # Writers of one process queue on a lock first: SQLite's busy handler makes waiting
    # writers sleep and retry with growing back-off, which serves them unfairly and turns
    # a few milliseconds of contention into seconds of tail latency. Writers in other
    # processes (the reaper) still meet at SQLite's lock, within the busy timeout.
    with (
        _WRITE_LOCKS[engine],
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.connection()
        yield session


def reader(engine: Engine) -> Engine:
    """The same engine, but its transactions begin deferred and never take the write lock."""
    return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads only."""
    with Session(reader(engine), expire_on_commit=False) as session, session.begin():
        yield session
