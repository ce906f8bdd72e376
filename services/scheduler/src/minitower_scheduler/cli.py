"""``minitower-scheduler``: the cron scheduler as its own process."""

import logging
import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Annotated

import typer

from minitower_scheduler.service import run_forever, tick
from minitower_scheduler.settings import SchedulerSettings
from minitower_shared.clock import utcnow
from minitower_shared.config import load_settings
from minitower_shared.db import create_db_engine, reader, write_session
from minitower_shared.logging_setup import configure_logging
from minitower_shared.migrate import current_revision, head_revision

app = typer.Typer(add_completion=False)


@app.command(
    help="Fire the cron schedules that are due, as runs, and sleep until the next one, "
    "until SIGTERM or SIGINT. Reads MINITOWER_DB_PATH, MINITOWER_SCHEDULE_CHECK_INTERVAL, "
    "MINITOWER_SCHEDULE_MAX_CATCHUP, MINITOWER_SCHEDULE_MISFIRE_GRACE."
)
def scheduler(
    once: Annotated[bool, typer.Option("--once", help="Make one tick and exit")] = False,
) -> None:
    settings = load_settings(SchedulerSettings, "minitower-scheduler")
    configure_logging("scheduler", settings.log_level, settings.log_format)
    if not settings.db_path.exists():
        typer.echo(
            f"minitower-scheduler: database {settings.db_path} does not exist; "
            "run `minitowerd migrate` first",
            err=True,
        )
        raise typer.Exit(2)
    engine = create_db_engine(
        settings.db_path,
        pool_size=1,
        busy_timeout=settings.db_busy_timeout,
        slow_query_threshold=settings.slow_query_threshold,
    )
    revision, head = current_revision(reader(engine)), head_revision()
    if revision != head:
        typer.echo(
            f"minitower-scheduler: database {settings.db_path} is at migration {revision}, "
            f"this scheduler needs {head}; run `minitowerd migrate` first",
            err=True,
        )
        raise typer.Exit(2)
    if once:
        with write_session(engine) as session:
            work = tick(
                session,
                settings.clock_now(utcnow()),
                max_catchup=settings.schedule_max_catchup,
                grace=timedelta(seconds=settings.schedule_misfire_grace),
                name=settings.scheduler_name,
            )
        typer.echo(f"fired {work.runs_fired} runs, skipped {work.fires_skipped} fires")
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("minitower.scheduler").info(
            "stopping", extra={"signal": signal.Signals(signum).name}
        )
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_forever(engine, settings, stop=stop)
    engine.dispose()


def main() -> None:
    app()
