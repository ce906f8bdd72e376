"""The audit log: who changed what, appended in the transaction of the change.

Routes call ``record`` inside their ``services.write()`` block, after the change and
before the block ends, so a change that is refused or rolled back leaves no row. The
request id and the client's address come from the request's context (log_context.py,
request_origin.py), which the console's form posts share with the JSON routes they call.
``detail`` is a small JSON object of names and numbers: never a secret, a token or run
input.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from minitower_shared.clock import utcnow
from minitower_shared.log_context import current_ids
from minitower_shared.models import AuditEvent
from minitower_shared.request_origin import current_client_address

# Who acted (``actor_kind``).
TOKEN = "token"  # a team token sent as a bearer token
CONSOLE = "console"  # a console session, acting as its team token
OPERATOR = "operator"  # an operator secret, or a minitowerd command on the server
REGISTRATION_TOKEN = "registration_token"  # a team's runner registration token
PASSWORD = "password"  # the team's slug and password (signup, login)


@dataclass(frozen=True)
class AuditActor:
    kind: str
    team_id: int | None
    token_id: int | None = None
    name: str = ""


OPERATOR_ACTOR = AuditActor(kind=OPERATOR, team_id=None, name="operator")


@dataclass(frozen=True)
class AuditObject:
    type: str
    id: str | int


def record(
    session: Session,
    actor: AuditActor,
    action: str,
    obj: AuditObject,
    detail: dict[str, Any] | None = None,
    *,
    team_id: int | None = None,
) -> AuditEvent:
    """Append one row. ``team_id`` names the team concerned when the actor has none (an
    operator acting on a team); otherwise the actor's team is the row's team."""
    ids = current_ids()
    request_id = ids.get("request_id")
    event = AuditEvent(
        at=utcnow(),
        team_id=team_id if team_id is not None else actor.team_id,
        actor_kind=actor.kind,
        actor_token_id=actor.token_id,
        actor_name=actor.name[:200],
        action=action,
        object_type=obj.type,
        object_id=str(obj.id)[:200],
        detail=detail or {},
        request_id=str(request_id) if request_id is not None else None,
        client_address=current_client_address(),
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    team_id: int | None,
    *,
    before_id: int | None,
    limit: int,
    offset: int = 0,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEvent]:
    """Newest first. ``team_id`` None lists the rows without a team (operator actions).
    An ``action`` ending in "." is a prefix ("run." matches run.create, run.cancel, ...)."""
    query = select(AuditEvent).where(
        col(AuditEvent.team_id).is_(None) if team_id is None else AuditEvent.team_id == team_id
    )
    if action is not None:
        if action.endswith("."):
            query = query.where(col(AuditEvent.action).startswith(action, autoescape=True))
        else:
            query = query.where(AuditEvent.action == action)
    if object_type is not None:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == object_id)
    if since is not None:
        query = query.where(col(AuditEvent.at) >= since)
    if until is not None:
        query = query.where(col(AuditEvent.at) < until)
    if before_id is not None:
        query = query.where(col(AuditEvent.id) < before_id)
    query = query.order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)
    return list(session.exec(query))


def delete_older_than(session: Session, cutoff: datetime, *, limit: int) -> int:
    """Prune: at most ``limit`` of the rows recorded before ``cutoff``; how many."""
    chosen = (
        select(col(AuditEvent.id)).where(col(AuditEvent.at) < cutoff).limit(limit)
    ).scalar_subquery()
    result = session.execute(
        delete(AuditEvent)
        .where(col(AuditEvent.id).in_(chosen))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_older_than(session: Session, cutoff: datetime) -> int:
    """What prune --dry-run reports."""
    query = select(func.count()).select_from(AuditEvent).where(col(AuditEvent.at) < cutoff)
    return int(session.exec(query).one())
