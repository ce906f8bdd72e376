"""The services' logs: one event per line on stdout, JSON for machines or plain for people.

A log call names its event with constant text and passes the ids as ``extra``::

    log.info("lease expired", extra={"run_id": 12, "attempt_no": 2, "status": "queued"})

A JSON line holds ``ts`` (UTC, ms), ``level``, ``service``, ``event``, ``logger``, the
process's own fields (a runner's ``runner``), the ids bound in the context
(``request_id``, ``run_id``, ``attempt_no``: see ``log_context``), the call's ``extra``
and, after an exception, ``exc`` (its traceback). The console format shows the same as
``HH:MM:SS.mmm level service event key=value ...`` in local time.
"""

import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import IO, Any, Literal

from minitower_shared.log_context import current_ids

LogFormat = Literal["auto", "json", "console"]

_IDS_ATTR = "minitower_ids"
# What every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    _IDS_ATTR,
    # uvicorn's copy of its message with terminal colours.
    "color_message",
}


def _stamp_ids(record: logging.LogRecord) -> bool:
    """Takes the context's ids when the record is handled (on the thread that logged it)."""
    if not hasattr(record, _IDS_ATTR):
        setattr(record, _IDS_ATTR, current_ids())
    return True


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class _EventFormatter(logging.Formatter):
    def __init__(self, service: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.service = service
        self.fields = dict(fields or {})

    def event_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The process's fields, the context's ids, then the call's extra (which win)."""
        found = {**self.fields, **getattr(record, _IDS_ATTR, current_ids())}
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                found[key] = value
        return {key: _plain(value) for key, value in found.items()}

    def problem(self, record: logging.LogRecord) -> str | None:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts) or None


class JsonFormatter(_EventFormatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in self.event_fields(record).items():
            line.setdefault(key, value)
        problem = self.problem(record)
        if problem is not None:
            line["exc"] = problem
        return json.dumps(line, ensure_ascii=False, default=str)


def _console_value(value: Any) -> str:
    """Text as it is unless it would blur the key=value pairs (then quoted), anything
    else as compact JSON (``phases_ms={"start":3.1}``, ``exit_code=null``)."""
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if not value or any(c.isspace() or c in '"=' for c in value):
        return json.dumps(value, ensure_ascii=False)
    return value


class ConsoleFormatter(_EventFormatter):
    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [
            f"{clock}.{int(record.msecs):03d}",
            f"{record.levelname.lower():<7}",
            f"{self.service:<6}",
            record.getMessage(),
        ]
        parts += [
            f"{key}={_console_value(value)}" for key, value in self.event_fields(record).items()
        ]
        line = " ".join(parts)
        problem = self.problem(record)
        return line if problem is None else f"{line}\n{problem}"


def resolve_format(fmt: LogFormat, stream: IO[str]) -> Literal["json", "console"]:
    """``auto`` is for people at a terminal, JSON everywhere else (compose, files, pipes)."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return "console" if isatty is not None and isatty() else "json"
    return fmt


def configure_logging(
    service: str,
    level: str,
    fmt: LogFormat = "auto",
    *,
    fields: Mapping[str, Any] | None = None,
    stream: IO[str] | None = None,
) -> Literal["json", "console"]:
    """Send every logger's records (uvicorn's included) to one handler on ``stream``
    (stdout), formatted for ``service``; returns the format chosen."""
    out = stream if stream is not None else sys.stdout
    chosen = resolve_format(fmt, out)
    handler = logging.StreamHandler(out)
    formatter = JsonFormatter if chosen == "json" else ConsoleFormatter
    handler.setFormatter(formatter(service, fields))
    handler.addFilter(_stamp_ids)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers come through the root's handler like everyone else's.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Alembic announces its context on every revision check (/ready, start-up): noise.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    return chosen
