"""The PostgreSQL engine of db.py. Its pooled connections are checked on checkout
without a round trip each (in place of pool_pre_ping): one the server closed is
replaced before a request draws it; one in steady use is not pinged; one that sat
unused past the idle limit is. Its read sessions run in autocommit (db.reader): no
``BEGIN`` and ``COMMIT`` round trips around reads, which READ COMMITTED gave nothing; a
pooled connection that served reads is back in a transaction for the next write
session, and a lock cannot be taken in a read session, where it would end with its own
statement. Against a real PostgreSQL database in every pass (the session's cluster on
PostgreSQL, else one started for these tests)."""

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from minitower_shared import db
from tests.support.databases import libpq_url


@pytest.fixture
def engine(empty_postgres: str) -> Iterator[Engine]:
    # One pooled connection: each checkout draws the one the last returned.
    engine = db.create_db_engine(empty_postgres, pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    done: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        done.append(dbapi_conn)
        return ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return done


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        pid: int = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return pid


def test_a_connection_the_server_closed_is_replaced_before_it_is_used(
    engine: Engine, empty_postgres: str, pings: list[Any]
) -> None:
    first = _backend(engine)
    with psycopg.connect(libpq_url(empty_postgres), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [first]).fetchone():
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.05)
    assert _backend(engine) != first
    assert len(pings) == 1


def test_a_connection_in_steady_use_is_not_pinged(engine: Engine, pings: list[Any]) -> None:
    backends = {_backend(engine) for _ in range(20)}
    assert len(backends) == 1
    assert pings == []


def test_a_connection_unused_past_the_idle_limit_is_pinged(
    engine: Engine, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(engine)
    monkeypatch.setattr(db, "_PING_IDLE_AFTER", 0.0)
    assert _backend(engine) == first
    assert len(pings) == 1


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
