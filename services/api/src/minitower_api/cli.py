"""``minitowerd``: serve the API, apply migrations, or maintain the data (backup,
restore, prune; the logic of each is in ``minitower_api.maintenance``)."""

import errno
import logging
import resource
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from minitower_api.maintenance import (
    MaintenanceError,
    audit_log,
    backup,
    copy_to,
    db_status,
    prune,
    restore,
    runner_tokens,
    secrets_key,
    shared_runners,
    sqlite_file,
)
from minitower_api.server import ServerLimits, protocol_class
from minitower_api.settings import ApiSettings
from minitower_shared.config import load_settings
from minitower_shared.durations import parse_duration
from minitower_shared.logging_setup import configure_logging
from minitower_shared.migrate import upgrade_to_head
from minitower_shared.secret_box import generate_key

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
    configure_logging("api", settings.log_level, settings.log_format)
    log = logging.getLogger("minitower.api")
    if settings.bootstrap_token is None:
        log.warning("MINITOWER_BOOTSTRAP_TOKEN is not set: team bootstrap is disabled")
    if settings.runner_registration_token is None:
        log.warning("MINITOWER_RUNNER_REGISTRATION_TOKEN is not set: runners cannot register")
    _refuse_unreadable_secrets(settings)
    _refuse_unwritable_objects_dir(settings)
    _raise_open_files_limit(settings.max_connections, log)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        # Our handler for uvicorn's own records; our middleware's line per request
        # (access.py, with the request id and route) instead of uvicorn's access log.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        # h11 with our limits (server.py); no WebSockets to upgrade to.
        http=protocol_class(
            ServerLimits(
                max_connections=settings.max_connections,
                max_header_bytes=settings.max_header_bytes,
                header_timeout=settings.header_timeout,
                client_timeout=settings.client_timeout,
            )
        ),
        ws="none",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
    )


def _refuse_unreadable_secrets(settings: ApiSettings) -> None:
    """Exit 2 like a configuration error (shared/config.py) when the secrets stored could
    not be served: no key, or a key that does not decrypt them."""
    problem = secrets_key.startup_problem(
        settings.database, settings.secret_box(), busy_timeout=settings.db_busy_timeout
    )
    if problem is not None:
        typer.echo(f"minitowerd: configuration error: MINITOWER_SECRETS_KEY: {problem}", err=True)
        raise typer.Exit(2)


def _refuse_unwritable_objects_dir(settings: ApiSettings) -> None:
    """Exit 2 in one line when uploads could not be received: every store takes them
    into MINITOWER_OBJECTS_DIR/tmp first (a volume or tmpfs the service user cannot
    write is the usual cause)."""
    scratch = settings.objects_dir / "tmp"
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=scratch).close()
    except OSError as exc:
        typer.echo(
            f"minitowerd: configuration error: MINITOWER_OBJECTS_DIR: cannot write to "
            f"{scratch}: {exc.strerror or exc}",
            err=True,
        )
        raise typer.Exit(2) from None


# Descriptors beyond the connections: the database, its WAL, uploads, the listener.
_SPARE_FILES = 64


