"""``minitower-reaper``: the lease reaper as its own process."""

import logging
import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Annotated

import typer

from minitower_reaper.service import run_forever, tick
from minitower_reaper.settings import ReaperSettings
from minitower_shared.clock import utcnow
from minitower_shared.config import load_settings
from minitower_shared.db import create_db_engine, reader, write_session
from minitower_shared.logging_setup import configure_logging
from minitower_shared.migrate import current_revision, head_revision

app = typer.Typer(add_completion=False)


@app.command(
    help="Expire lost leases (retrying or burying their runs) and mark silent runners "
    "offline, every MINITOWER_EXPIRY_CHECK_INTERVAL, until SIGTERM or SIGINT. Reads "
    "MINITOWER_DB_PATH, MINITOWER_EXPIRY_CHECK_INTERVAL, MINITOWER_RUNNER_OFFLINE_AFTER."
)
def reaper(
    once: Annotated[bool, typer.Option("--once", help="Make one pass and exit")] = False,
) -> None:
    settings = load_settings(ReaperSettings, "minitower-reaper")
    configure_logging("reaper", settings.log_level, settings.log_format)
    if not settings.db_path.exists():
        typer.echo(
            f"minitower-reaper: database {settings.db_path} does not exist; "
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
    # A reaper on a schema it does not know would fail every pass, or worse, half-work.
    revision, head = current_revision(reader(engine)), head_revision()
    if revision != head:
        typer.echo(
            f"minitower-reaper: database {settings.db_path} is at migration {revision}, "
            f"this reaper needs {head}; run `minitowerd migrate` first",
            err=True,
        )
        raise typer.Exit(2)
    offline_after = timedelta(seconds=settings.runner_offline_after)
    if once:
        with write_session(engine) as session:
            result = tick(
                session, utcnow(), runner_offline_after=offline_after, name=settings.reaper_name
            )
        typer.echo(
            f"expired {len(result.expired)} leases, marked {result.runners_offline} runners offline"
        )
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("minitower.reaper").info(
            "stopping", extra={"signal": signal.Signals(signum).name}
        )
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_forever(
        engine,
        interval=settings.expiry_check_interval,
        runner_offline_after=offline_after,
        stop=stop,
        name=settings.reaper_name,
    )
    engine.dispose()


def main() -> None:
    app()
