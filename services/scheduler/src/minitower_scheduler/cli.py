"""``minitower-scheduler``: the cron scheduler as its own process."""

from datetime import timedelta
from typing import Annotated

import typer

from minitower_scheduler.service import run_forever, tick
from minitower_scheduler.settings import SchedulerSettings
from minitower_shared.clock import utcnow
from minitower_shared.db import write_session
from minitower_shared.service_process import start_service, stop_event_on_signals

app = typer.Typer(add_completion=False)


@app.command(
    help="Fire the cron schedules that are due, as runs, and sleep until the next one, "
    "until SIGTERM or SIGINT. Reads MINITOWER_DB_PATH, MINITOWER_SCHEDULE_CHECK_INTERVAL, "
    "MINITOWER_SCHEDULE_MAX_CATCHUP, MINITOWER_SCHEDULE_MISFIRE_GRACE."
)
def scheduler(
    once: Annotated[bool, typer.Option("--once", help="Make one tick and exit")] = False,
) -> None:
    settings, engine = start_service("scheduler", SchedulerSettings)
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
    stop = stop_event_on_signals("scheduler")
    run_forever(engine, settings, stop=stop)
    engine.dispose()


def main() -> None:
    app()
