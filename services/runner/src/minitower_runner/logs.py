"""Run output to the API: lines numbered per attempt, sent in batches, resent until taken.

The server ignores a ``seq`` it already holds, so a batch whose answer was lost is simply
sent again. Lines wait in memory while the API is away; past ``max_pending`` the workload's
writes block (its pipe fills) rather than lines being dropped.
"""

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from minitower_runner.client import LeaseGone, Unavailable, failure_ids
from minitower_runner.redaction import Redactor
from minitower_shared.clock import rfc3339
from minitower_shared.log_context import carry_context

log = logging.getLogger("minitower.runner")

# Well under the API's 64 Ki characters per line, so the marker always fits.
MAX_LINE_BYTES = 32 * 1024
CUT_MARKER = " [minitower: line cut, {dropped} more bytes not kept]"
# A line that ends so was cut (a workload printing this itself only gets more masking).
_CUT = re.compile(re.escape(CUT_MARKER).replace(r"\{dropped\}", r"[0-9]+") + r"\Z")
# Well under the API's request limit (2 MiB by default) once JSON adds its framing.
MAX_BATCH_BYTES = 512 * 1024

Sender = Callable[[list[dict[str, Any]]], None]


def split_lines(stream: IO[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Decoded lines of ``stream`` without their newline. A line longer than
    ``max_line_bytes`` is cut there and its rest replaced by a marker saying how much."""
    while True:
        chunk = stream.readline(max_line_bytes)
        if not chunk:
            return
        if chunk.endswith(b"\n") or len(chunk) < max_line_bytes:
            yield chunk.rstrip(b"\r\n").decode("utf-8", errors="replace")
            continue
        dropped = 0
        while True:
            rest = stream.readline(max_line_bytes)
            if not rest or rest.endswith(b"\n"):
                dropped += len(rest.rstrip(b"\r\n"))
                break
            dropped += len(rest)
        # A cut may split a multi-byte character: the decoder's replacement marks it.
        text = chunk.decode("utf-8", errors="replace")
        yield f"{text}{CUT_MARKER.format(dropped=dropped)}"


def _wire(item: dict[str, Any]) -> dict[str, Any]:
    """A queued line as the API takes it (without the shipper's own bookkeeping)."""
    return {k: v for k, v in item.items() if k != "_bytes"}


class LogShipper:
    """Collects lines from any thread and sends them from one of its own."""

    def __init__(
        self,
        send: Sender,
        *,
        batch_lines: int,
        flush_interval: float,
        on_gone: Callable[[], None],
        max_pending: int = 50_000,
    ) -> None:
        self._send = send
        self._batch_lines = batch_lines
        self._flush_interval = flush_interval
        self._on_gone = on_gone
        self._max_pending = max_pending
        self._pending: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._next_seq = 1
        self._closing = False
        # Set by close(keep_last_batch=True): the last batch is left for take_rest.
        self._keep_last = False
        self._abandoned = False
        self._sent_through = 0
        # Secret values go out of every line before it is queued (redaction.py).
        self._redactor = Redactor(())
        self._thread = threading.Thread(
            target=carry_context(self._run), name="log-shipper", daemon=True
        )
        self._thread.start()

    @property
    def lines_sent(self) -> int:
        return self._sent_through

    def redact(self, values: list[str]) -> None:
        """Replace these values with ``***`` in every line added from now on."""
        with self._cond:
            self._redactor = Redactor(values)

    def add(self, stream: str, line: str, *, block: bool = True) -> None:
        """Queue a line. A workload's writer blocks while ``max_pending`` lines wait;
        the runner's own few lines (``block=False``) never do."""
        with self._cond:
            while block and len(self._pending) >= self._max_pending and not self._abandoned:
                self._cond.wait(0.5)
            if self._abandoned:
                return
            was_empty = not self._pending
            marker = _CUT.search(line)
            if marker is None:
                lines = self._redactor.feed(stream, line)
            else:
                lines = self._redactor.feed(stream, line[: marker.start()], cut=True)
                lines[-1] += marker.group()
            for redacted in lines:
                self._enqueue(stream, redacted)
            # Wake the sender for the first line or a held one (either starts the flush
            # clock) and a full batch.
            if was_empty or len(self._pending) >= self._batch_lines:
                self._cond.notify_all()

    def _enqueue(self, stream: str, line: str) -> None:
        self._pending.append(
            {
                "seq": self._next_seq,
                "stream": stream,
                "line": line,
                "logged_at": rfc3339(datetime.now(UTC)),
                # What the line costs in the JSON body: escapes make control and
                # non-ASCII characters up to 12 bytes each.
                "_bytes": len(json.dumps(line)) + 96,
            }
        )
        self._next_seq += 1

    def _release_held(self) -> None:
        """Lines the redactor held back waiting for a value's continuation go as they are."""
        for stream, line in self._redactor.flush():
            self._enqueue(stream, line)

    def close(self, deadline: float, *, keep_last_batch: bool = False) -> bool:
        """Send everything still pending, or with ``keep_last_batch`` all but the last
        batch, which :meth:`take_rest` then hands over (to go with the result). True when
        all of it was accepted by ``deadline`` (monotonic), False when the lease went or
        time ran out."""
        with self._cond:
            self._closing = True
            self._keep_last = keep_last_batch
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.abandon()
            return False
        return not self._abandoned

    def take_rest(self) -> list[dict[str, Any]]:
        """The lines ``close(keep_last_batch=True)`` left unsent, taken out of the queue."""
        with self._cond:
            if self._abandoned:
                return []
            rest = [_wire(item) for item in self._pending]
            self._pending.clear()
            return rest

    def abandon(self) -> None:
        """Stop sending: the lease is gone, nobody will take these lines."""
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """Wait for a full batch, the flush interval or closing; None when done."""
        with self._cond:
            due: float | None = None
            while True:
                if self._abandoned:
                    return None
                if self._closing:
                    self._release_held()
                    if not self._pending or (self._keep_last and self._fits_one_batch()):
                        return None
                    break
                if not self._pending and not self._redactor.holding:
                    due = None
                    self._cond.wait()
                    continue
                if len(self._pending) >= self._batch_lines:
                    break
                now = time.monotonic()
                if due is None:
                    due = now + self._flush_interval
                if now >= due:
                    self._release_held()
                    break
                self._cond.wait(due - now)
            batch: list[dict[str, Any]] = []
            size = 0
            for item in self._pending:
                if len(batch) >= self._batch_lines or (
                    batch and size + item["_bytes"] > MAX_BATCH_BYTES
                ):
                    break
                batch.append(item)
                size += item["_bytes"]
            return batch

    def _fits_one_batch(self) -> bool:
        return (
            len(self._pending) <= self._batch_lines
            and sum(item["_bytes"] for item in self._pending) <= MAX_BATCH_BYTES
        )

    def _run(self) -> None:
        delay = 0.1
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send([_wire(item) for item in batch])
            except LeaseGone:
                self.abandon()
                self._on_gone()
                return
            except Unavailable as exc:
                log.warning(
                    "log batch not sent; retrying",
                    extra={"error": str(exc), "retry_in_seconds": delay, **failure_ids(exc)},
                )
                with self._cond:
                    self._cond.wait_for(lambda: self._abandoned, timeout=delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception:
                # A refused batch (4xx) would be refused forever: drop it, keep the rest.
                log.exception(
                    "log batch refused by the API; dropping it", extra={"lines": len(batch)}
                )
            delay = 0.1
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
                self._sent_through = batch[-1]["seq"]
                self._cond.notify_all()
