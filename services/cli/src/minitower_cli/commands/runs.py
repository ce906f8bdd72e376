"""Runs: ``run`` (trigger, optionally wait), ``runs list|show|cancel|attempts`` and ``logs``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from minitower_cli.client import ApiClient
from minitower_cli.context import JsonOption, State, seconds_option, state
from minitower_cli.errors import EXIT_INTERRUPTED, CliError, UsageError
from minitower_cli.follow import LogPrinter, Waiting, describe_waiting, follow_run, report_outcome
from minitower_cli.output import Column, duration, short_time, status_text
from minitower_cli.params import build_input
from minitower_shared.schemas import (
    AttemptList,
    AttemptPublic,
    LogPage,
    RunList,
    RunPublic,
    VersionList,
    VersionPublic,
)
from minitower_shared.states import TERMINAL_RUN_STATUSES, RunStatus

runs_app = typer.Typer(
    help="List, inspect and cancel runs.", no_args_is_help=True, add_completion=False
)

RUN_STATUSES = [status.value for status in RunStatus]
_LOG_PAGE = 1000

WaitTimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--wait-timeout",
        metavar="DURATION",
        help="Give up waiting after this long (e.g. 90s, 10m): exit 5, the run goes on",
    ),
]


def run(
    ctx: typer.Context,
    app: Annotated[str, typer.Argument(metavar="APP", help="The app's slug")],
    params: Annotated[
        list[str] | None,
        typer.Option(
            "-p",
            "--param",
            metavar="KEY=VALUE",
            help="An input value, converted to the parameter's declared type (repeatable)",
        ),
    ] = None,
    input_json: Annotated[
        str | None,
        typer.Option("--input", metavar="JSON", help="The input as a JSON object (-p wins)"),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, metavar="N", help="Run this version [default: latest]"),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Stream the run's logs and exit with its outcome (0, 1 or 2)"),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the run's id and return (the default)")
    ] = False,
    environment: Annotated[
        str | None,
        typer.Option("--environment", metavar="NAME", help="Runners of this environment take it"),
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="Higher runs first (-1000 to 1000)")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option("--max-retries", help="Retries when a runner is lost (0 to 100)"),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="The same key within 24 h returns the first run instead of a new one",
        ),
    ] = None,
    wait_timeout: WaitTimeoutOption = None,
    json_out: JsonOption = False,
) -> int:
    """Start a run of APP.

    Prints the run's id and returns. With --wait, follows its logs (the app's stdout on
    stdout, its stderr on stderr) and exits 0 if it completed, 1 if it failed or is dead,
    2 if it was cancelled. Only the keys given are sent; the server fills defaults."""
    if wait and detach:
        raise UsageError("--wait and --detach cannot be used together")
    timeout = seconds_option(wait_timeout, "--wait-timeout")
    if timeout is not None and not wait:
        raise UsageError("--wait-timeout goes with --wait")
    st = state(ctx)
    client = st.client()
    assignments = params or []
    schema: dict[str, Any] | None = None
    version_no = version
    if assignments:
        chosen = _version(client, app, version)
        schema = chosen.params_schema
        version_no = chosen.version_no
    run_input, warnings = build_input(
        input_json, assignments, schema, app=f"{app} version {version_no}"
    )
    for warning in warnings:
        st.output.warn(warning)
    body: dict[str, Any] = {"input": run_input}
    for key, value in (
        ("version_no", version_no),
        ("environment", environment),
        ("priority", priority),
        ("max_retries", max_retries),
    ):
        if value is not None:
            body[key] = value
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = client.post(RunPublic, f"/api/v1/apps/{app}/runs", json=body, headers=headers)
    run_id = created.run_id
    if not wait:
        if json_out:
            st.output.json(created)
        else:
            st.output.plain(str(run_id))
            st.output.status(
                Text.assemble(
                    f"run {run_id} of {created.app_slug} ",
                    status_text(created.status),
                    f" (version {created.version_no}, run #{created.run_no}); "
                    f"follow it with: minitower logs {run_id} --follow",
                )
            )
        return 0
    st.output.status(
        Text.assemble(
            f"run {run_id} of {created.app_slug} ",
            status_text(created.status),
            f" (version {created.version_no}, run #{created.run_no})",
        )
    )
    return _follow(st, client, run_id, timeout=timeout, json_lines=json_out)


def _version(client: ApiClient, app: str, version: int | None) -> VersionPublic:
    if version is not None:
        return client.get(VersionPublic, f"/api/v1/apps/{app}/versions/{version}")
    listing = client.get(VersionList, f"/api/v1/apps/{app}/versions", params={"limit": 1})
    if not listing.versions:
        raise CliError(f"app {app!r} has no version yet: deploy one with `minitower deploy`")
    return listing.versions[0]


def _follow(
    st: State, client: ApiClient, run_id: int, *, timeout: float | None, json_lines: bool
) -> int:
    printer = LogPrinter(st.output, json_lines=json_lines)
    waiting = Waiting(st.output, describe_waiting(st.client, run_id)).start()
    try:
        follow_run(client, run_id, printer, st.output, timeout=timeout, waiting=waiting)
    except KeyboardInterrupt:
        waiting.stop()
        st.output.status(
            f"stopped following run {run_id}; it goes on "
            f"(stop it with: minitower runs cancel {run_id})"
        )
        return EXIT_INTERRUPTED
    final = client.get(RunPublic, f"/api/v1/runs/{run_id}")
    if json_lines:
        st.output.plain(json.dumps(final.model_dump(mode="json"), ensure_ascii=False))
    return report_outcome(st.output, final)


def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run's id")],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Stream new lines until the run ends; exit with its outcome"
        ),
    ] = False,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, metavar="N", help="This attempt [default: the latest]"),
    ] = None,
    wait_timeout: WaitTimeoutOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per log line")] = False,
) -> int:
    """Print a run's log lines.

    The app's stdout goes to stdout, its stderr to stderr. With --follow, every attempt's
    lines as they come, until the run ends; the exit code then says how it ended
    (0 completed, 1 failed or dead, 2 cancelled)."""
    st = state(ctx)
    timeout = seconds_option(wait_timeout, "--wait-timeout")
    if follow and attempt is not None:
        raise UsageError(
            "--attempt and --follow cannot be used together: --follow shows every attempt"
        )
    if timeout is not None and not follow:
        raise UsageError("--wait-timeout goes with --follow")
    client = st.client()
    if follow:
        return _follow(st, client, run_id, timeout=timeout, json_lines=json_out)
    printer = LogPrinter(st.output, json_lines=json_out)
    after = -1
    shown_attempt: int | None = None
    while True:
        params: dict[str, Any] = {"after_seq": after, "limit": _LOG_PAGE}
        if attempt is not None:
            params["attempt"] = attempt
        page = client.get(LogPage, f"/api/v1/runs/{run_id}/logs", params=params)
        entries = page.logs
        if entries and shown_attempt is None:
            shown_attempt = entries[0].attempt_no
            # Pin the attempt, so that a retry starting meanwhile does not switch pages.
            attempt = shown_attempt
        for entry in entries:
            printer.entry(entry)
        if len(entries) < _LOG_PAGE:
            break
        after = page.next_seq
    if shown_attempt is not None and shown_attempt > 1 and not json_out:
        st.output.status(
            Text(
                f"(attempt {shown_attempt}; --attempt N shows an earlier one)",
                style="bright_black",
            )
        )
    return 0


# --- runs ... -------------------------------------------------------------------------

RUN_COLUMNS: list[Column[RunPublic]] = [
    Column("RUN", lambda r: r.run_id, keep=True, justify="right"),
    Column("APP", lambda r: r.app_slug, keep=True),
    Column("NO.", lambda r: r.run_no, keep=True, justify="right"),
    Column("VERSION", lambda r: r.version_no, keep=True, justify="right"),
    Column("STATUS", lambda r: status_text(r.status), keep=True),
    Column("ENVIRONMENT", lambda r: r.environment, keep=True),
    Column("QUEUED", lambda r: short_time(r.queued_at), keep=True),
    Column("DURATION", lambda r: duration(r.started_at, r.finished_at), keep=True),
    Column("EXIT", lambda r: r.exit_code, keep=True, justify="right"),
]


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    app: Annotated[
        str | None, typer.Option("--app", metavar="APP", help="Only this app's runs")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help=f"Only runs in this status: {', '.join(RUN_STATUSES)}",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many runs")
    ] = 20,
    json_out: JsonOption = False,
) -> None:
    """The team's runs, newest first."""
    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"--status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    st = state(ctx)
    rows = st.client().list_all(
        "/api/v1/runs",
        RunList,
        lambda p: (p.runs, p.next_cursor),
        limit=limit,
        params={"app": app, "status": status},
    )
    st.output.listing(RUN_COLUMNS, rows, json_out)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    json_out: JsonOption = False,
) -> None:
    """One run in full."""
    st = state(ctx)
    run = st.client().get(RunPublic, f"/api/v1/runs/{run_id}")
    if json_out:
        st.output.json(run)
        return
    st.output.details(
        [
            ("run", run.run_id),
            ("app", run.app_slug),
            ("run no.", run.run_no),
            ("version", run.version_no),
            ("status", status_text(run.status)),
            ("environment", run.environment),
            ("input", run.input),
            ("priority", run.priority),
            ("retries", f"{run.retry_count} of {run.max_retries}"),
            ("cancel requested", run.cancel_requested),
            ("queued", short_time(run.queued_at)),
            ("started", short_time(run.started_at)),
            ("finished", short_time(run.finished_at)),
            ("duration", duration(run.started_at, run.finished_at)),
            ("exit code", run.exit_code),
            ("error", run.error_message),
        ]
    )


