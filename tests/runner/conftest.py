"""Fixtures of the runner tier: a live ``minitowerd`` on a real SQLite file, a team on
it, and real ``minitower-runner`` (and ``minitower-reaper``) processes started on demand.

One API serves a whole module; each test gets a team and a runner environment of its
own, so runs of one test are never leased by another's runners. A test marked
``own_api`` (optionally ``own_api(lease_ttl="10s")``) gets an API of its own, to stop,
restart or configure. Leases last 5 s unless said otherwise, runners heartbeat every
half second and long-poll for 2 s, so a test sees every phase of a run within a few
seconds. The venv cache is shared by the whole session, as on a real host.
"""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import TeamClient
from tests.support.databases import copy_database
from tests.support.processes import LiveApi, fast_runner_env, start_api
from tests.support.runner_stack import API_ENV, Stack
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("venvs")


@pytest.fixture(scope="module")
def module_api(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveApi]:
    folder = tmp_path_factory.mktemp("api")
    api = start_api(folder, copy_database(migrated_template, folder), API_ENV)
    yield api
    api.stop()


_counter = itertools.count(1)


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_template: Path, venv_cache: Path
) -> Iterator[Stack]:
    own = request.node.get_closest_marker("own_api")
    private: LiveApi | None = None
    if own is not None:
        private = start_api(
            tmp_path,
            copy_database(migrated_template, tmp_path),
            {**API_ENV, **{f"MINITOWER_{key.upper()}": value for key, value in own.kwargs.items()}},
        )
        api = private
    else:
        api = request.getfixturevalue("module_api")
    number = next(_counter)
    environment = f"env-{number}"
    http = api.client()
    runner_env = {
        **fast_runner_env(environment, venv_cache, REGISTRATION_TOKEN),
        # A secret the workload must never see.
        "MINITOWER_SECRET_CANARY": "canary-value",
    }
    stack = Stack(
        api=api,
        http=http,
        team=TeamClient.bootstrap(http, f"team-{number}", BOOTSTRAP_TOKEN),
        workdir=tmp_path,
        db_path=Path(api.env["MINITOWER_DB_PATH"]),
        environment=environment,
        runner_env=runner_env,
    )
    try:
        yield stack
    finally:
        for process in stack.processes:
            process.stop()
        http.close()
        if private is not None:
            private.stop()
