"""Webhooks: subscriptions, the event outbox, and the delivery loop's claims and attempts.

Design: one ``webhook_event`` row per event (its ``public_id`` is the id receivers see,
stable across retries) and one ``webhook_delivery`` row per matching webhook, both
written in the transaction of the change that caused the event, so a committed change
always has its deliveries and a rolled-back one never does. Events are written only for
teams with a matching webhook: a team without webhooks pays one indexed read per
finished run. Every POST is a ``webhook_attempt`` row.
"""

import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, text, update
from sqlmodel import Session, col, select

from minitower_shared.clock import as_utc, rfc3339
from minitower_shared.models import (
    App,
    AppVersion,
    Run,
    RunAttempt,
    Schedule,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)
from minitower_shared.states import RunStatus

RUN_EVENT_TYPES = {
    RunStatus.FAILED: "run.failed",
    RunStatus.DEAD: "run.dead",
    RunStatus.COMPLETED: "run.completed",
    RunStatus.CANCELLED: "run.cancelled",
}
SCHEDULE_SKIPPED = "schedule.skipped"
PING = "ping"
EVENT_TYPES = (*RUN_EVENT_TYPES.values(), SCHEDULE_SKIPPED, PING)
# What a webhook may subscribe to: ping is sent only on request, to the one webhook.
SUBSCRIBABLE = tuple(t for t in EVENT_TYPES if t != PING)
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# What record_attempt answers for a delivery deleted (with its webhook) mid-send.
DELETED = "deleted"
ERROR_LIMIT = 500


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _execute(session: Session, statement: Any) -> Any:
    return session.execute(statement, execution_options={"synchronize_session": False})


# --- Subscriptions ---


def create_webhook(
    session: Session,
    *,
    team_id: int,
    app_id: int | None,
    url: str,
    events: list[str],
    secret: str,
    format: str,
    now: datetime,
) -> Webhook:
    webhook = Webhook(
        team_id=team_id,
        app_id=app_id,
        url=url,
        events=sorted(set(events)),
        secret=secret,
        format=format,
        created_at=now,
        updated_at=now,
    )
    session.add(webhook)
    session.flush()
    return webhook


def get_webhook(session: Session, team_id: int, webhook_id: int) -> Webhook | None:
    return session.exec(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.team_id == team_id)
    ).first()


def list_webhooks(session: Session, team_id: int, *, after_id: int, limit: int) -> list[Webhook]:
    return list(
        session.exec(
            select(Webhook)
            .where(Webhook.team_id == team_id, col(Webhook.id) > after_id)
            .order_by(col(Webhook.id))
            .limit(limit)
        )
    )


def update_webhook(
    session: Session, webhook: Webhook, *, fields: dict[str, Any], now: datetime
) -> Webhook:
    for key, value in fields.items():
        setattr(webhook, key, sorted(set(value)) if key == "events" else value)
    webhook.updated_at = now
    session.add(webhook)
    session.flush()
    return webhook


def delete_webhook(session: Session, webhook: Webhook) -> None:
    """The webhook, its deliveries (pending ones are dropped) and its attempts. Events
    stay: other webhooks may still deliver them."""
    _execute(session, delete(WebhookAttempt).where(col(WebhookAttempt.webhook_id) == webhook.id))
    _execute(session, delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook.id))
    session.delete(webhook)
    session.flush()


