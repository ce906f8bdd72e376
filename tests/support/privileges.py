"""Tests that need root (to run a runner that switches uids, as CI does): a failure
under MINITOWER_REQUIRE_DOCKER=1 (CI), else a skip that says why."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def require_root(why: str) -> None:
    if os.geteuid() == 0:
        return
    message = f"needs root: {why}"
    if os.environ.get("MINITOWER_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def passable_folder() -> Iterator[Path]:
    """A folder in /tmp that other users may pass through (pytest's own are 0700): where
    a shared runner keeps what its workloads, under another uid, must reach."""
    folder = Path(tempfile.mkdtemp(prefix="minitower-isolation-"))
    try:
        os.chmod(folder, 0o711)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def workload_python() -> str:
    """An interpreter every user may run (the test's own may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        real = Path(candidate).resolve()
        if real.is_file() and all(
            os.stat(folder).st_mode & 0o001 for folder in [*real.parents, real]
        ):
            return candidate
    pytest.fail("no python3 that every user may run in /usr/bin or /usr/local/bin")
