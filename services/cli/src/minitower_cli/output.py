"""Everything the CLI prints: tables and details with rich, JSON as it came, status
lines on stderr. An app's own output never goes through rich (no markup, no wrapping)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TextIO, TypeVar, cast

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from minitower_shared.states import AttemptStatus, RunnerStatus, RunStatus

Row = TypeVar("Row", bound=BaseModel)


class StdoutClosed(Exception):
    """Whoever read stdout went away (``minitower logs 12 | head``). Not an OSError, so
    that nothing on the way mistakes it for a failed request."""


class _ClosedPipeGuard:
    """stdout, with a broken pipe turned into StdoutClosed wherever it is written from."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise StdoutClosed from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise StdoutClosed from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_stdout() -> None:
    if not isinstance(sys.stdout, _ClosedPipeGuard):
        sys.stdout = cast(TextIO, _ClosedPipeGuard(sys.stdout))


Status = RunStatus | AttemptStatus | RunnerStatus

STATUS_STYLES: dict[Status, str] = {
    RunStatus.QUEUED: "bright_black",
    RunStatus.LEASED: "cyan",
    RunStatus.RUNNING: "blue",
    RunStatus.CANCELLING: "yellow",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.DEAD: "bold red",
    RunStatus.CANCELLED: "magenta",
    AttemptStatus.EXPIRED: "red",
    RunnerStatus.ONLINE: "green",
    RunnerStatus.OFFLINE: "bright_black",
}


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is read by programs: never wrap it at an imagined 80 columns.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 1000
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


class Output:
    """Rich consoles for stdout and stderr, made lazily (tests swap sys.stdout)."""

    def __init__(self) -> None:
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(stderr=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

    # --- status lines (stderr) ---------------------------------------------------------

    def status(self, message: str | Text) -> None:
        self.err.print(message, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.err.print(Text("warning: ", style="yellow") + Text(message), soft_wrap=True)

    def error(self, message: str) -> None:
        self.err.print(Text("minitower: error: ", style="bold red") + Text(message), soft_wrap=True)

    # --- data (stdout) -----------------------------------------------------------------

    def json(self, value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
        """An answer of the API (or a listing's items) as the API sent it, or the CLI's
        own report."""
        plain = (
            value.model_dump(mode="json")
            if isinstance(value, BaseModel)
            else value
            if isinstance(value, dict)
            else [item.model_dump(mode="json") for item in value]
        )
        sys.stdout.write(json.dumps(plain, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def plain(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def table(self, columns: Sequence[Column[Row]], rows: Iterable[Row]) -> None:
        rows = list(rows)
        table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
        cells = [[column.render(row) for column in columns] for row in rows]
        needed = 2 * (len(columns) - 1)
        for index, column in enumerate(columns):
            widest = max([len(column.header)] + [row[index].cell_len for row in cells])
            needed += widest if column.keep else min(widest, max(len(column.header), 12))
            if column.keep:
                # Ids, slugs and statuses are never shortened, whatever the width.
                table.add_column(
                    column.header, no_wrap=True, min_width=widest, justify=column.justify
                )
            else:
                table.add_column(column.header, overflow="fold", justify=column.justify)
        for cell_row in cells:
            table.add_row(*cell_row)
        if not rows:
            self.status(Text("(none)", style="bright_black"))
            return
        # Wider than the terminal rather than cut: the terminal wraps, nothing is lost.
        width = self.out.width
        self.out.width = max(width, needed)
        try:
            self.out.print(table, crop=False)
        finally:
            self.out.width = width

    def listing(self, columns: Sequence[Column[Row]], rows: Sequence[Row], as_json: bool) -> None:
        """A listing as the API's objects in JSON (``--json``), else as a table."""
        if as_json:
            self.json(rows)
        else:
            self.table(columns, rows)

    def details(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """``key  value`` lines, values never cut."""
        width = max(len(key) for key, _ in pairs)
        for key, value in pairs:
            text = Text(f"{key:<{width}}  ", style="bold")
            text.append_text(value if isinstance(value, Text) else Text(_show(value)))
            self.out.print(text, soft_wrap=True)


@dataclass(frozen=True)
class Column(Generic[Row]):
    header: str
    value: Callable[[Row], Any]
    keep: bool = False
    justify: Any = "left"
    style: Callable[[Row], str | None] | None = None

    def render(self, row: Row) -> Text:
        value = self.value(row)
        if isinstance(value, Text):
            return value
        return Text(_show(value), style=(self.style(row) if self.style else None) or "")


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def status_text(status: Status | None) -> Text:
    if status is None:
        return Text("-")
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def short_time(value: datetime | None) -> str | None:
    """``2026-11-27 20:30:05`` (UTC), or None."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else None


def duration(start: datetime | None, end: datetime | None) -> str | None:
    """``1.2s``, ``3m04s``, ``2h05m``; to now when the run has not ended."""
    if start is None:
        return None
    return human_seconds(((end or datetime.now(UTC)) - start).total_seconds())


def human_seconds(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
