"""The team's audit log: who changed what (store/audit.py). Admins only; read-only, as
no route changes or deletes a row."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from minitower_api.deps import AdminDep, PageDep, ServicesDep, paged
from minitower_api.errors import invalid, responses
from minitower_shared.clock import as_utc
from minitower_shared.models import AuditEvent
from minitower_shared.schemas import AuditEventList, AuditEventPublic
from minitower_shared.store import audit as audit_store

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

_NAME = "^[a-z0-9_.]{1,64}$"


def audit_event_public(event: AuditEvent) -> AuditEventPublic:
    assert event.id is not None
    return AuditEventPublic(
        audit_id=event.id,
        at=event.at,
        team_id=event.team_id,
        actor_kind=event.actor_kind,
        actor_token_id=event.actor_token_id,
        actor_name=event.actor_name,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        detail=event.detail,
        request_id=event.request_id,
        client_address=event.client_address,
    )


def _utc(value: datetime | None, name: str) -> datetime | None:
    """As UTC (a time without an offset is UTC): rows store UTC times."""
    if value is None:
        return None
    try:
        return as_utc(value).astimezone(UTC)
    except OverflowError:
        raise invalid(f"{name}: out of range") from None


@router.get("", response_model=AuditEventList, responses=responses(403))
def list_audit_events(
    admin: AdminDep,
    services: ServicesDep,
    page: PageDep,
    action: Annotated[
        str | None,
        Query(
            pattern=_NAME,
            description='An action ("run.cancel"), or a prefix ending in "." ("run.")',
        ),
    ] = None,
    object_type: Annotated[
        str | None, Query(pattern=_NAME, description="Only rows about this kind of object")
    ] = None,
    object_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Only rows about this object"),
    ] = None,
    since: Annotated[datetime | None, Query(description="Rows recorded at or after")] = None,
    until: Annotated[datetime | None, Query(description="Rows recorded before")] = None,
) -> AuditEventList:
    """The changes made in the caller's team, newest first (admin tokens only): by whom
    (a token, a console session, the operator), what, when, from where."""
    with services.read() as session:
        rows = audit_store.list_events(
            session,
            admin.team_id,
            before_id=page.cursor,
            limit=page.limit + 1,
            offset=page.offset,
            action=action,
            object_type=object_type,
            object_id=object_id,
            since=_utc(since, "since"),
            until=_utc(until, "until"),
        )
    rows, next_cursor = paged(rows, page, lambda event: event.id)
    return AuditEventList(events=[audit_event_public(e) for e in rows], next_cursor=next_cursor)
