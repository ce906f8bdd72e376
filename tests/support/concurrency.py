"""Helpers for tests that hammer one database file from many threads at once.

``run_in_threads`` starts every worker behind one barrier, joins them within a deadline
and re-raises the first worker exception with every worker's traceback, so a failure in
a thread can never pass silently. ``Watch`` samples an invariant in the background while
the workers run, and ``ResponseLog`` keeps every HTTP answer a client saw.
"""

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


class WorkerFailed(AssertionError):
    pass


def run_in_threads(
    workers: list[Callable[[], Any]], *, timeout: float, name: str = "worker"
) -> list[Any]:
    """Run each callable in its own thread, all released at the same moment; return
    their results in order."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)
    errors: list[str] = []
    lock = threading.Lock()

    def body(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = work()
        except BaseException:
            with lock:
                errors.append(f"{name} {index}:\n{traceback.format_exc()}")
            barrier.abort()

    threads = [
        threading.Thread(target=body, args=(i, w), name=f"{name}-{i}", daemon=True)
        for i, w in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if errors or stuck:
        raise WorkerFailed(
            "\n".join(errors) + (f"\nstill running after {timeout}s: {stuck}" if stuck else "")
        )
    return results


class Watch:
    """Call ``probe`` every ``interval`` seconds in a thread until stopped; keep every
    non-empty answer. Use as a context manager around the concurrent part of a test."""

    def __init__(self, probe: Callable[[], list[Any]], interval: float = 0.02) -> None:
        self.probe = probe
        self.interval = interval
        self.violations: list[Any] = []
        self.samples = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.probe()
            except Exception:
                self.errors.append(traceback.format_exc())
                return
            self.samples += 1
            self.violations.extend(found)
            self._stop.wait(self.interval)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class ResponseLog:
    """Every (method, path, status, body) a client saw, from any number of threads."""

    entries: list[tuple[str, str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response) -> httpx.Response:
        with self.lock:
            self.entries.append(
                (
                    response.request.method,
                    response.request.url.path,
                    response.status_code,
                    response.text[:500],
                )
            )
        return response

    def hook(self, response: httpx.Response) -> None:
        """An httpx response event hook: ``httpx.Client(event_hooks=log.hooks)``."""
        response.read()
        self.record(response)

    @property
    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"response": [self.hook]}

    def server_errors(self) -> list[tuple[str, str, int, str]]:
        return [e for e in self.entries if e[2] >= 500 or "locked" in e[3].lower()]

    def count(self, status: int) -> int:
        return sum(e[2] == status for e in self.entries)
