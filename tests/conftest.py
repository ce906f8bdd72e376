"""Fixtures shared by every test tier: temporary databases, the in-process API, a live
API process, archives and clients that act as a team or a runner."""

import contextlib
import functools
import io
import os
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.db import create_db_engine
from minitower_shared.migrate import upgrade_to_head
from tests.support.clients import RunnerClient, TeamClient
from tests.support.databases import copy_database
from tests.support.processes import LiveApi, start_api
from tests.support.proctree import alive, children_of, command_line

BOOTSTRAP_TOKEN = "test-bootstrap-token-0123456789"
REGISTRATION_TOKEN = "test-registration-token-0123456789"


@functools.cache
def _docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def _interpreter_helper(command: str) -> bool:
    """multiprocessing's resource tracker (or forkserver): started by the race tests'
    process pools, it belongs to this interpreter and ends with it."""
    return "from multiprocessing." in command


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A process the suite started and never stopped (a runner polling a dead API, say)
    would outlive the run on the machine: name it, kill it and fail the session."""
    left = {
        pid: cmd
        for pid in children_of(os.getpid())
        if alive(pid) and not _interpreter_helper(cmd := command_line(pid))
    }
    if not left:
        return
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
    session.config.get_terminal_writer().line(
        f"\nFAILED: the suite left {len(left)} process(es) running (now killed):\n{lines}",
        red=True,
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``docker`` skip where no engine runs, except where
    MINITOWER_REQUIRE_DOCKER=1 (CI) makes a missing engine a failure."""
    if item.get_closest_marker("docker") is None or _docker_available():
        return
    if os.environ.get("MINITOWER_REQUIRE_DOCKER") == "1":
        pytest.fail("MINITOWER_REQUIRE_DOCKER=1 but no Docker engine answers `docker info`")
    pytest.skip("no Docker engine here (`docker info` fails); set up Docker to run this test")


def docker_prerequisite_missing(message: str) -> NoReturn:
    """An engine answers but something a docker test needs (an image) is missing: a
    failure under MINITOWER_REQUIRE_DOCKER=1, else a skip that says what to do."""
    if os.environ.get("MINITOWER_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def make_archive(files: dict[str, str | bytes]) -> bytes:
    """A .tar.gz holding ``files`` (path → content), deterministic for equal input."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


HELLO_TOWERFILE = """\
[app]
name = "hello"
script = "main.py"

[[parameters]]
name = "greeting"
default = "hello"

[[parameters]]
name = "count"
type = "integer"
default = 1
"""


@pytest.fixture
def hello_archive() -> bytes:
    return make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": "print('hi')\n"})


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database migrated to head for the whole session."""
    path = tmp_path_factory.mktemp("template") / "minitower.db"
    upgrade_to_head(path)
    return path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    """A migrated database file of this test's own."""
    return copy_database(migrated_template, tmp_path)


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    """An engine on the migrated temporary file, for store-level tests."""
    engine = create_db_engine(db_path, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_path: Path) -> ApiSettings:
    return ApiSettings(
        db_path=db_path,
        objects_dir=tmp_path / "objects",
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
def make_live_api(tmp_path: Path, db_path: Path) -> Iterator[Callable[[dict[str, str]], LiveApi]]:
    """Start real ``minitowerd`` processes over this test's database, with the tests'
    secrets and ``env`` on top; each is stopped at the end of the test."""
    started: list[LiveApi] = []

    def start(env: dict[str, str]) -> LiveApi:
        full_env = {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            **env,
        }
        started.append(start_api(tmp_path, db_path, full_env))
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
