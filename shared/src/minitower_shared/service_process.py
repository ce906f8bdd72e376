"""Start-up shared by the background services (reaper, scheduler): settings, logging,
the database checks and stopping on SIGTERM/SIGINT."""

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import NoReturn, TypeVar

from sqlalchemy import Engine

from minitower_shared.config import load_settings
from minitower_shared.db import create_db_engine, reader
from minitower_shared.logging_setup import configure_logging
from minitower_shared.migrate import current_revision, head_revision
from minitower_shared.service_settings import DatabaseServiceSettings

_Settings = TypeVar("_Settings", bound=DatabaseServiceSettings)


def _fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def start_service(service: str, factory: Callable[[], _Settings]) -> tuple[_Settings, Engine]:
    """The settings and an engine on a migrated database, or exit 2 with one line.

    ``service`` names the program (``minitower-<service>``) and its logger.
    """
    program = f"minitower-{service}"
    settings = load_settings(factory, program)
    configure_logging(service, settings.log_level, settings.log_format)
    if settings.database_url is None and not settings.db_path.exists():
        _fail(
            f"{program}: database {settings.db_path} does not exist; run `minitowerd migrate` first"
        )
    engine = create_db_engine(
        settings.database,
        pool_size=1,
        busy_timeout=settings.db_busy_timeout,
        slow_query_threshold=settings.slow_query_threshold,
        statement_timeout=settings.db_statement_timeout,
    )
    # A service on a schema it does not know would fail every pass, or worse, half-work.
    revision, head = current_revision(reader(engine)), head_revision()
    if revision != head:
        _fail(
            f"{program}: database {settings.database_label} is at migration {revision}, "
            f"this {service} needs {head}; run `minitowerd migrate` first"
        )
    return settings, engine


def stop_event_on_signals(service: str) -> threading.Event:
    """An event set (and logged) at the first SIGTERM or SIGINT."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(f"minitower.{service}").info(
            "stopping", extra={"signal": signal.Signals(signum).name}
        )
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop
