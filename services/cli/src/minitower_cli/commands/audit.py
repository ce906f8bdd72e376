"""``minitower audit``: the team's audit log, newest first (admin tokens only)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from minitower_cli.context import JsonOption, state
from minitower_cli.errors import UsageError
from minitower_cli.output import Column, short_time
from minitower_shared.schemas import AuditEventList, AuditEventPublic

PATH = "/api/v1/audit"


def _actor(event: AuditEventPublic) -> str:
    token_id = event.actor_token_id
    name = event.actor_name or "-"
    who = f"{name} (#{token_id})" if token_id is not None else name
    return f"{event.actor_kind}: {who}"


AUDIT_COLUMNS: list[Column[AuditEventPublic]] = [
    Column("ID", lambda e: e.audit_id, keep=True, justify="right"),
    Column("AT", lambda e: short_time(e.at), keep=True),
    Column("ACTION", lambda e: e.action, keep=True),
    Column("OBJECT", lambda e: f"{e.object_type}:{e.object_id}", keep=True),
    Column("ACTOR", _actor),
    Column("FROM", lambda e: e.client_address or "-"),
    Column("DETAIL", lambda e: json.dumps(e.detail, sort_keys=True) if e.detail else ""),
]


def audit(
    ctx: typer.Context,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", metavar="ACTION", help='An action (run.cancel) or a prefix ending in "."'
        ),
    ] = None,
    obj: Annotated[
        str | None,
        typer.Option("--object", metavar="TYPE[:ID]", help="Only rows about run:42, app:etl, app…"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most N rows")] = 50,
    json_out: JsonOption = False,
) -> None:
    """Who changed what in the team, newest first (admin tokens only)."""
    object_type, object_id = None, None
    if obj is not None:
        object_type, _, given_id = obj.partition(":")
        object_id = given_id or None
        if not object_type:
            raise UsageError("--object: give TYPE or TYPE:ID, e.g. run:42")
    st = state(ctx)
    events = st.client().list_all(
        PATH,
        AuditEventList,
        lambda p: (p.events, p.next_cursor),
        limit=limit,
        params={"action": action, "object_type": object_type, "object_id": object_id},
    )
    st.output.listing(AUDIT_COLUMNS, events, json_out)
