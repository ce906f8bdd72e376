"""``minitowerd``: serve the API, or apply migrations."""

import logging
from typing import Annotated

import typer
import uvicorn

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


def main() -> None:
    app()
