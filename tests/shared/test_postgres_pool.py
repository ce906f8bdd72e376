"""PostgreSQL's pooled connections are checked on checkout without a round trip each
(db.py, in place of pool_pre_ping): one the server closed is replaced before a request
draws it; one in steady use is not pinged; one that sat unused past the idle limit is.
Against a real PostgreSQL database in every pass (the session's cluster on PostgreSQL,
else one started for these tests)."""

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
