"""Raw-socket clients that misbehave on purpose: silent sockets, heads trickled a byte at
a time, huge heads, requests left open. For the server-limit tests (tests/hostile)."""

import json
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None, url
    return parts.hostname, parts.port


def connect(url: str, timeout: float = 5) -> socket.socket:
    sock = socket.create_connection(address(url), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def is_closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed (or reset) the connection; never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(sock: socket.socket, timeout: float) -> RawResponse | None:
    """Read until the server closes the connection (or ``timeout``); None when it closed
    without answering."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            parsed = _parse(head, body)
            length = int(parsed.headers.get("content-length", "-1"))
            if length >= 0 and len(body) >= length:
                return parsed
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return _parse(head, body)


def _parse(head: bytes, body: bytes) -> RawResponse:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(status=status, headers=headers, body=body)


def send_raw(url: str, data: bytes, timeout: float = 5) -> RawResponse | None:
    with connect(url, timeout) as sock:
        sock.sendall(data)
        return read_response(sock, timeout)


@dataclass
class StreamedHead:
    sent: int
    response: RawResponse | None
    seconds: float


def stream_huge_header(url: str, total: int, chunk: int = 64 * 1024) -> StreamedHead:
    """Send a request whose one header is ``total`` bytes long, as fast as the server
    takes it, and stop when the server answers or closes."""
    started = time.monotonic()
    sent = 0
    with connect(url, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        block = b"a" * chunk
        while sent < total:
            try:
                sock.sendall(block)
            except (ConnectionResetError, BrokenPipeError):
                break
            sent += len(block)
            if is_closed_by_peer(sock) or select.select([sock], [], [], 0)[0]:
                break
        response = read_response(sock, timeout=5)
    return StreamedHead(sent=sent, response=response, seconds=time.monotonic() - started)


@dataclass
class SlowSockets:
    """``silent`` sockets that connect and send nothing, and ``trickling`` ones that send
    a request's head one byte every ``interval`` seconds and never finish it. A
    background thread does the trickling until ``close``."""

    url: str
    silent: int
    trickling: int
    interval: float = 2.0
    sockets: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def open(self) -> "SlowSockets":
        for _ in range(self.silent + self.trickling):
            self.sockets.append(connect(self.url))
        for sock in self.sockets[self.silent :]:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        # Bounded: stops at close(), or after an hour at most.
        deadline = time.monotonic() + 3600
        while not self._stop.wait(self.interval) and time.monotonic() < deadline:
            for sock in self.sockets[self.silent :]:
                with suppress(OSError):
                    sock.send(b"X")

    def closed_by_server(self) -> int:
        return sum(is_closed_by_peer(sock) for sock in self.sockets)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()


@contextmanager
def slow_sockets(
    url: str, silent: int, trickling: int, interval: float = 2.0
) -> Iterator[SlowSockets]:
    sockets = SlowSockets(url, silent, trickling, interval)
    try:
        yield sockets.open()
    finally:
        sockets.close()


def open_long_polls(url: str, tokens: list[str], wait_seconds: float) -> list[socket.socket]:
    """One lease long poll per token, sent whole on a raw socket and left waiting (the
    server answers after ``wait_seconds``); close the sockets to end them."""
    body = json.dumps({"wait_seconds": wait_seconds}).encode()
    polls = []
    for token in tokens:
        sock = connect(url)
        sock.sendall(
            b"POST /api/v1/runs/lease HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        polls.append(sock)
    return polls


def timings(call: Callable[[], Any], count: int) -> list[float]:
    """Seconds each of ``count`` calls took, sorted."""
    taken = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        taken.append(time.perf_counter() - started)
    return sorted(taken)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def allow_open_files(count: int) -> None:
    """Lift this process's soft limit on open files to ``count`` (within the hard one),
    for tests that hold hundreds of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        target = count if hard == resource.RLIM_INFINITY else min(count, hard)
        assert target >= count, f"the hard limit on open files ({hard}) is below {count}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
