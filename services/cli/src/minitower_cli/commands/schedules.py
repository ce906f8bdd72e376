"""``minitower schedules``: an app's cron schedules."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.text import Text

from minitower_cli.client import ApiClient
from minitower_cli.context import JsonOption, state
from minitower_cli.errors import UsageError
from minitower_cli.output import Column, short_time
from minitower_shared.clock import rfc3339
from minitower_shared.schemas import ScheduleCreate, ScheduleList, SchedulePublic

schedules_app = typer.Typer(
    help="An app's cron schedules: list, create, show, pause, resume, delete.",
    no_args_is_help=True,
    add_completion=False,
)

LIST_LIMIT = 10_000
AppArgument = Annotated[str, typer.Argument(metavar="APP", help="The app's slug")]
IdArgument = Annotated[int, typer.Argument(metavar="ID", help="The schedule's id", min=1)]


def _state(schedule: SchedulePublic) -> Text:
    return Text("enabled", style="green") if schedule.enabled else Text("paused", style="yellow")


COLUMNS: list[Column[SchedulePublic]] = [
    Column("ID", lambda s: s.schedule_id, keep=True, justify="right"),
    Column("NAME", lambda s: s.name or "", keep=True),
    Column("CRON", lambda s: s.cron, keep=True),
    Column("TIMEZONE", lambda s: s.timezone, keep=True),
    Column("STATE", _state, keep=True),
    Column("NEXT", lambda s: short_time(s.next_fire_at) or "-"),
    Column("LAST", lambda s: short_time(s.last_fired_at) or "-"),
]


def _path(app: str, schedule_id: int | None = None) -> str:
    base = f"/api/v1/apps/{app}/schedules"
    return base if schedule_id is None else f"{base}/{schedule_id}"


def _print(ctx: typer.Context, schedule: SchedulePublic, json_out: bool, verb: str) -> None:
    st = state(ctx)
    if json_out:
        st.output.json(schedule)
        return
    st.output.out.print(
        Text.assemble((f"{verb} schedule ", "green"), (str(schedule.schedule_id), "bold"))
    )
    st.output.details(
        [
            ("cron", f"{schedule.cron} ({schedule.timezone})"),
            ("state", "enabled" if schedule.enabled else "paused"),
            ("next", rfc3339(schedule.next_fire_at) or "-"),
            ("last", rfc3339(schedule.last_fired_at) or "-"),
            ("overlap", schedule.overlap),
            ("catchup", schedule.catchup),
            ("input", json.dumps(schedule.input)),
        ]
    )


def _list(client: ApiClient, app: str) -> list[SchedulePublic]:
    return client.list_all(
        _path(app), ScheduleList, lambda p: (p.schedules, p.next_cursor), limit=LIST_LIMIT
    )


@schedules_app.command("list")
def schedules_list(ctx: typer.Context, app: AppArgument, json_out: JsonOption = False) -> None:
    """The app's schedules."""
    st = state(ctx)
    st.output.listing(COLUMNS, _list(st.client(), app), json_out)


@schedules_app.command("create")
def schedules_create(
    ctx: typer.Context,
    app: AppArgument,
    cron: Annotated[str, typer.Option("--cron", help='Five fields or a macro: "0 3 * * *"')],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone")] = "UTC",
    name: Annotated[str, typer.Option("--name", help="Unique within the app")] = "",
    input_json: Annotated[str | None, typer.Option("--input", help="Run input, JSON")] = None,
    version: Annotated[int | None, typer.Option("--version", help="Default: latest")] = None,
    environment: Annotated[str, typer.Option("--environment")] = "default",
    priority: Annotated[int, typer.Option("--priority")] = 0,
    max_retries: Annotated[int | None, typer.Option("--max-retries")] = None,
    overlap: Annotated[str, typer.Option("--overlap", help="allow, skip or queue")] = "allow",
    catchup: Annotated[str, typer.Option("--catchup", help="none, latest or all")] = "none",
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused")] = False,
    json_out: JsonOption = False,
) -> None:
    """Create a schedule; the scheduler runs the app at each due time."""
    try:
        run_input = json.loads(input_json) if input_json is not None else {}
    except ValueError as exc:
        raise UsageError(f"--input is not JSON: {exc}") from exc
    fields: dict[str, Any] = {
        "cron": cron,
        "timezone": timezone,
        "name": name,
        "input": run_input,
        "version_no": version,
        "environment": environment,
        "priority": priority,
        "overlap": overlap,
        "catchup": catchup,
        "enabled": not paused,
    }
    if max_retries is not None:
        fields["max_retries"] = max_retries
    try:
        body = ScheduleCreate.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{where}: {first['msg']}") from exc
    created = (
        state(ctx)
        .client()
        .post(SchedulePublic, _path(app), json=body.model_dump(exclude_none=True))
    )
    _print(ctx, created, json_out, "created")


@schedules_app.command("show")
def schedules_show(
    ctx: typer.Context, app: AppArgument, schedule_id: IdArgument, json_out: JsonOption = False
) -> None:
    """One schedule."""
    _print(ctx, state(ctx).client().get(SchedulePublic, _path(app, schedule_id)), json_out, "")


def _set_enabled(
    ctx: typer.Context, app: str, schedule_id: int, enabled: bool, json_out: bool
) -> None:
    changed = (
        state(ctx)
        .client()
        .patch(SchedulePublic, _path(app, schedule_id), json={"enabled": enabled})
    )
    _print(ctx, changed, json_out, "resumed" if enabled else "paused")


@schedules_app.command("pause")
def schedules_pause(
    ctx: typer.Context, app: AppArgument, schedule_id: IdArgument, json_out: JsonOption = False
) -> None:
    """Stop firing (the due times while paused are not caught up on)."""
    _set_enabled(ctx, app, schedule_id, False, json_out)


@schedules_app.command("resume")
def schedules_resume(
    ctx: typer.Context, app: AppArgument, schedule_id: IdArgument, json_out: JsonOption = False
) -> None:
    """Fire again, from now on."""
    _set_enabled(ctx, app, schedule_id, True, json_out)


@schedules_app.command("delete")
def schedules_delete(ctx: typer.Context, app: AppArgument, schedule_id: IdArgument) -> None:
    """Delete the schedule; its runs stay."""
    st = state(ctx)
    st.client().send("DELETE", _path(app, schedule_id))
    st.output.status(f"deleted schedule {schedule_id}")


def sync_towerfile_schedule(
    client: ApiClient, slug: str, cron: str | None, timezone: str | None
) -> str | None:
    """Make the app's schedule named ``towerfile`` match the Towerfile's ``[app]
    schedule`` (create, update, or delete it when the Towerfile has none). Returns what
    was done, for the deploy's report."""
    existing = [s for s in _list(client, slug) if s.name == TOWERFILE_SCHEDULE]
    if cron is None:
        if existing:
            client.send("DELETE", _path(slug, existing[0].schedule_id))
            return "removed the Towerfile schedule"
        return None
    zone = timezone or "UTC"
    if existing:
        current = existing[0]
        if (current.cron, current.timezone) == (cron, zone):
            return None
        client.send(
            "PATCH", _path(slug, current.schedule_id), json={"cron": cron, "timezone": zone}
        )
        return f"updated the Towerfile schedule: {cron} ({zone})"
    client.send(
        "POST", _path(slug), json={"cron": cron, "timezone": zone, "name": TOWERFILE_SCHEDULE}
    )
    return f"created the Towerfile schedule: {cron} ({zone})"


TOWERFILE_SCHEDULE = "towerfile"
