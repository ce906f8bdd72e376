"""Whether a Docker engine answers here, and what a docker test does when something it
needs is missing: a failure under MINITOWER_REQUIRE_DOCKER=1 (CI), else a skip that
says what to do."""

import functools
import os
import shutil
import subprocess
from typing import NoReturn

import pytest


def docker_required() -> bool:
    """MINITOWER_REQUIRE_DOCKER=1 (CI): a missing engine or image is a failure."""
    return os.environ.get("MINITOWER_REQUIRE_DOCKER") == "1"


@functools.cache
def docker_available() -> bool:
    """A ``docker`` on the PATH whose ``docker info`` succeeds (asked once a session)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def docker_prerequisite_missing(message: str) -> NoReturn:
    """An engine answers but something a docker test needs (an image) is missing: a
    failure under MINITOWER_REQUIRE_DOCKER=1, else a skip that says what to do."""
    if docker_required():
        pytest.fail(message)
    pytest.skip(message)
