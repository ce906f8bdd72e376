"""``minitowerd audit``: the operator's view of the audit log on the server itself: the
rows without a team (shared runners registering, tokens revoked by the operator), or one
team's rows. Teams read their own through GET /api/v1/audit."""

import json
from pathlib import Path

from minitower_api.maintenance import MaintenanceError, open_engine
from minitower_shared.clock import rfc3339
from minitower_shared.db import read_session
from minitower_shared.models import AuditEvent
from minitower_shared.store import audit as audit_store
from minitower_shared.store import teams as team_store


def audit_events(
    database: str | Path, *, team: str | None, action: str | None, limit: int, busy_timeout: float
) -> list[AuditEvent]:
    """Newest first: the rows of team ``team`` (a slug), or those without a team."""
    engine = open_engine(database, busy_timeout=busy_timeout)
    try:
        with read_session(engine) as session:
            team_id = None
            if team is not None:
                found = team_store.get_team_by_slug(session, team)
                if found is None:
                    raise MaintenanceError(f"no team {team!r}")
                team_id = found.id
            return audit_store.list_events(
                session, team_id, before_id=None, limit=limit, action=action
            )
    finally:
        engine.dispose()


def describe(events: list[AuditEvent]) -> list[str]:
    """One line per row: when, action, object, actor, where from, detail."""
    lines = []
    for event in events:
        actor = event.actor_kind + (f":{event.actor_name}" if event.actor_name else "")
        if event.actor_token_id is not None:
            actor += f"#{event.actor_token_id}"
        detail = json.dumps(event.detail, sort_keys=True) if event.detail else ""
        lines.append(
            f"{rfc3339(event.at)} {event.id} {event.action} "
            f"{event.object_type}:{event.object_id} by {actor} "
            f"from {event.client_address or '-'} {detail}".rstrip()
        )
    return lines or ["(no audit rows)"]
