"""Read sessions on PostgreSQL run in autocommit (db.reader): no ``BEGIN`` and
``COMMIT`` round trips around reads, which READ COMMITTED gave nothing. A pooled
connection that served reads is back in a transaction for the next write session, and a
lock cannot be taken in a read session, where it would end with its own statement.
Against a real PostgreSQL database in every pass (the session's cluster on PostgreSQL,
else one started for these tests)."""

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from minitower_shared import db
from tests.support.databases import libpq_url


@pytest.fixture
def engine(empty_postgres: str) -> Iterator[Engine]:
    # One pooled connection: a write session after a read draws the one the read used.
    engine = db.create_db_engine(empty_postgres, pool_size=1)
    yield engine
    engine.dispose()


def _state(empty_postgres: str, pid: int) -> str:
    """What the server says the backend is doing, asked from another connection."""
    with psycopg.connect(libpq_url(empty_postgres), autocommit=True) as admin:
        row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    assert row is not None
    return str(row[0])


def test_a_read_session_holds_no_transaction_between_its_statements(
    engine: Engine, empty_postgres: str
) -> None:
    with db.read_session(engine) as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert _state(empty_postgres, pid) == "idle"
        # Each statement its own transaction: its own start time, as READ COMMITTED's
        # per-statement snapshots were already.
        first = session.execute(text("SELECT now()")).scalar_one()
        session.execute(text("SELECT pg_sleep(0.01)"))
        assert session.execute(text("SELECT now()")).scalar_one() > first


def test_the_connection_is_in_a_transaction_again_for_the_next_write(
    engine: Engine, empty_postgres: str
) -> None:
    with db.read_session(engine) as session:
        read_pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with db.write_session(engine) as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert pid == read_pid, "the pool's one connection"
        assert _state(empty_postgres, pid) == "idle in transaction"
        session.execute(text("CREATE TABLE kept (n int)"))

    def failed_write() -> None:
        with db.write_session(engine) as session:
            session.execute(text("INSERT INTO kept VALUES (1)"))
            raise RuntimeError("a failed write rolls back whole")

    with pytest.raises(RuntimeError):
        failed_write()
    with db.read_session(engine) as session:
        assert session.execute(text("SELECT count(*) FROM kept")).scalar_one() == 0


def test_a_lock_cannot_be_taken_in_a_read_session(engine: Engine) -> None:
    with db.read_session(engine) as session, pytest.raises(AssertionError, match="read session"):
        db.serialize(session, "any-key")
    with db.write_session(engine) as session:
        db.serialize(session, "any-key")  # held until this transaction ends
