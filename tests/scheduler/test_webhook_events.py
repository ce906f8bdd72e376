"""A due time the scheduler skips is a ``schedule.skipped`` event for the team's
webhooks that want it, written in the tick's transaction with the skip itself."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from minitower_scheduler.service import tick
from minitower_shared.clock import utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.models import WebhookDelivery, WebhookEvent
from minitower_shared.store import webhooks as webhook_store
from tests.support.seed import Seeded, add_runner, add_schedule, must_lease

T0 = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


def test_an_overlap_skip_is_a_schedule_skipped_event(engine: Engine, seeded: Seeded) -> None:
    with write_session(engine) as session:
        webhook = webhook_store.create_webhook(
            session,
            team_id=seeded.team_id,
            app_id=None,
            url="https://hooks.example.com/x",
            events=["schedule.skipped"],
            secret="s" * 20,
            format="json",
            now=utcnow(),
        )
    sid = add_schedule(engine, seeded.app, now=T0, overlap="skip", name="nightly")
    runner = add_runner(engine, "r")
    clock = datetime(2026, 6, 1, 12, 1, 1, tzinfo=UTC)
    for minute in (1, 2):
        with write_session(engine) as session:
            tick(
                session,
                clock.replace(minute=minute),
                max_catchup=10,
                grace=timedelta(seconds=60),
                name="t",
            )
        if minute == 1:
            must_lease(engine, runner, now=clock, ttl=timedelta(hours=1))
    with read_session(engine) as session:
        (event,) = session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id))).all()
        (delivery,) = session.exec(select(WebhookDelivery)).all()
    assert event.type == "schedule.skipped" and delivery.webhook_id == webhook.id
    skipped = event.payload["schedule"]
    assert (skipped["id"], skipped["name"], skipped["app"]) == (sid, "nightly", "hello")
    assert skipped["scheduled_for"] == "2026-06-01T12:02:00.000Z"
    assert "has not finished" in skipped["reason"]
