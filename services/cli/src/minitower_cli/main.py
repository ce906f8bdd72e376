"""``minitower``: the command line. Global options, the commands, and the one place where
every failure becomes one line on stderr and an exit code."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from minitower_cli import __version__
from minitower_cli.commands.audit import audit
from minitower_cli.commands.deploy import deploy
from minitower_cli.commands.resources import apps_app, runners_app, tokens_app, versions_app
from minitower_cli.commands.runner_tokens import runner_tokens_app
from minitower_cli.commands.runs import logs, run, runs_app
from minitower_cli.commands.schedules import schedules_app
from minitower_cli.commands.secrets import secrets_app
from minitower_cli.commands.session import login, logout, whoami
from minitower_cli.context import State, state
from minitower_cli.dev import DevOptions, run_dev
from minitower_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, UsageError
from minitower_cli.output import Output, StdoutClosed, guard_stdout
from minitower_cli.project import SLUG_PATTERN

HELP = """Deploy, run and follow MiniTower apps, over the HTTP API.

Where requests go: --server, else MINITOWER_SERVER_URL, else the profile's server
(`minitower login`), else http://127.0.0.1:8080. The token: --token, else
MINITOWER_API_TOKEN, else the profile's. Global options go before the command.

Exit codes: 0 ok (or the run completed), 1 the run failed or is dead, 2 the run was
cancelled, 3 the API refused or could not be reached, 4 bad usage or input,
5 --wait-timeout passed, 130 interrupted.
"""

app = typer.Typer(
    name="minitower",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"minitower {__version__}")
        raise typer.Exit(0)


@app.callback()
def global_options(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", metavar="URL", help="The API's URL (overrides the profile)"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", metavar="TOKEN", help="A team token (overrides the profile)"),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", metavar="NAME", help="Use this saved profile"),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    ctx.obj = State(server=server, token=token, profile=profile, output=Output())


app.command()(login)
app.command()(logout)
app.command()(whoami)
app.command()(deploy)
app.command()(run)
app.command()(logs)
app.command()(audit)
app.add_typer(runs_app, name="runs")
app.add_typer(apps_app, name="apps")
app.add_typer(versions_app, name="versions")
app.add_typer(tokens_app, name="tokens")
app.add_typer(runners_app, name="runners")
app.add_typer(runner_tokens_app, name="runner-tokens")
app.add_typer(schedules_app, name="schedules")
app.add_typer(secrets_app, name="secrets")


@app.command()
def dev(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="The API's port on 127.0.0.1")
    ] = 8080,
    runners: Annotated[
        int, typer.Option("--runners", min=0, max=64, help="How many runners to start")
    ] = 2,
    state_dir: Annotated[
        Path,
        typer.Option("--state-dir", metavar="DIR", help="Database, objects, venvs and secrets"),
    ] = Path(".minitower"),
    team: Annotated[
        str, typer.Option("--team", metavar="SLUG", help="The team bootstrapped on first start")
    ] = "dev",
    save_profile: Annotated[
        bool,
        typer.Option(
            "--login/--no-login",
            help="Save the team's token as the profile 'dev' (the default profile if "
            "there is none yet)",
        ),
    ] = True,
) -> int:
    """Run the whole stack locally, in one command.

    Migrates, then starts the API, the reaper and N runners as processes of this machine,
    with their logs here and their state in --state-dir. Bootstraps a team on the first
    start. Ctrl-C (or SIGTERM) stops them all."""
    if not re.fullmatch(SLUG_PATTERN, team):
        raise UsageError(f"--team {team!r}: use 3 to 32 of a-z, 0-9 and -, starting with a letter")
    options = DevOptions(
        port=port,
        runners=runners,
        state_dir=state_dir.absolute(),
        team=team,
        login=save_profile,
    )
    return run_dev(options, state(ctx).output)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every outcome is an exit code, every failure one line on stderr."""
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    output = Output()
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    guard_stdout()
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name="minitower",
            standalone_mode=False,
        )
    except CliError as exc:
        output.error(exc.message)
        return exc.exit_code
    except StdoutClosed:
        # The reader went away: stop quietly, with the exit code of a shell tool
        # killed by SIGPIPE (and nothing more to flush at exit).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        return 141
    except Exception as exc:
        code = _click_failure(exc, output)
        if code is not None:
            return code
        if os.environ.get("MINITOWER_DEBUG"):
            raise
        output.error(f"unexpected {type(exc).__name__}: {exc} (MINITOWER_DEBUG=1 shows where)")
        return 10
    except KeyboardInterrupt:
        output.error("interrupted")
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


def _click_failure(exc: Exception, output: Output) -> int | None:
    """Click's (or Typer's vendored copy of click's) usage errors and aborts, known by
    their class names, as Typer itself does: one line, exit 4."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    ctx: Any = getattr(exc, "ctx", None)
    if "NoArgsIsHelpError" in names:
        print(ctx.get_help() if ctx is not None else HELP)
        return 0
    if "UsageError" in names:
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        output.error(f"{exc.format_message()}{hint}")  # type: ignore[attr-defined]
        return EXIT_USAGE
    if "ClickException" in names:
        output.error(exc.format_message())  # type: ignore[attr-defined]
        return EXIT_USAGE
    if "Abort" in names:
        output.error("aborted")
        return EXIT_INTERRUPTED
    return None
