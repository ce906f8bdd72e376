"""Caps on a token's open long polls and SSE followers: a slot per open stream, 429
beyond the cap, so one token (a runaway script, a stolen token) cannot hold the
connections everyone else needs."""

import threading
from collections import Counter
from collections.abc import Hashable

from minitower_api.errors import too_many_requests


class StreamSlot:
    def __init__(self, owner: "StreamSlots", key: Hashable) -> None:
        self._owner = owner
        self._key = key
        self._held = True

    def release(self) -> None:
        """Idempotent: both the stream's end and the response's clean-up may call it."""
        if self._held:
            self._held = False
            self._owner._release(self._key)


class StreamSlots:
    def __init__(self, what: str, limit: int, setting: str) -> None:
        self.what = what
        self.limit = limit
        self.setting = setting
        self._open: Counter[Hashable] = Counter()
        self._lock = threading.Lock()

    def acquire(self, key: Hashable) -> StreamSlot:
        """A slot for ``key``, or HttpProblem 429 when it holds ``limit`` already."""
        with self._lock:
            if self._open[key] >= self.limit:
                raise too_many_requests(
                    f"this token already has {self.limit} open {self.what} ({self.setting}); "
                    "close one or try again later"
                )
            self._open[key] += 1
        return StreamSlot(self, key)

    def _release(self, key: Hashable) -> None:
        with self._lock:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
