"""Fixtures of the API tier.

One in-process API serves the whole tier (``client``), over a real SQLite file migrated
once; every test that uses it starts from an empty database and object store. On top:
apps built with other settings over the same database (``make_client``), a deployed app,
a running run, a member token, an app whose leases expire in half a second, and a
module-wide sandbox for the many tests that only send requests the API must refuse."""

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.databases import Database, Template, sqlite_file
from tests.support.inprocess_api import (
    SHORT_TTL,
    ClientFactory,
    Sandbox,
    ShortTtl,
    api_settings,
    empty_api,
)
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN


@pytest.fixture(scope="session")
def session_settings(
    tmp_path_factory: pytest.TempPathFactory, template_database: Template
) -> ApiSettings:
    return api_settings(tmp_path_factory.mktemp("api"), template_database)


@pytest.fixture(scope="session")
def session_client(session_settings: ApiSettings) -> Iterator[TestClient]:
    """One in-process API for the whole tier. A FastAPI app builds each route's
    validation models on its first request and SQLAlchemy compiles each statement once
    per engine: a new app per test would spend most of the tier's time on that."""
    with TestClient(create_app(session_settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def settings(session_settings: ApiSettings) -> ApiSettings:
    """The tier's API settings (overrides the root fixture); every test that uses them,
    directly or through ``client``, starts on an empty database and object store."""
    empty_api(session_settings)
    return session_settings


@pytest.fixture
def database(settings: ApiSettings) -> Database:
    """The tier's database (overrides the root fixture): the one the API serves."""
    return settings.database


@pytest.fixture
def db_path(database: Database) -> Path:
    return sqlite_file(database)


@pytest.fixture
def own_database(tmp_path: Path, template_database: Template) -> Iterator[Database]:
    """A database of this test's own on the engine under test (not the tier's), for a
    test that starts its own API over it: a live process, or a restart."""
    database = template_database.copy(tmp_path)
    yield database
    template_database.drop(database)


@pytest.fixture
def client(settings: ApiSettings, session_client: TestClient) -> TestClient:
    """The tier's in-process API (overrides the root fixture), emptied for this test."""
    return session_client


@pytest.fixture
def make_client(settings: ApiSettings) -> Iterator[ClientFactory]:
    """Build another in-process API over the same database, with settings overridden."""
    with ExitStack() as stack:

        def factory(**overrides: Any) -> TestClient:
            app = create_app(settings.model_copy(update=overrides))
            return stack.enter_context(TestClient(app, raise_server_exceptions=False))

        yield factory


@pytest.fixture
def deployed(team: TeamClient, hello_archive: bytes) -> dict[str, Any]:
    """Version 1 of the app ``hello`` (the conftest's Towerfile-driven archive)."""
    return team.deploy("hello", hello_archive)


@pytest.fixture
def running(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> tuple[dict[str, Any], Lease]:
    """A run of ``hello`` that ``runner`` has leased and started."""
    run = team.create_run("hello")
    lease = runner.lease()
    assert lease is not None and lease.run_id == run["run_id"]
    check(runner.start(lease), 200)
    return run, lease


@pytest.fixture
def member(team: TeamClient) -> TeamClient:
    """A member (non-admin) token of the ``team`` fixture's team."""
    body = check(team.post("/api/v1/tokens", json={"name": "ci", "role": "member"}), 201)
    return TeamClient(http=team.http, token=body["token"], team_id=team.team_id)


@pytest.fixture
def short_ttl(make_client: ClientFactory, hello_archive: bytes) -> ShortTtl:
    """An API whose leases live ``SHORT_TTL`` seconds, with ``hello`` deployed."""
    client = make_client(lease_ttl=SHORT_TTL)
    team = TeamClient.bootstrap(client, "shortttl", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    runner = RunnerClient.register(client, "ttl-runner", REGISTRATION_TOKEN)
    return ShortTtl(client=client, team=team, runner=runner, ttl=SHORT_TTL)


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, template_database: Template
) -> Iterator[Sandbox]:
    """Team ``acme`` with app ``hello`` (version 1); run 1 completed with log lines 1‥3,
    run 2 running on ``runner``, run 3 leased (not started) by ``runner2``. Leases last
    an hour, so the module's tests can never outlive them."""
    settings = api_settings(tmp_path_factory.mktemp("sandbox"), template_database)
    settings = settings.model_copy(update={"lease_ttl": 3600.0})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
        team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": ""}))
        runner = RunnerClient.register(client, "runner-1", REGISTRATION_TOKEN)
        runner2 = RunnerClient.register(client, "runner-2", REGISTRATION_TOKEN)
        runs = [team.create_run("hello") for _ in range(3)]
        completed_lease = runner.lease()
        assert completed_lease is not None and completed_lease.run_id == runs[0]["run_id"]
        check(runner.start(completed_lease), 200)
        lines = [{"seq": n, "stream": "stdout", "line": f"line {n}"} for n in (1, 2, 3)]
        check(runner.logs(completed_lease, lines), 200)
        check(runner.result(completed_lease, "completed", exit_code=0), 200)
        lease = runner.lease()
        assert lease is not None and lease.run_id == runs[1]["run_id"]
        check(runner.start(lease), 200)
        lease2 = runner2.lease()
        assert lease2 is not None and lease2.run_id == runs[2]["run_id"]
        yield Sandbox(
            client=client,
            team=team,
            runner=runner,
            runner2=runner2,
            completed=team.run(runs[0]["run_id"]),
            completed_lease=completed_lease,
            running=team.run(runs[1]["run_id"]),
            lease=lease,
            leased=team.run(runs[2]["run_id"]),
            lease2=lease2,
        )
