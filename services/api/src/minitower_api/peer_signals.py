"""Wake-ups between API processes that share one PostgreSQL database (LISTEN/NOTIFY).

A run created through one API process must wake the runners long-polling on another at
once, and a log line stored through one must reach a follower streaming from another,
as they do within one process (longpoll.py, run_signals.py). Each process sends what it
notifies locally to the database's channels and listens to them; no new service, and a
process that misses a notification (its listener reconnecting) is no worse off than
before: waiters re-check on their own every few seconds.

Sending happens on a thread of its own, never in the caller's: notifications that pile
up while one is sent go out together, one statement for the lot. A process ignores its
own notifications (it woke its waiters already). The scheduler and the reaper announce
the runs they queue on the same channel (``minitower_shared.db.announce_queued``). On
SQLite there is one API process per database, and nothing here runs.
"""

import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from minitower_shared.db import QUEUE_CHANNEL, RUN_CHANNEL

log = logging.getLogger("minitower.api")

# How long the listener blocks before it looks whether it should stop.
_LISTEN_TICK = 0.5
_RECONNECT_MAX = 5.0
# Run ids per statement: a NOTIFY payload is at most 8000 bytes; each id goes alone.
_BATCH = 500


def libpq_conninfo(url: URL) -> str:
    """The SQLAlchemy URL as libpq takes it."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PeerSignals:
    def __init__(
        self,
        conninfo: str,
        *,
        on_queue: Callable[[], None],
        on_run: Callable[[int], None],
    ) -> None:
        self._conninfo = conninfo
        self._on_queue = on_queue
        self._on_run = on_run
        # Tells this process's notifications from its peers' (a pid alone may repeat
        # across hosts).
        self._origin = f"{os.getpid()}.{secrets.token_hex(4)}"
        self._cond = threading.Condition()
        self._queue_pending = False
        self._runs_pending: set[int] = set()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_loop, name="peer-signals-send", daemon=True),
            threading.Thread(target=self._listen_loop, name="peer-signals-listen", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # --- sending -----------------------------------------------------------------------

    def publish_queue(self) -> None:
        """Peers' long-polling runners look for work again. Never blocks."""
        with self._cond:
            self._queue_pending = True
            self._cond.notify()

    def publish_run(self, run_id: int) -> None:
        """Peers' followers of the run read it again. Never blocks."""
        with self._cond:
            self._runs_pending.add(run_id)
            self._cond.notify()

    def _take(self) -> tuple[bool, list[int]] | None:
        with self._cond:
            while not (self._queue_pending or self._runs_pending):
                if self._stopping.is_set():
                    return None
                self._cond.wait()
            queue, runs = self._queue_pending, sorted(self._runs_pending)
            self._queue_pending, self._runs_pending = False, set()
            return queue, runs

    def _send_loop(self) -> None:
        connection: psycopg.Connection[Any] | None = None
        delay = 0.1
        while (taken := self._take()) is not None:
            queue, runs = taken
            try:
                if connection is None or connection.closed:
                    connection = psycopg.connect(self._conninfo, autocommit=True)
                self._send(connection, queue, runs)
                delay = 0.1
            except psycopg.Error as exc:
                # Lost, not retried: peers' waiters re-check on their own.
                log.warning("peer notification not sent", extra={"error": str(exc)})
                if connection is not None:
                    connection.close()
                connection = None
                self._stopping.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX)
        if connection is not None:
            connection.close()

    def _send(self, connection: psycopg.Connection[Any], queue: bool, runs: list[int]) -> None:
        payloads = [(QUEUE_CHANNEL, self._origin)] if queue else []
        payloads += [(RUN_CHANNEL, f"{self._origin} {run_id}") for run_id in runs]
        for start in range(0, len(payloads), _BATCH):
            batch = payloads[start : start + _BATCH]
            calls = ", ".join("pg_notify(%s, %s)" for _ in batch)
            connection.execute(
                f"SELECT {calls}",
                [value for pair in batch for value in pair],
            )

    # --- listening ---------------------------------------------------------------------

    def _listen_loop(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {QUEUE_CHANNEL}")
                    connection.execute(f"LISTEN {RUN_CHANNEL}")
                    # Whatever peers said while this process was not listening.
                    self._on_queue()
                    delay = 0.1
                    while not self._stopping.is_set():
                        for notification in connection.notifies(timeout=_LISTEN_TICK):
                            self._dispatch(notification.channel, notification.payload)
            except psycopg.Error as exc:
                log.warning(
                    "peer notifications interrupted; listening again",
                    extra={"error": str(exc), "retry_in_seconds": delay},
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, _RECONNECT_MAX)

    def _dispatch(self, channel: str, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        if origin == self._origin:
            return
        if channel == QUEUE_CHANNEL:
            self._on_queue()
        elif channel == RUN_CHANNEL and rest.isdigit():
            self._on_run(int(rest))
