"""Hostile inputs and the instruments that hold the API to bounded cost while it gets them:
archives with oversized tar headers built without holding them in memory, a sampler of a
process's resident memory and a prober that keeps asking ``/health``."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
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
        # At least one answer after the block began, even if the block was quicker.
        deadline = time.monotonic() + self.timeout
        while self.answers + self.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
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


@contextmanager
def measured(url: str, pid: int) -> Iterator[dict[str, float]]:
    """Watch the API's memory and /health while the block runs; the dict gets the
    figures on exit: rss_growth (bytes), health_slowest (s), health_answers and
    health_failures."""
    figures: dict[str, float] = {}
    with RssSampler(pid) as rss, HealthProber(url) as health:
        yield figures
    figures.update(
        rss_growth=rss.growth,
        health_slowest=health.slowest,
        health_answers=health.answers,
        health_failures=health.failures,
    )


# --- the reproductions, against a live API --------------------------------------------

EVIL_PATTERN_SCHEMA = {
    "type": "object",
    "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
}
UNIQUE_SCHEMA = {
    "type": "object",
    "properties": {"rows": {"type": "array", "uniqueItems": True}},
}
BOMB_BYTES = 300 * 1000 * 1000
CHUNKED_BYTES = 99 * 1000 * 1000


@dataclass
class Target:
    """A live API with a team whose apps hold the hostile schemas."""

    url: str
    token: str
    objects_dir: Path
    workdir: Path

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {self.token}"}
        )

    def temporary_files(self) -> list[str]:
        folder = self.objects_dir / "tmp"
        return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def prepare_target(url: str, bootstrap_token: str, objects_dir: Path, workdir: Path) -> Target:
    """Bootstrap a team with three apps: `hello`, `redos` (a backtracking pattern in its
    schema, accepted: RE2 runs it) and `unique` (uniqueItems on an array)."""
    with httpx.Client(base_url=url, timeout=30) as api:
        answer = api.post(
            "/api/v1/bootstrap/team",
            json={"slug": "hostile", "name": "Hostile"},
            headers={"Authorization": f"Bearer {bootstrap_token}"},
        )
        assert answer.status_code in (200, 201), answer.text
        target = Target(url, answer.json()["token"], objects_dir, workdir)
    with target.client() as api:
        for slug, schema in (
            ("hello", None),
            ("redos", EVIL_PATTERN_SCHEMA),
            ("unique", UNIQUE_SCHEMA),
        ):
            assert api.post("/api/v1/apps", json={"slug": slug}).status_code == 201
            form = {"entrypoint": "main.py"}
            if schema is not None:
                form["params_schema"] = json.dumps(schema)
            answer = api.post(
                f"/api/v1/apps/{slug}/versions",
                files={
                    "artifact": ("app.tar.gz", app_archive({"main.py": b""}), "application/gzip")
                },
                data=form,
            )
            assert answer.status_code == 201, answer.text
    # Built beforehand: compressing 300 MB takes longer than the API may take to refuse it.
    header_bomb(workdir / "pax-bomb.tar.gz", tarfile.XHDTYPE, BOMB_BYTES)
    header_bomb(workdir / "gnu-bomb.tar.gz", tarfile.GNUTYPE_LONGNAME, BOMB_BYTES)
    return target


def _upload(target: Target, archive: bytes | Path) -> int:
    data = archive.read_bytes() if isinstance(archive, Path) else archive
    with target.client() as api:
        return api.post(
            "/api/v1/apps/hello/versions",
            files={"artifact": ("app.tar.gz", data, "application/gzip")},
            data={"entrypoint": "main.py"},
        ).status_code


def _run(target: Target, app: str, run_input: dict[str, object]) -> int:
    with target.client() as api:
        return api.post(f"/api/v1/apps/{app}/runs", json={"input": run_input}).status_code


def dotted_towerfile(target: Target) -> int:
    return _upload(target, app_archive({"Towerfile": b"a." * 30000 + b"b = 1", "main.py": b""}))


def deep_towerfile(target: Target) -> int:
    towerfile = b"a = " + b"[" * 5000 + b"]" * 5000
    return _upload(target, app_archive({"Towerfile": towerfile, "main.py": b""}))


def redos_input(target: Target) -> int:
    return _run(target, "redos", {"s": "a" * 28 + "!"})


def nested_schema_pattern(target: Target) -> int:
    """A `$schema` below the root made jsonschema validate with its own classes (and
    Python's re) instead of the API's: refused at upload now."""
    schema = {
        "type": "object",
        "properties": {
            "s": {"$schema": "http://json-schema.org/draft-07/schema#", "pattern": "^(a+)+$"}
        },
    }
    with target.client() as api:
        return api.post(
            "/api/v1/apps/hello/versions",
            files={"artifact": ("app.tar.gz", app_archive({"main.py": b""}), "application/gzip")},
            data={"entrypoint": "main.py", "params_schema": json.dumps(schema)},
        ).status_code


def unique_items_8000(target: Target) -> int:
    rows: list[object] = [{"id": i, "name": f"row {i}"} for i in range(8000)]
    return _run(target, "unique", {"rows": [*rows, {"name": "row 7", "id": 7}]})


def pax_header_bomb(target: Target) -> int:
    return _upload(target, target.workdir / "pax-bomb.tar.gz")


def gnu_long_name_bomb(target: Target) -> int:
    return _upload(target, target.workdir / "gnu-bomb.tar.gz")


_BOUNDARY = "hostile-boundary-7d1f"


def _multipart_stream(size: int) -> Iterator[bytes]:
    yield (
        f"--{_BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="artifact"; filename="app.tar.gz"\r\n'
        "Content-Type: application/gzip\r\n\r\n"
    ).encode()
    yield from _zeros(size, b"x")
    yield f"\r\n--{_BOUNDARY}--\r\n".encode()


def _chunked_upload(
    target: Target, chunks: Iterator[bytes], *, hang_up: bool = False
) -> int | None:
    """POST an upload with Transfer-Encoding: chunked (no Content-Length); with `hang_up`,
    close the connection after the chunks instead of finishing the body."""
    host, _, port = target.url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", "/api/v1/apps/hello/versions")
        for name, value in (
            ("Authorization", f"Bearer {target.token}"),
            ("Content-Type", f"multipart/form-data; boundary={_BOUNDARY}"),
            ("Transfer-Encoding", "chunked"),
        ):
            connection.putheader(name, value)
        connection.endheaders()
        for chunk in chunks:
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        if hang_up:
            return None
        connection.send(b"0\r\n\r\n")
        return connection.getresponse().status
    finally:
        connection.close()


def chunked_99_mb(target: Target) -> int | None:
    return _chunked_upload(target, _multipart_stream(CHUNKED_BYTES))


def hang_up_mid_upload(target: Target) -> None:
    """A client that sends 20 MB of an upload and disconnects: there is no answer to
    read, and nothing may stay behind."""
    stream = _multipart_stream(CHUNKED_BYTES)
    _chunked_upload(target, (next(stream) for _ in range(21)), hang_up=True)


CASES: dict[str, Callable[[Target], int | None]] = {
    "dotted Towerfile (60 KB)": dotted_towerfile,
    "Towerfile 5,000 levels deep": deep_towerfile,
    "ReDoS pattern, evil input": redos_input,
    "ReDoS pattern under a $schema": nested_schema_pattern,
    "uniqueItems, 8,000 objects": unique_items_8000,
    "pax header bomb (300 MB)": pax_header_bomb,
    "GNU long name bomb (300 MB)": gnu_long_name_bomb,
    "chunked upload (99 MB)": chunked_99_mb,
    "hang-up mid upload (20 MB)": hang_up_mid_upload,
}


def measure(target: Target, pid: int, case: str) -> tuple[int | None, dict[str, float]]:
    """Send one case; its status and figures (seconds, rss_growth, health_slowest, ...)."""
    with measured(target.url, pid) as figures:
        started = time.monotonic()
        status = CASES[case](target)
        figures["seconds"] = time.monotonic() - started
    return status, figures