def app_slugs(session: Session, app_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {i for i in app_ids if i is not None}
    if not ids:
        return {}
    rows = session.exec(select(App.id, App.slug).where(col(App.id).in_(ids)))
    return {app_id: slug for app_id, slug in rows if app_id is not None}


# --- The outbox ---


# Read on every run's ending (the lifecycle's hot path): built once, and run on the
# connection, so a webhook added in the same session must be flushed before a run ends.
_TEAM_WEBHOOKS = select(Webhook.id, Webhook.events, Webhook.app_id).where(
    Webhook.team_id == bindparam("the_team"), col(Webhook.enabled).is_(True)
)


def _matching(session: Session, team_id: int, event_type: str, app_id: int | None) -> list[int]:
    """The team's enabled webhooks that want ``event_type`` of ``app_id``."""
    rows = session.connection().execute(_TEAM_WEBHOOKS, {"the_team": team_id})
    return [
        webhook_id
        for webhook_id, events, wanted_app in rows
        if webhook_id is not None
        and event_type in events
        and (wanted_app is None or wanted_app == app_id)
    ]


def _append(
    session: Session,
    *,
    team_id: int,
    event_type: str,
    payload: dict[str, Any],
    webhook_ids: list[int],
    now: datetime,
) -> WebhookEvent:
    event = WebhookEvent(
        public_id="evt_" + secrets.token_hex(12),
        team_id=team_id,
        type=event_type,
        payload=payload,
        created_at=now,
    )
    session.add(event)
    session.flush()
    assert event.id is not None
    session.add_all(
        WebhookDelivery(webhook_id=w, event_id=event.id, next_attempt_at=now, created_at=now)
        for w in webhook_ids
    )
    session.flush()
    return event


def run_payload(session: Session, run: Run) -> dict[str, Any]:
    """The run as a delivery shows it, read at the moment it ended."""
    assert run.id is not None
    slug, version_no = session.exec(
        select(App.slug, AppVersion.version_no)
        .join(AppVersion, col(AppVersion.app_id) == col(App.id))
        .where(App.id == run.app_id, AppVersion.id == run.app_version_id)
    ).one()
    attempt_no = session.exec(
        select(func.max(RunAttempt.attempt_no)).where(RunAttempt.run_id == run.id)
    ).one()
    return {
        "run": {
            "id": run.id,
            "run_no": run.run_no,
            "app": slug,
            "version": version_no,
            "status": run.status,
            "environment": run.environment,
            "attempt": attempt_no or 0,
            "retry_count": run.retry_count,
            "exit_code": run.exit_code,
            "error": run.error_message,
            "schedule_id": run.schedule_id,
            "queued_at": rfc3339(run.queued_at),
            "started_at": rfc3339(run.started_at),
            "finished_at": rfc3339(run.finished_at),
            "link": f"/api/v1/runs/{run.id}",
        }
    }


def append_run_event(
    session: Session, *, run_id: int, team_id: int, app_id: int, status: RunStatus, now: datetime
) -> None:
    """Queue the event of run ``run_id`` reaching terminal ``status`` for the team's
    matching webhooks; nothing (and no read of the run) when none matches."""
    event_type = RUN_EVENT_TYPES[status]
    webhook_ids = _matching(session, team_id, event_type, app_id)
    if webhook_ids:
        # populate_existing: the run changed around the session, by a Core UPDATE.
        run = session.get(Run, run_id, populate_existing=True)
        assert run is not None
        _append(
            session,
            team_id=team_id,
            event_type=event_type,
            payload=run_payload(session, run),
            webhook_ids=webhook_ids,
            now=now,
        )


def append_schedule_skipped(
    session: Session, schedule: Schedule, app_slug: str, when: datetime, reason: str, now: datetime
) -> None:
    webhook_ids = _matching(session, schedule.team_id, SCHEDULE_SKIPPED, schedule.app_id)
    if webhook_ids:
        _append(
            session,
            team_id=schedule.team_id,
            event_type=SCHEDULE_SKIPPED,
            payload={
                "schedule": {
                    "id": schedule.id,
                    "name": schedule.name,
                    "app": app_slug,
                    "cron": schedule.cron,
                    "scheduled_for": rfc3339(when),
                    "reason": reason,
                    "link": f"/api/v1/apps/{app_slug}/schedules/{schedule.id}",
                }
            },
            webhook_ids=webhook_ids,
            now=now,
        )


def append_ping(session: Session, webhook: Webhook, now: datetime) -> WebhookEvent:
    """A ``ping`` to this one webhook, whatever it subscribes to."""
    assert webhook.id is not None
    return _append(
        session,
        team_id=webhook.team_id,
        event_type=PING,
        payload={"webhook": {"id": webhook.id, "url": webhook.url}},
        webhook_ids=[webhook.id],
        now=now,
    )


# --- The delivery loop ---


@dataclass(frozen=True)
class Claim:
    """A delivery a loop holds until ``claimed_until``, with what it needs to send."""

    delivery_id: int
    token: str
    attempts: int
    webhook_id: int
    url: str
    secret: str
    format: str
    event_id: str
    event_type: str
    event_created_at: datetime
    payload: dict[str, Any]


def claim_due(session: Session, now: datetime, *, hold: timedelta, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due pending deliveries for ``hold``. Each claim is a
    conditional UPDATE: of two loops racing for a row, one wins; a loop that died
    holding a row loses it when ``claimed_until`` passes."""
    due = session.exec(
        select(WebhookDelivery.id)
        .where(
            text("webhook_delivery.status = 'pending'"),
            col(WebhookDelivery.next_attempt_at) <= now,
            or_(
                col(WebhookDelivery.claimed_until).is_(None),
                col(WebhookDelivery.claimed_until) <= now,
            ),
        )
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(limit)
        # PostgreSQL: two loops claim different rows instead of waiting on each other's.
        .with_for_update(skip_locked=True)
    ).all()
    claims = []
    for delivery_id in due:
        token = secrets.token_hex(16)
        won = _execute(
            session,
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery_id,
                col(WebhookDelivery.status) == PENDING,
                or_(
                    col(WebhookDelivery.claimed_until).is_(None),
                    col(WebhookDelivery.claimed_until) <= now,
                ),
            )
            .values(claimed_until=now + hold, claim_token=token),
        ).rowcount
        if not won:
            continue
        delivery, webhook, event = session.exec(
            select(WebhookDelivery, Webhook, WebhookEvent)
            .join(Webhook, col(Webhook.id) == col(WebhookDelivery.webhook_id))
            .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
            .where(WebhookDelivery.id == delivery_id)
        ).one()
        assert delivery.id is not None and webhook.id is not None
        claims.append(
            Claim(
                delivery_id=delivery.id,
                token=token,
                attempts=delivery.attempts,
                webhook_id=webhook.id,
                url=webhook.url,
                secret=webhook.secret,
                format=webhook.format,
                event_id=event.public_id,
                event_type=event.type,
                event_created_at=as_utc(event.created_at),
                payload=event.payload,
            )
        )
    return claims


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_delay(attempts: int, *, base: float, cap: float, rand: float | None = None) -> float:
    """The wait after failed attempt number ``attempts`` (1-based): ``base * 2**(n-1)``
    capped at ``cap``, its upper half jittered so receivers that failed together are not
    retried in step. Never shorter than the previous attempt's full wait, so the gaps
    grow until the cap."""
    nominal = min(base * 2.0 ** min(attempts - 1, 60), cap)
    r = random.random() if rand is None else rand
    return nominal / 2 + nominal / 2 * r


def record_attempt(
    session: Session,
    claim: Claim,
    result: AttemptResult,
    now: datetime,
    *,
    max_age: timedelta,
    backoff_base: float,
    backoff_cap: float,
) -> str:
    """Record one POST and move the delivery on: delivered on a 2xx, else pending again
    after a backoff, or failed once the event is older than ``max_age``. Returns the
    delivery's new status. The attempt is recorded even if the claim was lost (the POST
    did happen); the delivery moves only under its claim. A delivery whose webhook was
    deleted during the POST records nothing: its history went with it."""
    if session.get(WebhookDelivery, claim.delivery_id) is None:
        return DELETED
    attempt_no = claim.attempts + 1
    error = result.error[:ERROR_LIMIT] if result.error else None
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id,
            webhook_id=claim.webhook_id,
            attempt_no=attempt_no,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=error,
            succeeded=result.succeeded,
        )
    )
    values: dict[str, Any] = {
        "attempts": WebhookDelivery.attempts + 1,
        "last_status_code": result.status_code,
        "last_error": error,
        "claimed_until": None,
        "claim_token": None,
    }
    if result.succeeded:
        status = DELIVERED
        values.update(status=DELIVERED, finished_at=now)
    else:
        delay = backoff_delay(attempt_no, base=backoff_base, cap=backoff_cap)
        if now + timedelta(seconds=delay) - claim.event_created_at > max_age:
            status = FAILED
            values.update(status=FAILED, finished_at=now)
        else:
            status = PENDING
            values.update(next_attempt_at=now + timedelta(seconds=delay))
    _execute(
        session,
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == claim.delivery_id,
            col(WebhookDelivery.claim_token) == claim.token,
            col(WebhookDelivery.status) == PENDING,
        )
        .values(**values),
    )
    session.flush()
    return status


@dataclass(frozen=True)
class AttemptView:
    attempt: WebhookAttempt
    event_id: str
    event_type: str
    delivery_status: str


def list_attempts(
    session: Session, webhook_id: int, *, before_id: int | None, limit: int
) -> list[AttemptView]:
    """A webhook's attempts, newest first."""
    query = (
        select(WebhookAttempt, WebhookEvent.public_id, WebhookEvent.type, WebhookDelivery.status)
        .join(WebhookDelivery, col(WebhookDelivery.id) == col(WebhookAttempt.delivery_id))
        .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
        .where(WebhookAttempt.webhook_id == webhook_id)
    )
    if before_id is not None:
        query = query.where(col(WebhookAttempt.id) < before_id)
    rows = session.exec(query.order_by(col(WebhookAttempt.id).desc()).limit(limit))
    return [AttemptView(*row) for row in rows]


@dataclass(frozen=True)
class OutboxSummary:
    deliveries: dict[str, int]
    attempts: dict[bool, int]
    oldest_pending_at: datetime | None


def outbox_summary(session: Session) -> OutboxSummary:
    """For /metrics: deliveries by status, attempts by outcome, the oldest pending
    delivery's creation time (one seek of ix_webhook_delivery_due's rows)."""
    deliveries = session.exec(
        select(WebhookDelivery.status, func.count()).group_by(col(WebhookDelivery.status))
    )
    attempts = session.exec(
        select(WebhookAttempt.succeeded, func.count()).group_by(col(WebhookAttempt.succeeded))
    )
    oldest = session.exec(
        select(func.min(WebhookDelivery.created_at)).where(
            text("webhook_delivery.status = 'pending'")
        )
    ).one()
    return OutboxSummary(
        deliveries={status: count for status, count in deliveries},
        attempts={bool(ok): count for ok, count in attempts},
        oldest_pending_at=as_utc(oldest) if oldest is not None else None,
    )


# --- Retention (``minitowerd prune``) ---


def finished_deliveries_before(
    session: Session, cutoff: datetime, *, limit: int | None
) -> list[int]:
    """Ids of delivered or failed deliveries that finished before ``cutoff`` (at most
    ``limit`` of them; None: all)."""
    query = (
        select(WebhookDelivery.id)
        .where(
            col(WebhookDelivery.status).in_([DELIVERED, FAILED]),
            col(WebhookDelivery.finished_at) < cutoff,
        )
        .order_by(col(WebhookDelivery.id))
    )
    if limit is not None:
        query = query.limit(limit)
    return [delivery_id for delivery_id in session.exec(query) if delivery_id is not None]


def delete_deliveries(session: Session, delivery_ids: list[int]) -> int:
    """Delete these deliveries with their attempts, and the events left without any
    delivery; the number of deliveries deleted."""
    if not delivery_ids:
        return 0
    event_ids = session.exec(
        select(WebhookDelivery.event_id).where(col(WebhookDelivery.id).in_(delivery_ids))
    ).all()
    _execute(
        session, delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(delivery_ids))
    )
    deleted = int(
        _execute(
            session, delete(WebhookDelivery).where(col(WebhookDelivery.id).in_(delivery_ids))
        ).rowcount
    )
    still_used = select(WebhookDelivery.event_id).where(
        col(WebhookDelivery.event_id).in_(set(event_ids))
    )
    _execute(
        session,
        delete(WebhookEvent).where(
            col(WebhookEvent.id).in_(set(event_ids)), col(WebhookEvent.id).not_in(still_used)
        ),
    )
    return deleted
