"""``minitower secrets``: the value comes from stdin (never an argument), no command
prints it back, and errors about it never quote it; against a live API."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import API_ENV, clean_environment
from tests.support.clients import TeamClient
from tests.support.databases import copy_database
from tests.support.processes import LiveApi, script, start_api
from tests.support.secrets import KEY
from tests.support.tokens import BOOTSTRAP_TOKEN

pytestmark = pytest.mark.slow
VALUE = "multi\nline-cli-secret-7c2d"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Iterator[LiveApi]:
    """One API with a secrets key for the module: each test has a team of its own."""
    folder = tmp_path_factory.mktemp("cli-secrets")
    api = start_api(
        folder,
        copy_database(migrated_template, folder),
        {**API_ENV, "MINITOWER_SECRETS_KEY": KEY},
    )
    try:
        yield api
    finally:
        api.stop()


_teams = itertools.count(1)


@pytest.fixture
def env(api: LiveApi, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    with api.client() as http:
        team = TeamClient.bootstrap(http, f"cli-team-{next(_teams)}", BOOTSTRAP_TOKEN)
    return {
        **clean_environment(home),
        "MINITOWER_SERVER_URL": api.url,
        "MINITOWER_API_TOKEN": team.token,
    }


def minitower(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("minitower"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_set_list_delete(env: dict[str, str]) -> None:
    done = minitower(env, "secrets", "set", "DB_URL", "--environment", "prod", stdin=VALUE + "\n")
    assert done.returncode == 0, done
    assert "set secret DB_URL in environment prod" in done.stderr + done.stdout
    listed = minitower(env, "secrets", "list", "--json")
    assert listed.returncode == 0, listed
    assert '"name": "DB_URL"' in listed.stdout and '"environment": "prod"' in listed.stdout
    table = minitower(env, "secrets", "list", "--environment", "prod")
    assert "DB_URL" in table.stdout
    for output in (done, listed, table):
        assert "line-cli-secret" not in output.stdout + output.stderr
    assert minitower(env, "secrets", "delete", "DB_URL").returncode != 0  # not in default
    deleted = minitower(env, "secrets", "delete", "DB_URL", "--environment", "prod")
    assert deleted.returncode == 0, deleted
    assert minitower(env, "secrets", "list", "--json").stdout.strip() == "[]"


def test_the_value_is_never_an_argument_nor_echoed_in_errors(env: dict[str, str]) -> None:
    # No argument for it: a value given on the command line is a usage error.
    extra = minitower(env, "secrets", "set", "DB_URL", "line-cli-secret-arg")
    assert extra.returncode != 0
    empty = minitower(env, "secrets", "set", "DB_URL", stdin="")
    assert empty.returncode == 4 and "empty" in empty.stderr
    big = "line-cli-secret-" + "x" * (70 * 1024)
    too_big = minitower(env, "secrets", "set", "DB_URL", stdin=big)
    assert too_big.returncode == 4, too_big
    assert "65536" in too_big.stderr and "line-cli-secret" not in too_big.stderr
    bad_name = minitower(env, "secrets", "set", "db_url", stdin="line-cli-secret-name")
    assert bad_name.returncode == 3 and "line-cli-secret" not in bad_name.stderr
