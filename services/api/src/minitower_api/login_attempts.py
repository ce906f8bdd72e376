"""Rate limiting of password sign-ins: failed attempts per team slug and per client
address, counted in a sliding window in this process's memory.

One API process serves a MiniTower installation, so memory is the right place: a limit
that outlives a restart would also outlive the attacker's interest. The tables are
bounded: the oldest keys are dropped first when they are full.
"""

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

# Beyond this many distinct slugs or addresses, the least recently failed are forgotten.
MAX_TRACKED_KEYS = 10_000


class SlidingWindow:
    """Failures per key within the last ``window`` seconds, at most ``limit`` kept."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it may try now."""
        now = self._clock()
        times = self._recent(key, now)
        if len(times) < self.limit:
            return None
        return max(times[0] + self.window - now, 0.001)

    def record_failure(self, key: str) -> None:
        now = self._clock()
        times = self._recent(key, now)
        times.append(now)
        while len(times) > self.limit:
            times.popleft()
        self._failures[key] = times
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


@dataclass(frozen=True)
class Throttled:
    """Why a sign-in is refused before its password is even checked."""

    retry_after_seconds: int
    reason: str


class LoginAttempts:
    """The two windows of a login: by slug (a guessed team) and by address (a guesser)."""

    def __init__(
        self,
        per_slug: int,
        per_address: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._by_slug = SlidingWindow(per_slug, window, clock)
        self._by_address = SlidingWindow(per_address, window, clock)
        self._lock = threading.Lock()

    def check(self, slug: str, address: str) -> Throttled | None:
        with self._lock:
            slug_wait = self._by_slug.retry_after(slug)
            address_wait = self._by_address.retry_after(address)
        waits = [
            (wait, reason)
            for wait, reason in (
                (slug_wait, "too many failed sign-ins for this team"),
                (address_wait, "too many failed sign-ins from this address"),
            )
            if wait is not None
        ]
        if not waits:
            return None
        wait, reason = max(waits)
        return Throttled(retry_after_seconds=math.ceil(wait), reason=reason)

    def failed(self, slug: str, address: str) -> None:
        with self._lock:
            self._by_slug.record_failure(slug)
            self._by_address.record_failure(address)

    def succeeded(self, slug: str) -> None:
        """A right password forgives the team's failures (not the address's: a guesser
        who owns one team must not reset its budget against others)."""
        with self._lock:
            self._by_slug.clear(slug)
