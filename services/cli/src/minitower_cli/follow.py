"""Following a run: its log lines as they come (over the SSE stream), then its outcome.

The app's stdout lines go to stdout and its stderr lines to stderr, unchanged; the CLI's
own lines (attempt headers, the outcome, reconnects) go to stderr. The stream is resumed
with ``Last-Event-ID`` when the connection drops, so no line is shown twice or lost.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from minitower_cli.client import STREAM_READ_TIMEOUT, ApiClient
from minitower_cli.errors import (
    RUN_EXIT_CODES,
    CliError,
    ConnectionFailed,
    RequestRefused,
    WaitTimedOut,
)
from minitower_cli.output import Output, duration, human_seconds, status_text
from minitower_shared.schemas import LogLinePublic, LogStreamEnd, RunPublic
from minitower_shared.states import RunStatus

_Event = TypeVar("_Event", bound=BaseModel)

MAX_RECONNECTS = 8
_RECONNECT_BACKOFF_CAP = 5.0


class LogPrinter:
    """Writes log entries as they arrive: the line itself, or one JSON object per line."""

    def __init__(self, output: Output, *, json_lines: bool = False) -> None:
        self._output = output
        self._json = json_lines
        self._attempt: int | None = None

    def entry(self, entry: LogLinePublic) -> None:
        if self._json:
            sys.stdout.write(json.dumps(entry.model_dump(mode="json"), ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        attempt = entry.attempt_no
        if attempt != self._attempt:
            if self._attempt is not None or attempt > 1:
                self._output.status(Text(f"── attempt {attempt} ──", style="bright_black"))
            self._attempt = attempt
        stream = sys.stderr if entry.stream == "stderr" else sys.stdout
        stream.write(f"{entry.line}\n")
        stream.flush()


class Waiting:
    """A pulsing bar with the run's status while nothing has arrived yet (on a terminal
    only). Shown after half a second, so a run that is already done never flashes one."""

    def __init__(self, output: Output, describe: Callable[[], str], interval: float = 2.0):
        self._output = output
        self._describe = describe
        self._interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._progress: Progress | None = None

    def start(self) -> Waiting:
        if self._output.err.is_terminal:
            threading.Thread(target=self._run, name="waiting", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._progress is not None:
                self._progress.stop()
        self._wake.set()

    def _run(self) -> None:
        if self._wake.wait(0.5):
            return
        with self._lock:
            if self._stopped:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=self._output.err,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            task = self._progress.add_task("waiting", total=None)
        while True:
            try:
                text = self._describe()
            except Exception:  # a status poll failing must not end the follow
                text = "waiting"
            with self._lock:
                if self._stopped:
                    return
                self._progress.update(task, description=text)
            if self._wake.wait(self._interval):
                return


def describe_waiting(client_factory: Callable[[], ApiClient], run_id: int) -> Callable[[], str]:
    """The Waiting bar's text: what the run is waiting for, from its status."""
    holder: dict[str, ApiClient] = {}

    def describe() -> str:
        client = holder.get("client")
        if client is None:
            client = holder["client"] = client_factory()
        run = client.get(RunPublic, f"/api/v1/runs/{run_id}")
        status = run.status
        if status == RunStatus.QUEUED:
            return f"run {run_id} queued: waiting for a runner (environment {run.environment})"
        if status in (RunStatus.LEASED, RunStatus.RUNNING):
            return f"run {run_id} {status}: waiting for output"
        return f"run {run_id} {status}"

    return describe


def follow_run(
    client: ApiClient,
    run_id: int,
    printer: LogPrinter,
    output: Output,
    *,
    timeout: float | None = None,
    waiting: Waiting | None = None,
) -> RunStatus:
    """Print the run's lines until it is terminal; return its final status. Raises
    WaitTimedOut once ``timeout`` seconds have passed, ConnectionFailed when the stream
    cannot be had back after several tries."""
    path = f"/api/v1/runs/{run_id}/logs/stream"
    deadline = time.monotonic() + timeout if timeout is not None else None
    last_id: str | None = None
    failures = 0

    def left() -> float:
        if deadline is None:
            return STREAM_READ_TIMEOUT
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if waiting is not None:
                waiting.stop()
            raise WaitTimedOut(_timed_out(client, run_id, timeout))
        return remaining

    try:
        while True:
            read_timeout = min(STREAM_READ_TIMEOUT, left() + 0.05)
            try:
                for event in client.stream_events(
                    path, last_event_id=last_id, read_timeout=read_timeout
                ):
                    if event.event == "log":
                        entry = _event(LogLinePublic, event.data)
                        if waiting is not None:
                            waiting.stop()
                        printer.entry(entry)
                        last_id = event.id or last_id
                        failures = 0
                    elif event.event == "end":
                        status = _event(LogStreamEnd, event.data).status
                        if status is None:
                            raise CliError(f"run {run_id} no longer exists")
                        return status
                    left()
                problem = "the log stream closed early"
            except ConnectionFailed as exc:
                problem = exc.message
            except RequestRefused as exc:
                # A restarting API (or its proxy) answers 5xx for a moment: try again.
                if exc.status < 500:
                    raise
                problem = exc.message
            left()
            failures += 1
            if failures > MAX_RECONNECTS:
                raise ConnectionFailed(f"{problem}; gave up following run {run_id}")
            if failures == 1:
                if waiting is not None:
                    waiting.stop()
                output.status(Text(f"{problem}; reconnecting…", style="yellow"))
            pause = min(0.25 * 2**failures, _RECONNECT_BACKOFF_CAP)
            time.sleep(min(pause, max(left(), 0.0)))
    finally:
        if waiting is not None:
            waiting.stop()


def _event(model: type[_Event], data: str) -> _Event:
    try:
        return model.model_validate_json(data)
    except ValueError as exc:
        raise ConnectionFailed(
            f"the log stream sent an event that is not the API's {model.__name__}: {exc}"
        ) from exc


def _timed_out(client: ApiClient, run_id: int, timeout: float | None) -> str:
    waited = human_seconds(timeout or 0)
    try:
        status = client.get(RunPublic, f"/api/v1/runs/{run_id}").status
    except CliError:
        return f"stopped waiting after {waited}: run {run_id} has not ended"
    return f"stopped waiting after {waited}: run {run_id} is still {status}"


def report_outcome(output: Output, run: RunPublic) -> int:
    """The run's outcome as a status line on stderr; returns the exit code for it."""
    run_id, status = run.run_id, run.status
    took = duration(run.started_at, run.finished_at)
    line = Text()
    line.append_text(Text(f"run {run_id} "))
    line.append_text(status_text(status))
    if status == RunStatus.COMPLETED:
        line.append(f" in {took}" if took else "")
    elif status == RunStatus.FAILED:
        code = run.exit_code
        line.append(f" (exit code {code})" if code is not None else "")
        line.append(f" after {took}" if took else "")
        message = run.error_message
        if message and message != f"exited with code {code}":
            line.append(f": {message}")
    elif status == RunStatus.DEAD:
        line.append(": its lease expired with no retries left")
        if run.error_message:
            line.append(f" ({run.error_message})")
    elif status == RunStatus.CANCELLED and took:
        line.append(f" after {took}")
    output.status(line)
    if status not in RUN_EXIT_CODES:
        raise CliError(f"run {run_id} ended in an unexpected status {status!r}")
    return RUN_EXIT_CODES[status]