@runs_app.command("cancel")
def runs_cancel(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    json_out: JsonOption = False,
) -> None:
    """Cancel a run.

    A queued run is cancelled at once; a running one once its runner has stopped it."""
    st = state(ctx)
    before = st.client().get(RunPublic, f"/api/v1/runs/{run_id}")
    run = st.client().post(RunPublic, f"/api/v1/runs/{run_id}/cancel")
    if json_out:
        st.output.json(run)
        return
    status = run.status
    if before.status in TERMINAL_RUN_STATUSES:
        message = Text.assemble(f"run {run_id} had already ended: ", status_text(status))
    elif status == RunStatus.CANCELLING:
        message = Text.assemble(
            f"run {run_id} ", status_text(status), ": its runner has been asked to stop it"
        )
    else:
        message = Text.assemble(f"run {run_id} ", status_text(status))
    st.output.out.print(message)


ATTEMPT_COLUMNS: list[Column[AttemptPublic]] = [
    Column("ATTEMPT", lambda a: a.attempt_no, keep=True, justify="right"),
    Column("RUNNER", lambda a: a.runner_name, keep=True),
    Column("STATUS", lambda a: status_text(a.status), keep=True),
    Column("EXIT", lambda a: a.exit_code, keep=True, justify="right"),
    Column("LEASED", lambda a: short_time(a.leased_at), keep=True),
    Column("DURATION", lambda a: duration(a.started_at, a.finished_at), keep=True),
    Column("ERROR", lambda a: a.error_message),
]


@runs_app.command("attempts")
def runs_attempts(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    json_out: JsonOption = False,
) -> None:
    """List a run's attempts: runner and outcome."""
    st = state(ctx)
    listing = st.client().get(AttemptList, f"/api/v1/runs/{run_id}/attempts")
    st.output.listing(ATTEMPT_COLUMNS, listing.attempts, json_out)
