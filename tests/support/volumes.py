"""Small real filesystems for tests of a full disk."""

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.docker_engine import docker_prerequisite_missing


@contextmanager
def small_tmpfs(mount_point: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``mount_point`` (created) until the block
    ends. Mounting needs root: elsewhere the test skips, and under
    MINITOWER_REQUIRE_DOCKER=1 (CI, root) it fails instead."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        docker_prerequisite_missing("mounting a small tmpfs needs root: run as root (as CI does)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        docker_prerequisite_missing(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)
