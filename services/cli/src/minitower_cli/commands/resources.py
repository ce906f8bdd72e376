"""The team's resources: ``apps``, ``versions``, ``tokens`` and ``runners``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from minitower_cli.commands.deploy import describe_parameters
from minitower_cli.context import JsonOption, state
from minitower_cli.errors import UsageError
from minitower_cli.output import Column, human_bytes, short_time, status_text
from minitower_shared.schemas import (
    AppList,
    AppPublic,
    RunnerList,
    RunnerPublic,
    TokenCreated,
    TokenList,
    TokenPublic,
    VersionList,
    VersionPublic,
)

apps_app = typer.Typer(
    help="Create, list, inspect, disable and enable apps.",
    no_args_is_help=True,
    add_completion=False,
)
versions_app = typer.Typer(
    help="An app's uploaded versions.", no_args_is_help=True, add_completion=False
)
tokens_app = typer.Typer(help="The team's API tokens.", no_args_is_help=True, add_completion=False)
runners_app = typer.Typer(
    help="The runners serving the API (admin tokens only).",
    no_args_is_help=True,
    add_completion=False,
)

LIST_LIMIT = 10_000
AppArgument = Annotated[str, typer.Argument(metavar="APP", help="The app's slug")]


def _disabled(app: AppPublic) -> Text:
    return Text("disabled", style="red") if app.disabled else Text("enabled", style="green")


APP_COLUMNS: list[Column[AppPublic]] = [
    Column("APP", lambda a: a.slug, keep=True),
    Column("ID", lambda a: a.app_id, keep=True, justify="right"),
    Column("STATE", _disabled, keep=True),
    Column("CREATED", lambda a: short_time(a.created_at), keep=True),
    Column("DESCRIPTION", lambda a: a.description or ""),
]


@apps_app.command("list")
def apps_list(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """The team's apps."""
    st = state(ctx)
    apps = st.client().list_all(
        "/api/v1/apps", AppList, lambda p: (p.apps, p.next_cursor), limit=LIST_LIMIT
    )
    st.output.listing(APP_COLUMNS, apps, json_out)


@apps_app.command("create")
def apps_create(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(metavar="APP", help="3 to 32 of a-z, 0-9 and -")],
    description: Annotated[str, typer.Option("--description", help="What it does")] = "",
    json_out: JsonOption = False,
) -> None:
    """Create an app (``minitower deploy`` does it for you)."""
    st = state(ctx)
    app = st.client().post(
        AppPublic, "/api/v1/apps", json={"slug": slug, "description": description}
    )
    if json_out:
        st.output.json(app)
    else:
        st.output.out.print(Text.assemble(("created app ", "green"), (app.slug, "bold")))


@apps_app.command("show")
def apps_show(ctx: typer.Context, app: AppArgument, json_out: JsonOption = False) -> None:
    """An app and its latest version."""
    st = state(ctx)
    client = st.client()
    record = client.get(AppPublic, f"/api/v1/apps/{app}")
    if json_out:
        st.output.json(record)
        return
    versions = client.get(VersionList, f"/api/v1/apps/{app}/versions", params={"limit": 1})
    pairs: list[tuple[str, Any]] = [
        ("app", record.slug),
        ("id", record.app_id),
        ("state", _disabled(record)),
        ("description", record.description or "-"),
        ("created", short_time(record.created_at)),
        ("updated", short_time(record.updated_at)),
    ]
    if versions.versions:
        latest = versions.versions[0]
        pairs += [
            ("latest version", latest.version_no),
            ("entrypoint", latest.entrypoint),
            ("parameters", describe_parameters(latest.params_schema or {}) or "none"),
            ("sha256", latest.artifact_sha256),
        ]
    else:
        pairs.append(("latest version", "none yet (minitower deploy uploads one)"))
    st.output.details(pairs)


def _set_disabled(ctx: typer.Context, app: str, disabled: bool, json_out: bool) -> None:
    st = state(ctx)
    record = st.client().patch(AppPublic, f"/api/v1/apps/{app}", json={"disabled": disabled})
    if json_out:
        st.output.json(record)
        return
    what = "disabled: it refuses new runs" if disabled else "enabled"
    st.output.out.print(f"app {record.slug} {what}")


@apps_app.command("disable")
def apps_disable(ctx: typer.Context, app: AppArgument, json_out: JsonOption = False) -> None:
    """Refuse new runs of the app (runs already queued go on)."""
    _set_disabled(ctx, app, True, json_out)


@apps_app.command("enable")
def apps_enable(ctx: typer.Context, app: AppArgument, json_out: JsonOption = False) -> None:
    """Accept runs of the app again."""
    _set_disabled(ctx, app, False, json_out)


