"""The services' log formats: one JSON object per line, or one line for people."""

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from minitower_shared.log_context import bound_ids
from minitower_shared.logging_setup import configure_logging, resolve_format
from minitower_shared.states import RunStatus

log = logging.getLogger("minitower.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put pytest's handlers back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_the_fields_the_ids_and_the_extra() -> None:
    out = io.StringIO()
    assert configure_logging("runner", "info", "json", fields={"runner": "r-1"}, stream=out) == (
        "json"
    )
    with bound_ids(run_id=12, attempt_no=2):
        log.info("lease expired", extra={"status": RunStatus.QUEUED, "phases_ms": {"start": 1.5}})
    log.debug("not at info")
    (line,) = json_lines(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("ts")), line
    assert line == {
        "level": "info",
        "service": "runner",
        "event": "lease expired",
        "logger": "minitower.test",
        "runner": "r-1",
        "run_id": 12,
        "attempt_no": 2,
        "status": "queued",
        "phases_ms": {"start": 1.5},
    }


def test_ts_is_utc_with_milliseconds() -> None:
    out = io.StringIO()
    configure_logging("api", "info", "json", stream=out)
    log.info("tick")
    (line,) = json_lines(out)
    logged = datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - logged).total_seconds()) < 5


def test_the_call_s_extra_wins_over_the_context_and_the_context_ends_with_its_block() -> None:
    out = io.StringIO()
    configure_logging("api", "info", "json", stream=out)
    with bound_ids(request_id="outer", run_id=1):
        with bound_ids(request_id="inner"):
            log.info("one", extra={"run_id": 2})
        log.info("two")
    log.info("three")
    one, two, three = json_lines(out)
    assert (one["request_id"], one["run_id"]) == ("inner", 2)
    assert (two["request_id"], two["run_id"]) == ("outer", 1)
    assert "request_id" not in three and "run_id" not in three


def test_an_exception_is_one_line_with_its_traceback_in_exc() -> None:
    out = io.StringIO()
    configure_logging("reaper", "info", "json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("reaper pass failed", extra={"run_id": 3})
    assert len(out.getvalue().splitlines()) == 1
    (line,) = json_lines(out)
    assert (line["level"], line["event"], line["run_id"]) == ("error", "reaper pass failed", 3)
    assert line["exc"].startswith("Traceback (most recent call last)")
    assert line["exc"].rstrip().endswith("ValueError: boom")


def test_a_message_with_arguments_is_formatted_and_other_values_are_text() -> None:
    out = io.StringIO()
    configure_logging("api", "info", "json", stream=out)
    log.info("Started server process [%d]", 42, extra={"where": Path("/var/lib/minitower")})
    (line,) = json_lines(out)
    assert (line["event"], line["where"]) == ("Started server process [42]", "/var/lib/minitower")


def test_the_console_line() -> None:
    out = io.StringIO()
    assert configure_logging("runner", "info", "console", fields={"runner": "r-1"}, stream=out) == (
        "console"
    )
    with bound_ids(run_id=12, attempt_no=2):
        log.warning(
            "reported",
            extra={"status": "completed", "error": "two words", "phases_ms": {"start": 1.5}},
        )
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} warning runner reported runner=r-1 run_id=12 attempt_no=2 "
        r'status=completed error="two words" phases_ms=\{"start":1\.5\}',
        line,
    ), line


def test_the_console_shows_an_exception_under_its_line() -> None:
    out = io.StringIO()
    configure_logging("api", "info", "console", stream=out)
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        log.exception("unhandled error", extra={"path": "/x"})
    first, *rest = out.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} error   api    unhandled error path=/x", first)
    assert rest[0].startswith("Traceback") and rest[-1] == "RuntimeError: kaput"


def test_auto_is_console_at_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", Tty()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Tty()) == "json"
    assert resolve_format("console", io.StringIO()) == "console"


def test_uvicorn_s_loggers_come_through_the_same_handler() -> None:
    out = io.StringIO()
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler(sys.stderr))
    uvicorn_error.propagate = False
    configure_logging("api", "info", "json", stream=out)
    uvicorn_error.info("Application startup complete.")
    (line,) = json_lines(out)
    assert (line["service"], line["logger"]) == ("api", "uvicorn.error")


def test_alembic_s_announcements_stay_quiet() -> None:
    out = io.StringIO()
    configure_logging("api", "info", "json", stream=out)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    assert out.getvalue() == ""
