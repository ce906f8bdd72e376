"""Wake a run's log followers the moment this process writes something they want.

Writers (stored log lines, a result, a cancel) notify the run's id; each follower waits
on the event for its run instead of polling the database. On PostgreSQL the other API
processes' writes notify too (peer_signals.py); the reaper's (ending a run) are found by
the followers' slow periodic re-read.
"""

import asyncio
import weakref
from collections.abc import Callable


class RunSignals:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # Weak: a run's event lives as long as a follower holds it, so runs nobody
        # follows cost nothing.
        self._events: weakref.WeakValueDictionary[int, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        # Tells the other API processes of the database, when there are any.
        self.peers: Callable[[int], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, run_id: int) -> None:
        """Safe to call from any thread."""
        self.notify_here(run_id)
        if self.peers is not None:
            self.peers(run_id)

    def notify_here(self, run_id: int) -> None:
        """Wake this process's followers of the run only; a no-op when it has none."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, run_id)

    def wake(self, run_id: int) -> None:
        """``notify`` from the event loop's own thread."""
        self._wake(run_id)

    def _wake(self, run_id: int) -> None:
        event = self._events.pop(run_id, None)
        if event is not None:
            event.set()

    def arm(self, run_id: int) -> asyncio.Event:
        """The event the run's next notification sets. Take it *before* reading, so a
        write that lands during the read still wakes the follower."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        event = self._events.get(run_id)
        if event is None:
            event = asyncio.Event()
            self._events[run_id] = event
        return event