VERSION_COLUMNS: list[Column[VersionPublic]] = [
    Column("VERSION", lambda v: v.version_no, keep=True, justify="right"),
    Column("ENTRYPOINT", lambda v: v.entrypoint, keep=True),
    Column("TIMEOUT", lambda v: f"{v.timeout_seconds}s", keep=True, justify="right"),
    Column("SIZE", lambda v: human_bytes(v.artifact_size), keep=True),
    Column("CREATED", lambda v: short_time(v.created_at), keep=True),
    Column("SHA256", lambda v: v.artifact_sha256, keep=True),
    Column("PARAMETERS", lambda v: describe_parameters(v.params_schema or {})),
]


@versions_app.command("list")
def versions_list(ctx: typer.Context, app: AppArgument, json_out: JsonOption = False) -> None:
    """The app's versions, newest first."""
    st = state(ctx)
    versions = st.client().list_all(
        f"/api/v1/apps/{app}/versions",
        VersionList,
        lambda p: (p.versions, p.next_cursor),
        limit=LIST_LIMIT,
    )
    st.output.listing(VERSION_COLUMNS, versions, json_out)


@versions_app.command("show")
def versions_show(
    ctx: typer.Context,
    app: AppArgument,
    version_no: Annotated[int, typer.Argument(metavar="N", min=1)],
    json_out: JsonOption = False,
) -> None:
    """One version in full."""
    st = state(ctx)
    version = st.client().get(VersionPublic, f"/api/v1/apps/{app}/versions/{version_no}")
    if json_out:
        st.output.json(version)
        return
    st.output.details(
        [
            ("version", version.version_no),
            ("entrypoint", version.entrypoint),
            ("timeout", f"{version.timeout_seconds} s"),
            ("parameters", describe_parameters(version.params_schema or {}) or "none"),
            ("import paths", ", ".join(version.import_paths) or "-"),
            ("sha256", version.artifact_sha256),
            ("size", human_bytes(version.artifact_size)),
            ("created", short_time(version.created_at)),
        ]
    )


TOKEN_COLUMNS: list[Column[TokenPublic]] = [
    Column("ID", lambda t: t.token_id, keep=True, justify="right"),
    Column("NAME", lambda t: t.name or "-", keep=True),
    Column("ROLE", lambda t: t.role, keep=True),
    Column(
        "STATE",
        lambda t: Text("revoked", style="red") if t.revoked_at else Text("active", "green"),
        keep=True,
    ),
    Column("CREATED", lambda t: short_time(t.created_at), keep=True),
    Column("LAST USED", lambda t: short_time(t.last_used_at), keep=True),
]


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="What the token is for")] = "",
    role: Annotated[
        str, typer.Option("--role", help="member, or admin (only admins mint admins)")
    ] = "member",
    json_out: JsonOption = False,
) -> None:
    """Mint a team token. The secret is printed once, on stdout: keep it."""
    st = state(ctx)
    if role not in ("member", "admin"):
        raise UsageError(f"--role {role!r}: use member or admin")
    created = st.client().post(TokenCreated, "/api/v1/tokens", json={"name": name, "role": role})
    if json_out:
        st.output.json(created)
        return
    st.output.plain(created.token)
    st.output.status(
        f"token {created.token_id} ({created.role}"
        + (f", {created.name!r}" if created.name else "")
        + "): shown only this once"
    )


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """The team's tokens, revoked ones too (never their secrets)."""
    st = state(ctx)
    tokens = st.client().list_all(
        "/api/v1/tokens", TokenList, lambda p: (p.tokens, p.next_cursor), limit=LIST_LIMIT
    )
    st.output.listing(TOKEN_COLUMNS, tokens, json_out)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(metavar="TOKEN_ID")],
    json_out: JsonOption = False,
) -> None:
    """Revoke a token at once."""
    st = state(ctx)
    token = st.client().delete(TokenPublic, f"/api/v1/tokens/{token_id}")
    if json_out:
        st.output.json(token)
    else:
        st.output.out.print(f"token {token.token_id} revoked")


RUNNER_COLUMNS: list[Column[RunnerPublic]] = [
    Column("ID", lambda r: r.runner_id, keep=True, justify="right"),
    Column("NAME", lambda r: r.name, keep=True),
    Column("ENVIRONMENT", lambda r: r.environment, keep=True),
    # Servers before team-bound runners do not say: the schema's default, shared.
    Column("SCOPE", lambda r: "shared" if r.shared else "team", keep=True),
    Column("STATUS", lambda r: status_text(r.status), keep=True),
    Column("LAST SEEN", lambda r: short_time(r.last_seen_at), keep=True),
    Column("RUN", lambda r: r.current_run_id, keep=True, justify="right"),
    Column("LABELS", lambda r: r.labels or ""),
]


@runners_app.command("list")
def runners_list(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """The shared runners and the team's own, and what they are doing (admin tokens
    only). SCOPE is shared (the operator's) or team (bound to this team)."""
    st = state(ctx)
    runners = st.client().list_all(
        "/api/v1/admin/runners",
        RunnerList,
        lambda p: (p.runners, p.next_cursor),
        limit=LIST_LIMIT,
    )
    st.output.listing(RUNNER_COLUMNS, runners, json_out)
