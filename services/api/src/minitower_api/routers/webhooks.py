"""Webhooks (team admins only): failure and other run notifications, signed and POSTed
by the reaper's delivery loop (README, "Notifications (webhooks)")."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from sqlmodel import Session

from minitower_api.deps import AdminDep, PageDep, ServicesDep, paged
from minitower_api.errors import invalid, not_found, responses
from minitower_api.routers.apps import require_app
from minitower_shared.clock import utcnow
from minitower_shared.models import Webhook
from minitower_shared.schemas import (
    MAX_INT64,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryAttempt,
    WebhookDeliveryList,
    WebhookList,
    WebhookPublic,
    WebhookTestQueued,
    WebhookUpdate,
)
from minitower_shared.store import audit
from minitower_shared.store import webhooks as webhook_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.webhook_urls import WebhookUrlError, check_at_creation

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

WebhookId = Annotated[int, Path(ge=1, le=MAX_INT64, description="The webhook's id")]


def webhook_public(webhook: Webhook, app_slug: str | None) -> dict[str, Any]:
    assert webhook.id is not None
    return {
        "webhook_id": webhook.id,
        "url": webhook.url,
        "events": list(webhook.events),
        "app": app_slug,
        "format": webhook.format,
        "enabled": webhook.enabled,
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    }


def _slug_of(session: Session, webhook: Webhook) -> str | None:
    return webhook_store.app_slugs(session, [webhook.app_id]).get(webhook.app_id or 0)


def _check_url(services: ServicesDep, url: str) -> None:
    try:
        check_at_creation(url, allow_private=services.settings.webhook_allow_private)
    except WebhookUrlError as exc:
        raise invalid(f"url: {exc}") from None


def _require_webhook(session: Session, team_id: int, webhook_id: int) -> Webhook:
    webhook = webhook_store.get_webhook(session, team_id, webhook_id)
    if webhook is None:
        raise not_found(f"webhook {webhook_id} not found")
    return webhook


@router.post("", status_code=201, response_model=WebhookCreated, responses=responses(403))
def create_webhook(body: WebhookCreate, caller: AdminDep, services: ServicesDep) -> WebhookCreated:
    """Send ``events`` (of ``app`` only, when given) to ``url``. The signing secret
    (given, or generated) is in this answer only. URLs on loopback, private or
    link-local addresses are refused unless MINITOWER_WEBHOOK_ALLOW_PRIVATE=true."""
    _check_url(services, body.url)
    secret = body.secret or webhook_store.new_secret()
    with services.write() as session:
        app_id = None
        if body.app is not None:
            app_id = require_app(session, caller.team_id, body.app).id
        webhook = webhook_store.create_webhook(
            session,
            team_id=caller.team_id,
            app_id=app_id,
            url=body.url,
            events=list(body.events),
            secret=secret,
            format=body.format,
            now=utcnow(),
        )
        assert webhook.id is not None
        audit.record(
            session,
            caller.actor,
            "webhook.create",
            AuditObject("webhook", webhook.id),
            # Not the URL: a Slack incoming-webhook URL is itself a credential.
            {"events": webhook.events, "app": body.app, "format": webhook.format},
        )
        return WebhookCreated(**webhook_public(webhook, body.app), secret=secret)


@router.get("", response_model=WebhookList, responses=responses(403))
def list_webhooks(caller: AdminDep, services: ServicesDep, page: PageDep) -> WebhookList:
    with services.read() as session:
        rows = webhook_store.list_webhooks(
            session, caller.team_id, after_id=page.cursor or 0, limit=page.limit + 1
        )
        rows, next_cursor = paged(rows, page, lambda w: w.id)
        slugs = webhook_store.app_slugs(session, (w.app_id for w in rows))
    return WebhookList(
        webhooks=[WebhookPublic(**webhook_public(w, slugs.get(w.app_id or 0))) for w in rows],
        next_cursor=next_cursor,
    )


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=responses(403))
def get_webhook(webhook_id: WebhookId, caller: AdminDep, services: ServicesDep) -> WebhookPublic:
    with services.read() as session:
        webhook = _require_webhook(session, caller.team_id, webhook_id)
        return WebhookPublic(**webhook_public(webhook, _slug_of(session, webhook)))


@router.patch("/{webhook_id}", response_model=WebhookPublic, responses=responses(403))
def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, caller: AdminDep, services: ServicesDep
) -> WebhookPublic:
    """Change any field; ``enabled: false`` pauses it (events while paused are not
    queued for it). A new ``secret`` rotates it; it is not shown back."""
    given = body.model_fields_set
    for key in ("url", "events", "format", "enabled", "secret"):
        if key in given and getattr(body, key) is None:
            raise invalid(f"{key} cannot be null")
    if body.url is not None:
        _check_url(services, body.url)
    fields: dict[str, Any] = {
        key: getattr(body, key)
        for key in ("url", "events", "format", "enabled", "secret")
        if key in given
    }
    with services.write() as session:
        webhook = _require_webhook(session, caller.team_id, webhook_id)
        if "app" in given:
            fields["app_id"] = (
                None if body.app is None else require_app(session, caller.team_id, body.app).id
            )
        if "events" in fields:
            fields["events"] = list(fields["events"])
        updated = webhook_store.update_webhook(session, webhook, fields=fields, now=utcnow())
        # The secret's new value never goes into the log: only that it changed.
        audit.record(
            session,
            caller.actor,
            "webhook.update",
            AuditObject("webhook", webhook_id),
            {"changed": sorted(given)},
        )
        return WebhookPublic(**webhook_public(updated, _slug_of(session, updated)))


@router.delete("/{webhook_id}", status_code=204, responses=responses(403))
def delete_webhook(webhook_id: WebhookId, caller: AdminDep, services: ServicesDep) -> Response:
    """The webhook and its delivery history; deliveries not yet sent are dropped."""
    with services.write() as session:
        webhook_store.delete_webhook(session, _require_webhook(session, caller.team_id, webhook_id))
        audit.record(session, caller.actor, "webhook.delete", AuditObject("webhook", webhook_id))
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries", response_model=WebhookDeliveryList, responses=responses(403)
)
def list_deliveries(
    webhook_id: WebhookId, caller: AdminDep, services: ServicesDep, page: PageDep
) -> WebhookDeliveryList:
    """Every delivery attempt, newest first: the receiver's status code (null when none
    answered), how long it took, and the error."""
    with services.read() as session:
        _require_webhook(session, caller.team_id, webhook_id)
        rows = webhook_store.list_attempts(
            session, webhook_id, before_id=page.cursor, limit=page.limit + 1
        )
    rows, next_cursor = paged(rows, page, lambda v: v.attempt.id)
    return WebhookDeliveryList(
        deliveries=[
            WebhookDeliveryAttempt(
                attempt_id=v.attempt.id or 0,
                event_id=v.event_id,
                event_type=v.event_type,
                attempt_no=v.attempt.attempt_no,
                delivery_status=v.delivery_status,
                started_at=v.attempt.started_at,
                duration_ms=round(v.attempt.duration_ms, 1),
                status_code=v.attempt.status_code,
                error=v.attempt.error,
                succeeded=v.attempt.succeeded,
            )
            for v in rows
        ],
        next_cursor=next_cursor,
    )


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=WebhookTestQueued,
    responses=responses(403),
)
def test_webhook(
    webhook_id: WebhookId, caller: AdminDep, services: ServicesDep
) -> WebhookTestQueued:
    """Queue a ``ping`` event to this webhook; the delivery loop sends it like any
    other (see the deliveries route for the outcome)."""
    with services.write() as session:
        webhook = _require_webhook(session, caller.team_id, webhook_id)
        event = webhook_store.append_ping(session, webhook, utcnow())
        return WebhookTestQueued(event_id=event.public_id, type=event.type)
