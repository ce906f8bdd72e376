"""The audit log's client address behind a proxy, against a live ``minitowerd``: the
address from X-Forwarded-For only when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS),
the same rule the console and the sign-in throttle follow; otherwise the peer's."""

from pathlib import Path

import pytest

from tests.support.clients import TeamClient, check
from tests.support.databases import Database
from tests.support.processes import start_api
from tests.support.rows import Rows
from tests.support.tokens import BOOTSTRAP_TOKEN

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("trusted", "expected"), [("127.0.0.1", "203.0.113.7"), ("192.0.2.1", "127.0.0.1")]
)
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    tmp_path: Path, own_database: Database, trusted: str, expected: str
) -> None:
    env = {"MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN, "FORWARDED_ALLOW_IPS": trusted}
    api = start_api(tmp_path, own_database, env)
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "via-proxy"}
            check(team.post("/api/v1/apps", json={"slug": "etl"}, headers=forwarded), 201)
    finally:
        api.stop()
    with Rows(own_database) as rows:
        created = rows.select("audit_event", "action = :action", action="app.create")
    found = [(row["client_address"], row["request_id"]) for row in created]
    assert found == [(expected, "via-proxy")]
