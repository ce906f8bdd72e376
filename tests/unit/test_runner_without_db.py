"""The runner's image installs the shared package without its ``db`` extra: nothing the
runner imports may need SQLAlchemy, SQLModel or Alembic (the image build would fail at
``minitower-runner --help``, far from the change that caused it)."""

import subprocess
import sys

_WITHOUT_DB = """
import sys
for name in ("sqlalchemy", "sqlmodel", "alembic"):
    sys.modules[name] = None  # an import of it now raises ImportError
import minitower_runner.cli
import minitower_runner.launcher
from minitower_runner.cli import main
sys.argv = ["minitower-runner", "--help"]
try:
    main()
except SystemExit as done:
    sys.exit(done.code)
"""


def test_the_runner_starts_without_the_database_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DB], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "minitower-runner" in done.stdout or "usage" in done.stdout.lower(), done.stdout