def _raise_open_files_limit(max_connections: int, log: logging.Logger) -> None:
    """Lift the soft limit on open files towards the hard one, so that the connection cap,
    not EMFILE, is what a flood of connections meets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning(
                "open files limited to %d: fewer than MINITOWER_MAX_CONNECTIONS (%d) can be served",
                target,
                max_connections,
            )


@app.command()
def migrate() -> None:
    """Apply pending database migrations and exit (safe to run again)."""
    settings = _settings()
    with _one_line_errors("migrate"):
        upgrade_to_head(settings.database)
    typer.echo(f"database {settings.database_label} is up to date")


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    """Failures an operator can act on as one line on stderr and exit 1, never a
    traceback."""
    try:
        yield
    except MaintenanceError as exc:
        _fail(command, str(exc))
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            _fail(command, f"no space left on device{where}")
        _fail(command, f"{exc.strerror or exc}{where}")
    except sqlite3.Error as exc:
        _fail(command, f"database error: {exc}")
    except SQLAlchemyError as exc:
        # The driver's own message: SQLAlchemy's adds the statement and a link.
        _fail(command, f"database error: {str(getattr(exc, 'orig', None) or exc).strip()}")


def _fail(command: str, message: str) -> None:
    typer.echo(f"minitowerd {command}: {message}", err=True)
    raise typer.Exit(1)


def _echo(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


_PG_BACKUP_RUNBOOK = "deploy/runbooks/backup-restore-postgresql.md"


@app.command("backup")
def backup_command(
    dest: Annotated[Path, typer.Argument(help="New (or empty) directory for the backup")],
) -> None:
    """Copy the database (consistently, while the API and the reaper keep running) and
    the objects into DEST, with a manifest.json to check them by."""
    settings = _settings()
    with _one_line_errors("backup"):
        db_path = sqlite_file(settings.database, "backup", f"use pg_dump ({_PG_BACKUP_RUNBOOK})")
        _echo(backup.summary(backup.take_backup(db_path, settings.objects_dir, dest)))


@app.command("restore")
def restore_command(
    src: Annotated[Path, typer.Argument(help="A directory written by `minitowerd backup`")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing database (it is kept aside)")
    ] = False,
) -> None:
    """Check a backup and restore it. Stop the API and the reaper first."""
    settings = _settings()
    with _one_line_errors("restore"):
        db_path = sqlite_file(
            settings.database, "restore", f"use pg_restore ({_PG_BACKUP_RUNBOOK})"
        )
        report = restore.restore_backup(src, db_path, settings.objects_dir, force=force)
        _echo(restore.summary(report))


class ObjectsTarget(StrEnum):
    postgres = "postgres"
    local = "local"


@app.command("copy-to")
def copy_to_command(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET_URL",
            envvar="MINITOWER_COPY_TO_URL",
            show_envvar=True,
            help="An empty PostgreSQL database: postgresql+psycopg://user:password@host:5432/db "
            "(from MINITOWER_COPY_TO_URL when not given, which keeps the password out of "
            "the process list; PGPASSWORD and ~/.pgpass work too)",
        ),
    ],
    objects: Annotated[
        ObjectsTarget,
        typer.Option(
            "--objects",
            help="postgres: copy the objects of MINITOWER_OBJECTS_DIR into the database "
            "(then run with MINITOWER_OBJECT_STORE=postgres); local: leave them on their "
            "volume (keep MINITOWER_OBJECT_STORE=local)",
        ),
    ] = ObjectsTarget.postgres,
) -> None:
    """Copy the SQLite database (MINITOWER_DB_PATH) and its objects into an empty
    PostgreSQL database, with every id, then verify: row counts and checksums per table,
    each object's SHA-256 read back. Stop the API, the reaper and the scheduler first
    (deploy/runbooks/move-to-postgresql.md). Refuses a target that holds any row; exits 1
    unless everything was verified."""
    settings = _settings()
    with _one_line_errors("copy-to"):
        if settings.database_url is not None:
            _fail(
                "copy-to",
                "copy-to copies a SQLite database: unset MINITOWER_DATABASE_URL and point "
                "MINITOWER_DB_PATH at the source",
            )
        report = copy_to.copy_to(
            settings.db_path,
            settings.objects_dir,
            target,
            objects="local" if objects is ObjectsTarget.local else "postgres",
        )
    _echo(copy_to.summary(report))
    if not report.ok:
        raise typer.Exit(1)


def _duration(value: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("prune")
def prune_command(
    older_than: Annotated[
        timedelta,
        typer.Option(
            "--older-than",
            parser=_duration,
            metavar="DURATION",
            help="Delete logs of runs (and finished webhook deliveries) that ended longer ago "
            "than this, e.g. 30d",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be deleted")
    ] = False,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="Then VACUUM to give the space back to the filesystem; blocks the API's "
            "writes while it runs (about a second per 100 MB)",
        ),
    ] = False,
) -> None:
    """Delete old terminal runs' log lines, objects no version references and audit log
    rows older than MINITOWER_AUDIT_RETENTION. Runs, attempts and versions are kept."""
    settings = _settings()
    with _one_line_errors("prune"):
        report = prune.prune(
            settings.database,
            settings.objects_dir,
            older_than=older_than,
            dry_run=dry_run,
            vacuum_after=vacuum,
            audit_retention=timedelta(seconds=settings.audit_retention),
        )
        _echo(prune.summary(report))


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
    with _one_line_errors("revoke-runner-tokens"):
        revoked = runner_tokens.revoke_runner_tokens(
            settings.database, None if all_runners else names, busy_timeout=settings.db_busy_timeout
        )
    _echo(runner_tokens.describe(revoked))
    missing = runner_tokens.not_revoked(names, revoked)
    if missing:
        _fail("revoke-runner-tokens", "no runner with a live token named " + ", ".join(missing))


@app.command("team-shared-runners")
def team_shared_runners(
    slug: Annotated[str, typer.Argument(help="The team's slug")],
    allow: Annotated[
        bool | None,
        typer.Option(
            "--allow/--deny",
            help="Let the team's runs go to shared runners, or only to runners bound to "
            "the team; without either, show the setting",
        ),
    ] = None,
) -> None:
    """Show or set whether a team's runs may go to shared runners (registered with
    MINITOWER_RUNNER_REGISTRATION_TOKEN). Takes effect on the next lease."""
    settings = _settings()
    with _one_line_errors("team-shared-runners"):
        if allow is None:
            line = shared_runners.show_shared_runners(
                settings.database, slug, busy_timeout=settings.db_busy_timeout
            )
        else:
            line = shared_runners.set_shared_runners(
                settings.database, slug, allow, busy_timeout=settings.db_busy_timeout
            )
    typer.echo(line)


@app.command("audit")
def audit_command(
    team: Annotated[
        str | None,
        typer.Option("--team", metavar="SLUG", help="This team's rows (default: without a team)"),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help='An action (runner.register) or a prefix ending in "."'),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most N rows")] = 50,
) -> None:
    """The audit log, newest first: the operator's rows without a team (shared runners'
    registrations, revoked runner tokens), or one team's rows with --team."""
    settings = _settings()
    with _one_line_errors("audit"):
        events = audit_log.audit_events(
            settings.database,
            team=team,
            action=action,
            limit=limit,
            busy_timeout=settings.db_busy_timeout,
        )
    _echo(audit_log.describe(events))


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
    with _one_line_errors("db-status"):
        status = db_status.db_status(
            sqlite_file(settings.database, "db-status", "use PostgreSQL's own statistics views"),
            busy_timeout=settings.db_busy_timeout,
            checkpoint=checkpoint,
            integrity=integrity,
        )
    _echo(db_status.describe(status))
    if not status.ok:
        raise typer.Exit(1)


@app.command("generate-secrets-key")
def generate_secrets_key() -> None:
    """Print a new key for MINITOWER_SECRETS_KEY (32 random bytes, URL-safe base64)."""
    typer.echo(generate_key())


@app.command("rotate-secrets-key")
def rotate_secrets_key() -> None:
    """Re-encrypt every secret under the first key of MINITOWER_SECRETS_KEY (set it to
    NEW,OLD first); then OLD can be dropped. Safe to run again."""
    settings = _settings()
    box = settings.secret_box()
    if box is None:
        _fail("rotate-secrets-key", "MINITOWER_SECRETS_KEY is not set (NEW,OLD to rotate)")
        return
    with _one_line_errors("rotate-secrets-key"):
        rotation = secrets_key.rotate(settings.database, box, busy_timeout=settings.db_busy_timeout)
    _echo(secrets_key.summary(rotation))


def main() -> None:
    app()
