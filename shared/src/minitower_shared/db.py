"""Engines and transactions, on SQLite (a file: the default) or PostgreSQL (a URL).

**SQLite.** pysqlite's own transaction handling opens transactions lazily and upgrades
a read lock to a write lock mid-transaction, which deadlocks two writers (both get
SQLITE_BUSY and the busy timeout cannot help). We take control instead: autocommit at
the driver level and an explicit ``BEGIN IMMEDIATE`` for every write transaction, so a
writer waits for the lock up front, inside the busy timeout. Read transactions use a
plain ``BEGIN``, which in WAL mode never blocks and is never blocked by writers.

**PostgreSQL** (``MINITOWER_DATABASE_URL``, psycopg 3, READ COMMITTED). SQLite's one
write lock gave every write transaction two things: nothing else wrote while it ran
(so whatever it read stayed true until its commit), and ``utcnow()`` read inside it was
later than every other commit. PostgreSQL runs writers side by side, so each guarantee
the store relied on is given another way:

- *One transition, one conditional UPDATE.* ``UPDATE … WHERE id = ? AND status = ?``
  waits for a concurrent writer of the row and then evaluates its condition again on
  the row as that writer left it: the loser of a race matches nothing, as on SQLite.
- *Invariants in the schema.* The partial unique indexes (one live attempt per run and
  per runner, one fire per schedule time) hold whatever the interleaving: a bug or a
  race that would break one fails the transaction instead.
- *Decisions over several rows* take a lock first: the row they are about (``FOR
  UPDATE``: a run before its attempt, always in that order, so two transitions of one
  run cannot deadlock; a runner's row for its one lease), or, where no row stands for
  the decision, a transaction-scoped advisory lock (:func:`serialize`: the concurrency
  limits at lease time, the next ``run_no`` of an app). Reads in READ COMMITTED see
  every commit made before the statement, so what is read after the lock is current.
- *The queue pick* locks each app's best run with ``FOR UPDATE SKIP LOCKED`` and takes
  one: racing leases (several API replicas) pass over each other's candidates instead
  of queueing behind one row. A racer may so find nothing while runs stay queued, so a
  lease that left runs it locked queued wakes the waiting runners once it has
  committed (``Granted.passed_over``). SQLite's compiler leaves the clause out, so its
  SQL is unchanged.
- *Time.* ``utcnow()`` read in a transaction is no longer later than every other
  commit. Nothing compares one transaction's clock with another's commit order: lease
  expiry is decided by each statement's own condition (``lease_expires_at > :now``),
  and ordering in pages is by id or by recorded time, never by commit order.

- *Reads* (:func:`read_session`) run in autocommit, without a transaction around
  them: in READ COMMITTED it would give them nothing (each statement has its own
  snapshot) but two more round trips.

Text cannot hold NUL on PostgreSQL: each one is stored as U+FFFD (the replacement
character) instead. Each connection runs in UTC (stored times are UTC), with
``lock_timeout`` set from the busy timeout (how long a writer waits for a lock, as
SQLite's busy timeout) and an optional ``statement_timeout``. The SQL the two engines
spell differently is in :mod:`minitower_shared.dialect`.
"""

import logging
import select as io_select
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown
from sqlalchemy import Engine, event, exc, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, create_engine

from minitower_shared.db_limits import DEFAULT_BUSY_TIMEOUT

log = logging.getLogger("minitower.db")
_WRITE_LOCKS: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()
_BEGIN_OPTION = "minitower_begin"
# Seconds to wait for PostgreSQL to accept a connection.
_CONNECT_TIMEOUT = 10
# Seconds a pooled PostgreSQL connection may sit unused before its next checkout asks
# the server whether it is still there (see _check_on_checkout).
_PING_IDLE_AFTER = 5.0
_RETURNED_AT = "minitower_returned_at"


def is_database_url(database: str | Path) -> bool:
    """Whether ``database`` names a server (a URL) rather than a SQLite file."""
    return isinstance(database, str) and "://" in database


def create_db_engine(
    database: str | Path,
    *,
    pool_size: int = 20,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    slow_query_threshold: float | None = None,
    statement_timeout: float | None = None,
) -> Engine:
    """An engine for ``database``: a PostgreSQL URL (``postgresql+psycopg://…``), else
    the path of a SQLite file (its folder is created if missing).

    A writer waits up to ``busy_timeout`` seconds for a lock. On PostgreSQL a statement
    is cancelled after ``statement_timeout`` seconds (None: never). With
    ``slow_query_threshold`` (seconds; 0 logs every statement), each statement that takes
    longer is logged as one ``slow query`` event.
    """
    if is_database_url(database):
        engine = _postgresql_engine(
            postgresql_url(str(database)), pool_size, busy_timeout, statement_timeout
        )
    else:
        engine = _sqlite_engine(Path(database), pool_size, busy_timeout)
    if slow_query_threshold is not None:
        _log_slow_queries(engine, slow_query_threshold)
    return engine


