"""An API over PostgreSQL outlives a restart of the server: the pooled connections the
restart closed are never handed to a request (db.py checks them on checkout without
pool_pre_ping's round trip), so the first requests after it succeed. Runs on a
throwaway cluster of its own in every pass."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import Template
from tests.support.postgres import PostgresCluster, available, running_cluster
from tests.support.processes import LiveApi, start_api
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL 15 is not installed")


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def api(tmp_path: Path, cluster: PostgresCluster) -> Iterator[LiveApi]:
    database = Template.migrate(tmp_path, cluster).copy(tmp_path)
    env = {
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
    }
    workdir = tmp_path / "api"
    workdir.mkdir()
    api = start_api(workdir, database, env)
    try:
        yield api
    finally:
        api.stop()


def test_requests_after_a_server_restart_all_succeed(
    api: LiveApi, cluster: PostgresCluster
) -> None:
    with api.client() as http:
        team = TeamClient.bootstrap(http, "restarts", BOOTSTRAP_TOKEN)
        runner = RunnerClient.register(http, "restart-runner", REGISTRATION_TOKEN)
        # Several pooled connections, each used moments ago (none idle long enough to
        # be pinged for that reason alone).
        for _ in range(20):
            assert runner.lease() is None
            check(http.get("/api/v1/runs", headers=team.headers), 200)
        cluster.restart()
        for _ in range(20):
            assert runner.lease() is None
            check(http.get("/api/v1/runs", headers=team.headers), 200)
