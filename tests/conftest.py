"""Fixtures and hooks shared by every test tier: temporary databases, the in-process API,
a live API process, archives and clients that act as a team or a runner; the leftover-
process check, the xdist locks and the docker skip. Their helpers are in tests/support."""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.db import create_db_engine
from minitower_shared.migrate import upgrade_to_head
from tests.support.api_group import LiveApiGroup, start_api_group
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient
from tests.support.databases import (
    ON_POSTGRESQL,
    Database,
    Template,
    database_settings,
    object_store,
    sqlite_file,
)
from tests.support.docker_engine import docker_available, docker_required
from tests.support.exclusive import held
from tests.support.leftovers import is_xdist_controller, kill_leftover_processes
from tests.support.postgres import PostgresCluster, running_cluster
from tests.support.postgres import available as postgres_available
from tests.support.processes import LiveApi, start_api
from tests.support.rows import Rows
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

_LOCKS = pytest.StashKey[Path]()
_WORKER_LEFTOVERS = pytest.StashKey[list[str]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _LOCKS in config.stash:
        shutil.rmtree(config.stash[_LOCKS], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(controller) Tell each worker where the run's locks are: a folder of its own."""
    if _LOCKS not in node.config.stash:
        node.config.stash[_LOCKS] = Path(tempfile.mkdtemp(prefix="minitower-test-locks-"))
    node.workerinput["minitower_locks"] = str(node.config.stash[_LOCKS])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """(controller) Gather what each worker's session end found left running."""
    output = getattr(node, "workeroutput", {})
    node.config.stash.setdefault(_WORKER_LEFTOVERS, []).extend(
        f"  {node.gateway.id} pid {pid}: {cmd}"
        for pid, cmd in output.get("minitower_leftovers", [])
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session when the tests left processes running, naming them (they are
    killed). Under pytest-xdist each worker checks its own children and the controller
    fails the run on what the workers report."""
    config = session.config
    if is_xdist_controller(config):
        lines = config.stash.get(_WORKER_LEFTOVERS, [])
    else:
        left = kill_leftover_processes()
        workeroutput = getattr(config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports them
            workeroutput["minitower_leftovers"] = sorted(left.items())
            return
        lines = [f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items())]
    if not lines:
        return
    listed = "\n".join(lines)
    config.get_terminal_writer().line(
        f"\nFAILED: the suite left {len(lines)} process(es) running (now killed):\n{listed}",
        red=True,
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """Under pytest-xdist, tests marked ``serial`` run alone and tests marked
    ``exclusive(name)`` one of a name at a time (tests/support/exclusive.py). Outermost,
    so that the wait is not counted in the test's timeout."""
    folder = getattr(item.config, "workerinput", {}).get("minitower_locks")
    if folder is None:  # one process runs the tests one after the other
        return (yield)
    names = [name for mark in item.iter_markers("exclusive") for name in mark.args]
    serial = item.get_closest_marker("serial") is not None
    with held(Path(folder), serial, names):
        return (yield)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``docker`` skip where no engine runs, except where
    MINITOWER_REQUIRE_DOCKER=1 (CI) makes a missing engine a failure. Tests marked
    ``sqlite_only(reason)`` skip on PostgreSQL, saying why."""
    sqlite_only = item.get_closest_marker("sqlite_only")
    if ON_POSTGRESQL and sqlite_only is not None:
        pytest.skip(f"SQLite only: {sqlite_only.args[0]}")
    if item.get_closest_marker("docker") is None or docker_available():
        return
    if docker_required():
        pytest.fail("MINITOWER_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`")
    pytest.skip("no Docker engine here (`docker info` fails); set up Docker to run this test")


@pytest.fixture
def hello_archive() -> bytes:
    return make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": "print('hi')\n"})


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head for the whole session (the tiers that always
    run on SQLite copy it; the others use ``template_database``)."""
    path = tmp_path_factory.mktemp("template") / "minitower.db"
    upgrade_to_head(path)
    return path


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | None]:
    """The session's PostgreSQL cluster under MINITOWER_TEST_DATABASE=postgresql."""
    if not ON_POSTGRESQL:
        yield None
        return
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def any_postgres_cluster(
    postgres_cluster: PostgresCluster | None,
) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster in every pass, for the tests about PostgreSQL itself: the
    session's under MINITOWER_TEST_DATABASE=postgresql, else one of its own, started on
    first use. Skipped where PostgreSQL is not installed (MINITOWER_TEST_PG_BIN)."""
    if postgres_cluster is not None:
        yield postgres_cluster
        return
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed here (scripts/install-postgresql)")
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def template_database(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_template: Path,
    postgres_cluster: PostgresCluster | None,
) -> Template:
    """The migrated template of the engine under test (MINITOWER_TEST_DATABASE)."""
    if postgres_cluster is None:
        return Template(sqlite_path=migrated_template)
    return Template.migrate(tmp_path_factory.mktemp("template-pg"), postgres_cluster)


@pytest.fixture(scope="session")
def postgres_template(
    tmp_path_factory: pytest.TempPathFactory,
    any_postgres_cluster: PostgresCluster,
    template_database: Template,
) -> Template:
    """A migrated PostgreSQL template in every pass: the session's under
    MINITOWER_TEST_DATABASE=postgresql, else one on ``any_postgres_cluster``'s own."""
    if template_database.cluster is not None:
        return template_database
    return Template.migrate(tmp_path_factory.mktemp("template-any-pg"), any_postgres_cluster)


@pytest.fixture
def empty_postgres(any_postgres_cluster: PostgresCluster) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (not migrated), in every pass:
    its URL."""
    name = any_postgres_cluster.create_database()
    try:
        yield any_postgres_cluster.url(name)
    finally:
        any_postgres_cluster.drop_database(name)


@pytest.fixture
def postgres_database(tmp_path: Path, postgres_template: Template) -> Iterator[Database]:
    """A migrated PostgreSQL database of this test's own, in every pass."""
    database = postgres_template.copy(tmp_path)
    yield database
    postgres_template.drop(database)


@pytest.fixture
def database(tmp_path: Path, template_database: Template) -> Iterator[Database]:
    """A migrated database of this test's own: a SQLite file, or a PostgreSQL URL."""
    database = template_database.copy(tmp_path)
    yield database
    template_database.drop(database)


@pytest.fixture
def db_path(database: Database) -> Path:
    """This test's SQLite file, for tests about the file (marked ``sqlite_only``)."""
    return sqlite_file(database)


@pytest.fixture
def rows(database: Database) -> Iterator[Rows]:
    """The test's rows, read or edited directly on either engine (tests/support/rows.py)."""
    found = Rows(database)
    yield found
    found.close()


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    """An engine on the test's migrated database, for store-level tests."""
    engine = create_db_engine(database, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> ApiSettings:
    return ApiSettings(
        **database_settings(database, tmp_path),  # type: ignore[arg-type]
        objects_dir=tmp_path / "objects",
        object_store=object_store(database),
        bootstrap_token=BOOTSTRAP_TOKEN,
        runner_registration_token=REGISTRATION_TOKEN,
        lease_ttl=30,
        lease_poll_interval=0.2,
    )


@pytest.fixture
def client(settings: ApiSettings) -> Iterator[TestClient]:
    """The API in-process over a fresh SQLite file."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def team(client: TestClient) -> TeamClient:
    """An admin of a fresh team ``acme``."""
    return TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)


@pytest.fixture
def other_team(client: TestClient) -> TeamClient:
    return TeamClient.bootstrap(client, "globex", BOOTSTRAP_TOKEN)


@pytest.fixture
def runner(client: TestClient) -> RunnerClient:
    return RunnerClient.register(client, "runner-1", REGISTRATION_TOKEN)


@pytest.fixture
def runner2(client: TestClient) -> RunnerClient:
    return RunnerClient.register(client, "runner-2", REGISTRATION_TOKEN)


@pytest.fixture
def make_live_api(
    tmp_path: Path, database: Database
) -> Iterator[Callable[[dict[str, str]], LiveApi]]:
    """Start real ``minitowerd`` processes over this test's database, with the tests'
    secrets and ``env`` on top; each is stopped at the end of the test."""
    started: list[LiveApi] = []

    def start(env: dict[str, str]) -> LiveApi:
        full_env = {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            **env,
        }
        started.append(start_api(tmp_path, database, full_env))
        return started[-1]

    try:
        yield start
    finally:
        for api in started:
            api.stop()


@pytest.fixture
def live_api(make_live_api: Callable[[dict[str, str]], LiveApi]) -> LiveApi:
    """A real ``minitowerd`` process on a free port of 127.0.0.1."""
    return make_live_api({"MINITOWER_LEASE_TTL": os.environ.get("MINITOWER_TEST_LEASE_TTL", "2s")})


@pytest.fixture
def apis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveApiGroup]:
    """``request.param`` real ``minitowerd`` processes, set like ``live_api``: one over
    the test's ``database``, or several over one PostgreSQL database of the test's own
    in every pass (``ONE_OR_THREE_APIS`` in tests/support/api_group.py);
    ``api_settings(lease_poll_interval="60s")`` sets MINITOWER_* settings of theirs. The
    test reads and writes rows through ``apis.database``, never ``database``."""
    count: int = getattr(request, "param", 1)
    database: Database = request.getfixturevalue("database" if count == 1 else "postgres_database")
    env = {
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "MINITOWER_LEASE_TTL": os.environ.get("MINITOWER_TEST_LEASE_TTL", "2s"),
    }
    if (settings := request.node.get_closest_marker("api_settings")) is not None:
        env.update({f"MINITOWER_{key.upper()}": value for key, value in settings.kwargs.items()})
    group = start_api_group(tmp_path, database, env, count)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def apis_engine(apis: LiveApiGroup) -> Iterator[Engine]:
    """An engine on the database of ``apis``."""
    with apis.engine() as engine:
        yield engine
