"""``minitower-reaper``: the lease reaper as its own process, with the webhook delivery
loop beside it in a second thread."""

import threading
from datetime import timedelta
from typing import Annotated

import typer

from minitower_reaper.service import run_forever, tick
from minitower_reaper.settings import ReaperSettings
from minitower_reaper.webhook_delivery import DeliveryPolicy, run_deliveries
from minitower_shared.clock import utcnow
from minitower_shared.db import write_session
from minitower_shared.service_process import start_service, stop_event_on_signals

app = typer.Typer(add_completion=False)


@app.command(
    help="Expire lost leases (retrying or burying their runs) and mark silent runners "
    "offline, every MINITOWER_EXPIRY_CHECK_INTERVAL, and deliver webhooks "
    "(MINITOWER_WEBHOOK_*), until SIGTERM or SIGINT. Reads MINITOWER_DB_PATH, "
    "MINITOWER_EXPIRY_CHECK_INTERVAL, MINITOWER_RUNNER_OFFLINE_AFTER."
)
def reaper(
    once: Annotated[bool, typer.Option("--once", help="Make one pass and exit")] = False,
) -> None:
    settings, engine = start_service("reaper", ReaperSettings)
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
    stop = stop_event_on_signals("reaper")
    deliveries = None
    if settings.webhook_delivery_enabled:
        deliveries = threading.Thread(
            target=run_deliveries,
            name="webhook-delivery",
            args=(engine, delivery_policy(settings)),
            kwargs={"interval": settings.webhook_poll_interval, "stop": stop},
        )
        deliveries.start()
    run_forever(
        engine,
        interval=settings.expiry_check_interval,
        runner_offline_after=offline_after,
        stop=stop,
        name=settings.reaper_name,
    )
    if deliveries is not None:
        deliveries.join()
    engine.dispose()


def delivery_policy(settings: ReaperSettings) -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout=settings.webhook_timeout,
        allow_private=settings.webhook_allow_private,
        max_age=timedelta(seconds=settings.webhook_max_age),
        backoff_base=settings.webhook_backoff_base,
        backoff_cap=settings.webhook_backoff_max,
    )


def main() -> None:
    app()
