"""Hostile inputs and the instruments that hold the API to bounded cost while it gets them:
archives with oversized tar headers built without holding them in memory, a sampler of a
process's resident memory and a prober that keeps asking ``/health``."""

from __future__ import annotations

import io
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MiB = 1024 * 1024


# --- archives -------------------------------------------------------------------------


def raw_header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte ustar header as a hostile writer would make it: any type, any size."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def member(name: str, data: bytes) -> bytes:
    """A regular file: its header and its data padded to whole blocks."""
    padding = -len(data) % tarfile.BLOCKSIZE
    return raw_header(name, tarfile.REGTYPE, len(data)) + data + b"\0" * padding


def write_gzip(path: Path, parts: Iterator[bytes]) -> Path:
    """Compress the parts into `path` as they come, so a 300 MB archive is never in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with path.open("wb") as out:
        for part in parts:
            out.write(compressor.compress(part))
        out.write(compressor.flush())
    return path


def _zeros(size: int, byte: bytes = b"\0") -> Iterator[bytes]:
    chunk = byte * MiB
    while size > 0:
        yield chunk[: min(size, MiB)]
        size -= MiB


def header_bomb(path: Path, kind: bytes, size: int, filler: bytes = b"a") -> Path:
    """An archive whose first header is an extended one (pax ``x`` or GNU long name ``L``)
    of `size` bytes, then a valid app: a few hundred KB of gzip for 300 MB of header."""

    def parts() -> Iterator[bytes]:
        yield raw_header("././@LongLink", kind, size)
        yield from _zeros(size, filler)
        yield b"\0" * (-size % tarfile.BLOCKSIZE)
        yield member("main.py", b"print('hi')\n")
        yield b"\0" * tarfile.RECORDSIZE

    return write_gzip(path, parts())


def app_archive(files: dict[str, bytes]) -> bytes:
    """A plain .tar.gz of the given files, in memory."""
    buffer = io.BytesIO()
    for name, data in files.items():
        buffer.write(member(name, data))
    buffer.write(b"\0" * tarfile.RECORDSIZE)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(buffer.getvalue()) + compressor.flush()


# --- instruments ----------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """The process's resident set size now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@dataclass
class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; `peak` is the most."""

    pid: int
    interval: float = 0.01
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)
        self._sample()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def _sample(self) -> None:
        # The process may be gone; the test's own assertions say why.
        with suppress(FileNotFoundError, ProcessLookupError):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def _run(self) -> None:
        # Bounded: a test lasts seconds; this cap is hours of samples.
        for _ in range(1_000_000):
            if self._stop.wait(self.interval):
                return
            self._sample()


@dataclass
class HealthProber:
    """Asks `GET /health` back to back in a thread; `slowest` is the longest answer (a
    request that failed or timed out counts as its timeout)."""

    url: str
    timeout: float = 5.0
    pause: float = 0.02
    slowest: float = 0.0
    answers: int = 0
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthProber:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            for _ in range(1_000_000):
                if self._stop.is_set():
                    return
                started = time.monotonic()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.monotonic() - started
                self.slowest = max(self.slowest, elapsed)
                self.answers += ok
                self.failures += not ok
                self._stop.wait(self.pause)


@dataclass
class Cost:
    """What one hostile request cost the API."""

    seconds: float
    rss_growth: int
    health_slowest: float
    status: int


@contextmanager
def measured(url: str, pid: int) -> Iterator[dict[str, float]]:
    """Watch the API's memory and /health while the block runs; the dict gets the
    figures on exit: rss_growth (bytes), health_slowest (s), health_answers."""
    figures: dict[str, float] = {}
    with RssSampler(pid) as rss, HealthProber(url) as health:
        yield figures
    figures.update(
        rss_growth=rss.growth,
        health_slowest=health.slowest,
        health_answers=health.answers,
        health_failures=health.failures,
    )
