"""The database refusing work is the server's condition, never a 500: a lock held past
the busy timeout answers 503 ``database_busy`` with ``Retry-After``, and a full database
507 ``insufficient_storage``; the API serves again once the condition passes."""

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from minitower_api.errors import install_error_handlers
from minitower_api.storage_errors import RETRY_AFTER_SECONDS
from minitower_shared.db import create_db_engine, write_session
from tests.support.api_assertions import expect_error
from tests.support.clients import TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN

pytestmark = pytest.mark.sqlite_only("holds SQLite's write lock and fills a small SQLite file")


def test_a_lock_held_past_the_busy_timeout_answers_503_then_the_api_recovers(
    make_client: ClientFactory, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(db_busy_timeout=0.3)
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    # Never used yet: its first use records last_used_at, a write the lock refuses.
    fresh = check(team.post("/api/v1/tokens", json={"name": "fresh"}), 201)["token"]
    with closing(sqlite3.connect(db_path, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.WARNING, logger="minitower.api"):
            refused = team.post("/api/v1/tokens", json={"name": "during the lock"})
        error = expect_error(refused, 503, "database_busy")
        assert "MINITOWER_DB_BUSY_TIMEOUT" in error["message"]
        assert refused.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        # Reads never wait for the write lock in WAL mode: the health check stays green.
        check(client.get("/ready"), 200)
        # Nor does an authenticated read: recording the token's use is bookkeeping.
        read = client.get("/api/v1/apps", headers={"Authorization": f"Bearer {fresh}"})
        check(read, 200)
        holder.execute("COMMIT")
    busy = [r for r in caplog.records if r.getMessage() == "database busy"]
    assert [(r.method, r.path) for r in busy] == [("POST", "/api/v1/tokens")]  # type: ignore[attr-defined]
    created = check(team.post("/api/v1/tokens", json={"name": "after the lock"}), 201)
    names = [t["name"] for t in check(team.get("/api/v1/tokens"), 200)["tokens"]]
    assert names == ["bootstrap", "fresh", created["name"]]


def _app_over(engine: Engine) -> FastAPI:
    """A bare app with the API's error handlers and one write route: the API's own routes
    cannot be made to fill a database without filling the disk."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    def write(size: int) -> dict[str, Any]:
        with write_session(engine) as session:
            session.execute(
                text("INSERT INTO blobs (body) VALUES (zeroblob(:size))"), {"size": size}
            )
        return {"written": size}

    @app.post("/broken")
    def broken() -> dict[str, Any]:
        with write_session(engine) as session:
            session.execute(text("INSERT INTO no_such_table VALUES (1)"))
        return {}

    return app


@pytest.fixture
def capped_engine(tmp_path: Path) -> Iterator[Engine]:
    """A database that may not grow past 40 pages (160 KiB): SQLite's own SQLITE_FULL."""
    engine = create_db_engine(tmp_path / "capped.db", pool_size=1)

    @event.listens_for(engine, "connect")
    def _cap(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA max_page_count=40")

    with write_session(engine) as session:
        session.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)"))
    yield engine
    engine.dispose()


def test_a_full_database_answers_507_and_other_database_errors_stay_500(
    capped_engine: Engine,
) -> None:
    with TestClient(_app_over(capped_engine), raise_server_exceptions=False) as client:
        assert client.post("/write", params={"size": 1000}).status_code == 200
        expect_error(client.post("/write", params={"size": 1 << 20}), 507, "insufficient_storage")
        # Nothing of the refused write stays; small writes still fit.
        assert client.post("/write", params={"size": 1000}).status_code == 200
        error = expect_error(client.post("/broken"), 500, "internal")
        assert "no_such_table" not in error["message"]
