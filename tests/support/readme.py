"""The README's sections and code blocks, read the way the tests that run them need."""

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from minitower_shared.migrate import upgrade_to_head
from tests.support.clients import TeamClient
from tests.support.processes import start_api
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    """The text of ``## title`` up to the next second-level heading (or the end)."""
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(title: str, language: str = "sh") -> list[str]:
    """Every fenced block of one language in a section, in order."""
    return re.findall(rf"```{language}\n(.*?)```", section(title), flags=re.DOTALL)


@contextmanager
def live_team(
    tmp_path: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, TeamClient]]:
    """A migrated database, ``minitowerd`` on it and a bootstrapped team ``acme``: where a
    README block's ``$API`` and ``$TOKEN`` point."""
    db_path = tmp_path / "db" / "minitower.db"
    upgrade_to_head(db_path)
    api = start_api(
        tmp_path,
        db_path,
        {
            "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            **(env or {}),
        },
    )
    try:
        with api.client() as http:
            yield api.url, TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
    finally:
        api.stop()


def run_block(block: str, env: dict[str, str], *, inherit: bool = True) -> str:
    """Run a README shell block as written (``bash -euo pipefail``) with ``env`` over this
    process's environment (or alone: ``inherit=False``); its output."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        env={**os.environ, **env} if inherit else env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout
