"""The README's "Secrets" examples, run as written against a live API."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from minitower_shared.migrate import upgrade_to_head
from minitower_shared.towerfile import parse_towerfile
from tests.conftest import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.clients import TeamClient, check
from tests.support.processes import start_api
from tests.support.secrets import KEY

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Secrets\n")
    return readme[start : readme.index("\n## ", start)]


def test_the_readme_curl_examples_work(tmp_path: Path) -> None:
    (block,) = re.findall(r"```sh\n(.*?)```", _section(), flags=re.DOTALL)
    db_path = tmp_path / "db" / "minitower.db"
    upgrade_to_head(db_path)
    api = start_api(
        tmp_path,
        db_path,
        {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            "MINITOWER_SECRETS_KEY": KEY,
        },
    )
    try:
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                env={**os.environ, "API": api.url, "TOKEN": team.token},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr + done.stdout
            assert "hunter2" not in done.stdout and "rotated" not in done.stdout
            (secret,) = check(team.get("/api/v1/secrets"), 200)["secrets"]
            assert (secret["name"], secret["environment"]) == ("DB_URL", "default")
            assert secret["updated_at"] > secret["created_at"]
    finally:
        api.stop()


def test_the_readme_towerfile_example_parses() -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", _section(), flags=re.DOTALL)
    assert parse_towerfile(block).secrets == ("DB_URL",)


def test_the_readme_cli_examples_name_real_commands() -> None:
    (block,) = re.findall(r"```console\n(.*?)```", _section(), flags=re.DOTALL)
    commands = [line.split("minitower ", 1)[1].split()[:2] for line in block.splitlines()]
    assert commands == [
        ["secrets", "set"],
        ["secrets", "set"],
        ["secrets", "list"],
        ["secrets", "delete"],
    ]
