"""The README's "Secrets" examples, run as written against a live API."""

from pathlib import Path

import pytest

from minitower_shared.towerfile import parse_towerfile
from tests.support import readme
from tests.support.clients import check
from tests.support.secrets import KEY

pytestmark = pytest.mark.slow


def test_the_readme_curl_examples_work(tmp_path: Path) -> None:
    (block,) = readme.blocks("Secrets")
    with readme.live_team(tmp_path, {"MINITOWER_SECRETS_KEY": KEY}) as (url, team):
        stdout = readme.run_block(block, {"API": url, "TOKEN": team.token})
        assert "hunter2" not in stdout and "rotated" not in stdout
        (secret,) = check(team.get("/api/v1/secrets"), 200)["secrets"]
        assert (secret["name"], secret["environment"]) == ("DB_URL", "default")
        assert secret["updated_at"] > secret["created_at"]


def test_the_readme_towerfile_example_parses() -> None:
    (block,) = readme.blocks("Secrets", "toml")
    assert parse_towerfile(block).secrets == ("DB_URL",)


def test_the_readme_cli_examples_name_real_commands() -> None:
    (block,) = readme.blocks("Secrets", "console")
    commands = [line.split("minitower ", 1)[1].split()[:2] for line in block.splitlines()]
    assert commands == [
        ["secrets", "set"],
        ["secrets", "set"],
        ["secrets", "list"],
        ["secrets", "delete"],
    ]
