"""Run the operators' runbooks as written.

A runbook (``deploy/runbooks/<name>.md``) marks each shell block that a test runs with an
HTML comment on the line before it, which Markdown renders as nothing::

    <!-- step: compose-take-backup -->
    ```sh
    docker compose run --rm ...
    ```

Tests run that exact text, so the commands an operator copies at 3 a.m. are the
commands CI ran. ``tests/deploy/test_runbooks.py`` checks that every named step is run
by some test.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import LiveApi, start_api

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "deploy" / "runbooks"

_STEP = re.compile(
    r"^<!--\s*step:\s*(?P<name>[a-z0-9][a-z0-9-]*)\s*-->\s*\n"
    r"```(?:sh|bash|console)?[^\n]*\n(?P<body>.*?)^```\s*$",
    re.MULTILINE | re.DOTALL,
)


def runbook_path(runbook: str) -> Path:
    return RUNBOOKS / f"{runbook}.md"


def steps(runbook: str) -> dict[str, str]:
    """The named shell blocks of ``deploy/runbooks/<runbook>.md``, by step name."""
    text = runbook_path(runbook).read_text()
    found: dict[str, str] = {}
    for match in _STEP.finditer(text):
        name = match.group("name")
        if name in found:
            raise ValueError(f"{runbook}.md names step {name!r} twice")
        found[name] = match.group("body")
    return found


def run_step(
    runbook: str,
    step: str,
    env: dict[str, str] | None = None,
    *,
    cwd: Path = ROOT,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run one named step with bash (``-euo pipefail``) in ``cwd`` and return what it
    did; with ``check`` (the default) a non-zero exit fails the test with its output."""
    available = steps(runbook)
    if step not in available:
        raise KeyError(f"{runbook}.md has no step {step!r} (it has {sorted(available)})")
    merged = {**os.environ, **(env or {})}
    # The project's programs (minitower, minitowerd, ...) as an operator who installed
    # them finds them, however pytest itself was started.
    merged["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{merged.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", available[step]],
        cwd=cwd,
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"runbook {runbook}.md step {step!r} exited {done.returncode}\n"
            f"--- script ---\n{available[step]}--- stdout ---\n{done.stdout}"
            f"--- stderr ---\n{done.stderr}"
        )
    return done


def local_env(folder: Path, path: str | None = None) -> dict[str, str]:
    """The variables install.md's local steps run under, everything in ``folder``: the env
    file (``folder/etc/minitower.env``) and the state directory; ``path`` replaces
    ``PATH`` (the project's programs first, as ``run_step`` puts them, by default)."""
    return {
        "MINITOWER_LOCAL_ENV": str(folder / "etc" / "minitower.env"),
        "MINITOWER_STATE_DIR": str(folder / "state"),
        "PATH": path or f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def read_env_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file such as install.md writes."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def serve_env_file(folder: Path, env_file: Path) -> LiveApi:
    """``minitowerd`` as the env file sets it (on its database, SQLite or PostgreSQL), on
    a free port instead of the file's address, working in ``folder``."""
    settings = read_env_file(env_file)
    settings.pop("MINITOWER_LISTEN_ADDR")
    folder.mkdir(exist_ok=True)
    database = settings.get("MINITOWER_DATABASE_URL") or Path(settings["MINITOWER_DB_PATH"])
    return start_api(folder, database, settings)
