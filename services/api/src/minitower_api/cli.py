"""``minitowerd``: serve the API, or apply migrations."""

import logging
import sqlite3
from typing import Annotated

import typer
import uvicorn

from minitower_api.maintenance import MaintenanceError, db_status, runner_tokens
from minitower_api.settings import ApiSettings
from minitower_shared.config import configure_logging, load_settings
from minitower_shared.migrate import upgrade_to_head

app = typer.Typer(
    help="MiniTower control plane. Configured by MINITOWER_* environment variables "
    "(see the README); run `minitowerd migrate` once before serving.",
    no_args_is_help=False,
    add_completion=False,
)


def _settings() -> ApiSettings:
    return load_settings(ApiSettings, "minitowerd")


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on [default: from MINITOWER_LISTEN_ADDR]"),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [default: from MINITOWER_LISTEN_ADDR]")
    ] = None,
) -> None:
    """Serve the HTTP API (the default when no command is given)."""
    if ctx.invoked_subcommand is not None:
        return
    from minitower_api.main import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    log = logging.getLogger("minitower.api")
    if settings.bootstrap_token is None:
        log.warning("MINITOWER_BOOTSTRAP_TOKEN is not set: team bootstrap is disabled")
    if settings.runner_registration_token is None:
        log.warning("MINITOWER_RUNNER_REGISTRATION_TOKEN is not set: runners cannot register")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )


@app.command()
def migrate() -> None:
    """Apply pending database migrations and exit (safe to run again)."""
    settings = _settings()
    upgrade_to_head(settings.db_path)
    typer.echo(f"database {settings.db_path} is up to date")


@app.command("revoke-runner-tokens")
def revoke_runner_tokens(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME]...", help="Runners to revoke")
    ] = None,
    all_runners: Annotated[bool, typer.Option("--all", help="Revoke every runner's token")] = False,
) -> None:
    """Revoke runners' tokens: each runner's next call gets 401 and it registers again with
    MINITOWER_RUNNER_REGISTRATION_TOKEN (run after rotating that token)."""
    if all_runners == bool(names):
        typer.echo("minitowerd revoke-runner-tokens: give runner names or --all", err=True)
        raise typer.Exit(2)
    settings = _settings()
    try:
        revoked = runner_tokens.revoke_runner_tokens(
            settings.db_path, None if all_runners else names, busy_timeout=settings.db_busy_timeout
        )
    except MaintenanceError as exc:
        typer.echo(f"minitowerd revoke-runner-tokens: {exc}", err=True)
        raise typer.Exit(1) from exc
    for line in runner_tokens.describe(revoked):
        typer.echo(line)
    missing = runner_tokens.not_revoked(names, revoked)
    if missing:
        typer.echo(
            "minitowerd revoke-runner-tokens: no runner with a live token named "
            + ", ".join(missing),
            err=True,
        )
        raise typer.Exit(1)


@app.command("db-status")
def db_status_command(
    checkpoint: Annotated[
        bool,
        typer.Option("--checkpoint", help="Also fold the WAL into the database and truncate it"),
    ] = False,
    integrity: Annotated[
        bool, typer.Option("--integrity", help="Also run PRAGMA integrity_check (reads every page)")
    ] = False,
) -> None:
    """Show the database's journal mode, busy timeout, size, WAL size and schema revision;
    exits 1 when the integrity check fails or the checkpoint could not finish."""
    settings = _settings()
    try:
        status = db_status.db_status(
            settings.db_path,
            busy_timeout=settings.db_busy_timeout,
            checkpoint=checkpoint,
            integrity=integrity,
        )
    except (MaintenanceError, sqlite3.Error) as exc:
        typer.echo(f"minitowerd db-status: {exc}", err=True)
        raise typer.Exit(1) from exc
    for line in db_status.describe(status):
        typer.echo(line)
    if not status.ok:
        raise typer.Exit(1)


def main() -> None:
    app()
