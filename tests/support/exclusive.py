"""Locks that keep some tests from overlapping with others when the suite runs on
several pytest-xdist workers (processes), as ``scripts/test`` does.

Every test holds the suite lock shared; a test marked ``serial`` holds it exclusively, so
it runs alone. A test marked ``exclusive("name")`` holds the lock ``name`` too, so that
tests of one name run one at a time while other tests go on beside them. The locks are
``flock``s on files of a directory that the controller makes for the run: the kernel
drops them when a worker dies, so a crash cannot leave the others waiting.
"""

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _flock(path: Path, operation: int) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, operation)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def held(folder: Path, serial: bool, names: list[str]) -> Iterator[None]:
    """While a test runs: its named locks (in a fixed order), then the suite lock.

    A waiting exclusive holder would starve behind shared holders that keep overlapping,
    so everyone passes a turnstile first: a serial test keeps it until it runs, and the
    others wait there in the meantime instead of taking the suite lock ahead of it."""
    with contextlib.ExitStack() as stack:
        for name in sorted(set(names)):
            stack.enter_context(_flock(folder / f"{name}.lock", fcntl.LOCK_EX))
        with _flock(folder / "turnstile.lock", fcntl.LOCK_EX):
            suite = folder / "suite.lock"
            stack.enter_context(_flock(suite, fcntl.LOCK_EX if serial else fcntl.LOCK_SH))
        yield