def postgresql_url(database_url: str) -> URL:
    """The URL with psycopg 3 as its driver; refuses any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.get_backend_name()}://…")
    return url.set(drivername="postgresql+psycopg")


def _sqlite_engine(path: Path, pool_size: int, busy_timeout: float) -> Engine:
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

    _WRITE_LOCKS[engine] = threading.Lock()
    return engine


def _postgresql_engine(
    url: URL, pool_size: int, busy_timeout: float, statement_timeout: float | None
) -> Engine:
    settings = {
        "timezone": "UTC",
        "lock_timeout": f"{round(busy_timeout * 1000)}ms",
        "statement_timeout": f"{round(statement_timeout * 1000)}ms" if statement_timeout else "0",
    }
    engine = create_engine(
        url,
        connect_args={
            "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
            "connect_timeout": _CONNECT_TIMEOUT,
            "application_name": "minitower",
        },
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=pool_size,
        # Not pool_pre_ping: a round trip per checkout was a tenth of the API's CPU per
        # run. _check_on_checkout keeps its guarantee for less.
        pool_pre_ping=False,
        isolation_level="READ COMMITTED",
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.adapters.register_dumper(str, _NulFreeStrDumper)

    _check_on_checkout(engine)
    return engine


def _check_on_checkout(engine: Engine) -> None:
    """Hand out no pooled connection the server has closed (a restart, a proxy's idle
    timeout), as ``pool_pre_ping`` would, without its round trip on every checkout.

    A server that ends a session says so on its socket (the termination notice, then
    end-of-file), so an idle connection whose socket has something to read is suspect,
    and one that sat unused past ``_PING_IDLE_AFTER`` may have been dropped without a
    word (a NAT or a firewall): those two are pinged. A ping that finds the server gone
    invalidates every connection of the pool opened before it (they all met the same
    restart), and the checkout is served by a new one. A connection in steady use
    costs one ``poll`` of its socket."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None:  # opened for this checkout
            return
        if time.monotonic() - returned < _PING_IDLE_AFTER and not _has_input(dbapi_conn):
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_conn, None):
                raise exc.InvalidatePoolError(str(error)) from error
            raise


def _has_input(dbapi_conn: Any) -> bool:
    """Whether the idle connection's socket is readable (or the connection is closed):
    the server sent something nobody asked for."""
    if dbapi_conn.closed:
        return True
    try:
        poller = io_select.poll()
        poller.register(dbapi_conn.pgconn.socket, io_select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


class _NulFreeStrDumper(StrDumperUnknown):
    """psycopg's default dumper of ``str``, but NUL becomes U+FFFD: PostgreSQL's text
    cannot hold NUL, and a workload's log line or error message with one must be kept,
    not refused (SQLite stores it as it is)."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def serialize(session: Session, *keys: str) -> None:
    """Hold the named locks until the transaction ends, so that a decision over several
    rows (a count against a limit, the next number of a sequence) is taken by one
    transaction at a time. Nothing to do on SQLite: its write lock serialises writers.
    Keys are taken in sorted order, so two callers never wait for each other in a circle."""
    if not is_postgresql(session):
        return
    # In a read session (autocommit) each lock would end with its own statement.
    assert not session.connection().connection.dbapi_connection.autocommit, "not in a read session"  # type: ignore[union-attr]
    for key in sorted(set(keys)):
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


# The LISTEN/NOTIFY channels of the API processes on one PostgreSQL database
# (minitower_api.peer_signals): runs queued, and a run's news for its log followers.
QUEUE_CHANNEL = "minitower_queue"
RUN_CHANNEL = "minitower_run"


def announce_queued(session: Session) -> None:
    """Once this transaction commits, every API process of the database hears that runs
    were queued, and its long-polling runners look at once (PostgreSQL). The scheduler
    and the reaper queue runs too; on SQLite the API's periodic re-check finds them."""
    if is_postgresql(session):
        session.execute(select(func.pg_notify(QUEUE_CHANNEL, "store")))


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
    so that ``utcnow()`` read inside it is later than every other writer's commit (on
    PostgreSQL, a READ COMMITTED transaction: see the module's docstring).

    Commits on success and rolls back on any exception.
    """
    # Writers of one process queue on a lock first: SQLite's busy handler makes waiting
    # writers sleep and retry with growing back-off, which serves them unfairly and turns
    # a few milliseconds of contention into seconds of tail latency. Writers in other
    # processes (the reaper) still meet at SQLite's lock, within the busy timeout.
    lock: AbstractContextManager[Any] = _WRITE_LOCKS.get(engine) or nullcontext()
    with (
        lock,
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.connection()
        yield session


def reader(engine: Engine) -> Engine:
    """The same engine for reads only. On SQLite its transactions begin deferred and
    never take the write lock. On PostgreSQL its statements run in autocommit: in READ
    COMMITTED each statement sees its own snapshot whether or not a transaction
    surrounds it, so around reads a transaction gave nothing but its ``BEGIN`` and
    ``COMMIT``: two round trips per read, one in eight of a trivial run's statements
    (bench/postgres_statements.py --trivial-runs). psycopg switches
    autocommit on the client, without a round trip."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads only: no lock taken in it lasts beyond its statement."""
    with Session(reader(engine), expire_on_commit=False) as session, session.begin():
        yield session
