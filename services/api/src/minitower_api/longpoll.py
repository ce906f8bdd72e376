"""Wake long-polling lease calls the moment work arrives.

Runs created through this process notify the signal, and so, on PostgreSQL, do those of
the other API processes (peer_signals.py); everything else that can queue a run (the
reaper, the scheduler) is found by the waiters' periodic re-check.
"""

import asyncio
import contextlib
from collections.abc import Callable


class QueueSignal:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        # Tells the other API processes of the database, when there are any.
        self.peers: Callable[[], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Safe to call from any thread."""
        self.notify_here()
        if self.peers is not None:
            self.peers()

    def notify_here(self) -> None:
        """Wake this process's waiters only (what a peer's notification does)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._event is not None:
            # Replace before setting, so waiters that arrive later wait for the next run.
            event, self._event = self._event, asyncio.Event()
            event.set()

    def arm(self) -> asyncio.Event:
        """The event the next notification sets. Take it *before* looking for work: a
        notification that arrives while the look is under way then still wakes the
        waiter, instead of being lost until the next periodic re-check."""
        if self._event is None:
            self.bind(asyncio.get_running_loop())
        assert self._event is not None
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> None:
        """Return when ``event`` is set or after ``timeout`` seconds, whichever is first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
