"""Fixtures of the CLI tier: the installed ``minitower`` run as a subprocess, against a
live local stack (``minitowerd``, ``minitower-reaper`` and two ``minitower-runner``
processes on 127.0.0.1) that one test module shares.

Every CLI call gets a HOME and XDG_CONFIG_HOME of its own (so no test reads or writes a
real ~/.config), none of the host's MINITOWER_* variables, and a bounded time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import API_ENV, Cli, CliStack, clean_environment
from tests.support.clients import TeamClient
from tests.support.databases import copy_database
from tests.support.processes import start_api, start_reaper
from tests.support.tokens import BOOTSTRAP_TOKEN


@pytest.fixture(scope="module")
def cli_stack(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[CliStack]:
    workdir = tmp_path_factory.mktemp("cli-stack")
    db_path = copy_database(migrated_template, workdir)
    api = start_api(workdir, db_path, API_ENV)
    http = api.client()
    home = workdir / "home"
    home.mkdir()
    team = TeamClient.bootstrap(http, "cli-team", BOOTSTRAP_TOKEN)
    env = {
        **clean_environment(home),
        "MINITOWER_SERVER_URL": api.url,
        "MINITOWER_API_TOKEN": team.token,
    }
    stack = CliStack(
        api=api,
        http=http,
        team=team,
        cli=Cli(env=env, cwd=workdir),
        workdir=workdir,
        venvs=workdir / "venvs",
    )
    try:
        stack.processes.append(
            start_reaper(workdir, db_path, {"MINITOWER_EXPIRY_CHECK_INTERVAL": "0.2s"}, "reaper")
        )
        stack.runner("cli-runner-1")
        stack.runner("cli-runner-2")
        yield stack
    finally:
        for process in stack.processes:
            process.stop()
        http.close()
        api.stop()


@pytest.fixture
def cli(cli_stack: CliStack) -> Cli:
    return cli_stack.cli
