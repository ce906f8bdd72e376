"""The audit log's client address behind a proxy, against a live ``minitowerd``: the
address from X-Forwarded-For only when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS),
the same rule the console and the sign-in throttle follow; otherwise the peer's."""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.support.clients import TeamClient, check
from tests.support.databases import copy_database
from tests.support.processes import start_api
from tests.support.tokens import BOOTSTRAP_TOKEN

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("trusted", "expected"), [("127.0.0.1", "203.0.113.7"), ("192.0.2.1", "127.0.0.1")]
)
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    tmp_path: Path, migrated_template: Path, trusted: str, expected: str
) -> None:
    db_path = copy_database(migrated_template, tmp_path)
    env = {"MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN, "FORWARDED_ALLOW_IPS": trusted}
    api = start_api(tmp_path, db_path, env)
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "via-proxy"}
            check(team.post("/api/v1/apps", json={"slug": "etl"}, headers=forwarded), 201)
    finally:
        api.stop()
    with closing(sqlite3.connect(db_path)) as db:
        found = db.execute(
            "SELECT client_address, request_id FROM audit_event WHERE action = 'app.create'"
        ).fetchall()
    assert found == [(expected, "via-proxy")]
