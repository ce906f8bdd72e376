"""The outbox: every terminal run transition (result, cancel of a queued run, expiry of
a cancelling run, burial by lease expiry, expiry inline at lease) appends its event in
the same transaction, only for teams with a matching webhook; a rolled-back change
leaves no event."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from minitower_api.maintenance.prune import prune, summary
from minitower_reaper.service import tick
from minitower_shared.clock import utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.models import (
    Run,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)
from minitower_shared.states import AttemptStatus, RunStatus
from minitower_shared.store import lifecycle
from minitower_shared.store import webhooks as webhook_store
from minitower_shared.store.lifecycle import end_run
from tests.support.databases import Database
from tests.support.seed import (
    Seeded,
    add_runner,
    finish,
    lease,
    must_lease,
    queue_runs,
    seed_app,
    start,
)

S = timedelta(seconds=1)
ALL = list(webhook_store.SUBSCRIBABLE)


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_app(engine)


def subscribe(engine: Engine, seeded: Seeded, events: list[str], app_id: int | None = None) -> int:
    with write_session(engine) as session:
        webhook = webhook_store.create_webhook(
            session,
            team_id=seeded.team_id,
            app_id=app_id,
            url="https://hooks.example.com/x",
            events=events,
            secret="s" * 20,
            format="json",
            now=utcnow(),
        )
        assert webhook.id is not None
        return webhook.id


def events(engine: Engine) -> list[tuple[str, int | None]]:
    """(type, run id) of every event, oldest first."""
    with read_session(engine) as session:
        rows = session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id))).all()
        return [(e.type, e.payload.get("run", {}).get("id")) for e in rows]


def test_every_terminal_transition_appends_its_event(engine: Engine, seeded: Seeded) -> None:
    webhook_id = subscribe(engine, seeded, ALL)
    runner = add_runner(engine, "r1")
    now = utcnow()
    completed, failed, cancelled, dead, cancelling, inline = queue_runs(engine, seeded, 6, now=now)
    # A runner's results: completed, failed.
    for run_id, reported in ((completed, AttemptStatus.COMPLETED), (failed, AttemptStatus.FAILED)):
        grant = must_lease(engine, runner, now=now)
        assert grant.run.id == run_id and grant.attempt.id is not None
        start(engine, grant.attempt.id, now=now)
        finish(engine, grant.attempt.id, reported, now=now)
    # A queued run cancelled.
    with write_session(engine) as session:
        lifecycle.cancel(session, cancelled, now)
    # A run whose lease expires with no retries left: dead, by the reaper.
    grant = must_lease(engine, runner, now=now)
    assert grant.run.id == dead
    with write_session(engine) as session:
        tick(session, now + 60 * S, runner_offline_after=timedelta(hours=1), name="t")
    # A cancelling run whose runner went silent: cancelled by the reaper.
    grant = must_lease(engine, runner, now=now)
    assert grant.run.id == cancelling
    with write_session(engine) as session:
        lifecycle.cancel(session, cancelling, now)
        tick(session, now + 60 * S, runner_offline_after=timedelta(hours=1), name="t")
    # An expired lease found inline by the runner's next lease call: dead.
    grant = must_lease(engine, runner, now=now)
    assert grant.run.id == inline
    assert lease(engine, runner, now=now + 60 * S) is None
    assert events(engine) == [
        ("run.completed", completed),
        ("run.failed", failed),
        ("run.cancelled", cancelled),
        ("run.dead", dead),
        ("run.cancelled", cancelling),
        ("run.dead", inline),
    ]
    with read_session(engine) as session:
        deliveries = session.exec(select(WebhookDelivery)).all()
        runs = {r.id: r for r in session.exec(select(Run)).all()}
    assert {d.webhook_id for d in deliveries} == {webhook_id} and len(deliveries) == 6
    assert {d.status for d in deliveries} == {"pending"}
    assert runs[dead].status == RunStatus.DEAD and runs[inline].status == RunStatus.DEAD


def test_no_event_without_a_matching_webhook(engine: Engine, seeded: Seeded) -> None:
    other = seed_app(engine, slug="other")
    assert other.app.id is not None
    subscribe(engine, seeded, ["run.failed"])  # another event type
    subscribe(engine, seeded, ALL, app_id=other.app.id)  # another app
    (run_id,) = queue_runs(engine, seeded)
    with write_session(engine) as session:
        lifecycle.cancel(session, run_id, utcnow())
    assert events(engine) == []


def test_a_paused_webhook_gets_nothing(engine: Engine, seeded: Seeded) -> None:
    webhook_id = subscribe(engine, seeded, ALL)
    with write_session(engine) as session:
        webhook = session.get(Webhook, webhook_id)
        assert webhook is not None
        webhook_store.update_webhook(session, webhook, fields={"enabled": False}, now=utcnow())
    (run_id,) = queue_runs(engine, seeded)
    with write_session(engine) as session:
        lifecycle.cancel(session, run_id, utcnow())
    assert events(engine) == []


def test_a_rolled_back_change_leaves_no_event(engine: Engine, seeded: Seeded) -> None:
    subscribe(engine, seeded, ALL)
    (run_id,) = queue_runs(engine, seeded)

    def cancel_then_fail() -> None:
        with write_session(engine) as session:
            now = utcnow()
            assert end_run(
                session, run_id, expected={RunStatus.QUEUED}, status=RunStatus.CANCELLED, now=now
            )
            raise RuntimeError("the route failed after the transition")

    with pytest.raises(RuntimeError):
        cancel_then_fail()
    assert events(engine) == []
    with read_session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == RunStatus.QUEUED


def test_end_run_refuses_a_non_terminal_status(engine: Engine, seeded: Seeded) -> None:
    (run_id,) = queue_runs(engine, seeded)
    with write_session(engine) as session, pytest.raises(ValueError, match="terminal"):
        end_run(session, run_id, expected={RunStatus.QUEUED}, status=RunStatus.LEASED, now=utcnow())


def _ping(engine: Engine, webhook_id: int) -> None:
    with write_session(engine) as session:
        webhook = session.get(Webhook, webhook_id)
        assert webhook is not None
        webhook_store.append_ping(session, webhook, utcnow())


def test_a_claim_is_exclusive_until_it_lapses(engine: Engine, seeded: Seeded) -> None:
    _ping(engine, subscribe(engine, seeded, ALL))
    now = utcnow()
    with write_session(engine) as session:
        (first,) = webhook_store.claim_due(session, now, hold=30 * S, limit=5)
    with write_session(engine) as session:
        assert webhook_store.claim_due(session, now + 29 * S, hold=30 * S, limit=5) == []
    # The first loop died mid-send: after its hold, another loop takes the delivery, and
    # the first one's late record does not move it.
    with write_session(engine) as session:
        (second,) = webhook_store.claim_due(session, now + 31 * S, hold=30 * S, limit=5)
    assert second.delivery_id == first.delivery_id and second.token != first.token
    ok = webhook_store.AttemptResult(started_at=now, duration_ms=1.0, status_code=200, error=None)
    policy = {"max_age": timedelta(hours=1), "backoff_base": 1.0, "backoff_cap": 10.0}
    with write_session(engine) as session:
        webhook_store.record_attempt(session, first, ok, now + 32 * S, **policy)
    with read_session(engine) as session:
        delivery = session.get(WebhookDelivery, first.delivery_id)
        assert delivery is not None and delivery.status == "pending"
    with write_session(engine) as session:
        assert webhook_store.record_attempt(session, second, ok, now + 33 * S, **policy) == (
            "delivered"
        )


def test_a_webhook_deleted_mid_send_records_nothing(engine: Engine, seeded: Seeded) -> None:
    webhook_id = subscribe(engine, seeded, ALL)
    _ping(engine, webhook_id)
    now = utcnow()
    with write_session(engine) as session:
        (claim,) = webhook_store.claim_due(session, now, hold=30 * S, limit=5)
    with write_session(engine) as session:
        webhook = session.get(Webhook, webhook_id)
        assert webhook is not None
        webhook_store.delete_webhook(session, webhook)
    failed = webhook_store.AttemptResult(
        started_at=now, duration_ms=1.0, status_code=500, error="the receiver answered 500"
    )
    with write_session(engine) as session:
        status = webhook_store.record_attempt(
            session, claim, failed, now, max_age=timedelta(hours=1), backoff_base=1, backoff_cap=9
        )
    assert status == webhook_store.DELETED


def test_prune_deletes_only_old_finished_deliveries(
    engine: Engine, seeded: Seeded, database: Database, tmp_path: Path
) -> None:
    """``minitowerd prune``: delivered and failed deliveries that ended before the cutoff
    go with their attempts and events; pending ones and recent ones stay."""
    webhook_id = subscribe(engine, seeded, ALL)
    for _ in range(4):
        _ping(engine, webhook_id)
    now = utcnow()
    with write_session(engine) as session:
        claims = webhook_store.claim_due(session, now, hold=30 * S, limit=3)
    # Delivered, failed (past a max age of 0), delivered; then the first two are made
    # 40 days old.
    for claim, code in zip(claims, (200, 500, 200), strict=True):
        result = webhook_store.AttemptResult(
            started_at=now, duration_ms=1, status_code=code, error=None
        )
        with write_session(engine) as session:
            webhook_store.record_attempt(
                session, claim, result, now, max_age=timedelta(0), backoff_base=1, backoff_cap=9
            )
    old = [claim.delivery_id for claim in claims[:2]]
    with write_session(engine) as session:
        session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(old))
            .values(finished_at=now - timedelta(days=40))
        )
    dry = prune(database, tmp_path / "objects", older_than=timedelta(days=30), dry_run=True)
    assert dry.webhook_deliveries == 2
    report = prune(database, tmp_path / "objects", older_than=timedelta(days=30), dry_run=False)
    assert report.webhook_deliveries == 2
    assert any("deleted 2 finished webhook deliveries" in line for line in summary(report))
    with read_session(engine) as session:
        left = session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all()
        events_left = session.exec(select(WebhookEvent)).all()
        attempts_left = session.exec(select(WebhookAttempt)).all()
    assert [d.status for d in left] == ["delivered", "pending"]
    assert {e.id for e in events_left} == {d.event_id for d in left}
    assert [a.delivery_id for a in attempts_left] == [left[0].id]
