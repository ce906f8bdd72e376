"""How much memory a piece of code took at its peak, measured two ways: Python's own
allocations (tracemalloc) and the process's resident set (Linux's VmHWM, reset first),
which also counts what C libraries such as libpq allocate."""

import re
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")


@dataclass
class PeakMemory:
    python_bytes: int = 0
    rss_growth_bytes: int = 0


def _status_bytes(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB$", _STATUS.read_text(), re.MULTILINE)
    assert match is not None, f"no {field} in {_STATUS}"
    return int(match.group(1)) * 1024


@contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    """Filled in when the block ends: its Python peak, and how far the resident set
    rose above where it stood at the start."""
    peak = PeakMemory()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again
    before = _status_bytes("VmRSS")
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.python_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak.rss_growth_bytes = _status_bytes("VmHWM") - before
