"""``minitower runner-tokens``: the team's runner registration tokens (admin tokens).

A runner started with one as its MINITOWER_RUNNER_REGISTRATION_TOKEN is bound to the
team: it is handed only the team's runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from minitower_cli.context import JsonOption, state
from minitower_cli.output import Column, short_time
from minitower_shared.schemas import (
    RunnerRegistrationTokenCreated,
    RunnerRegistrationTokenList,
    RunnerRegistrationTokenPublic,
)

runner_tokens_app = typer.Typer(
    help="Registration tokens for runners bound to the team (admin tokens only).",
    no_args_is_help=True,
    add_completion=False,
)

PATH = "/api/v1/runner-registration-tokens"

REGISTRATION_TOKEN_COLUMNS: list[Column[RunnerRegistrationTokenPublic]] = [
    Column("ID", lambda t: t.registration_token_id, keep=True, justify="right"),
    Column("NAME", lambda t: t.name or "-", keep=True),
    Column(
        "STATE",
        lambda t: Text("revoked", style="red") if t.revoked_at else Text("active", "green"),
        keep=True,
    ),
    Column("CREATED", lambda t: short_time(t.created_at), keep=True),
    Column("LAST USED", lambda t: short_time(t.last_used_at), keep=True),
]


@runner_tokens_app.command("create")
def runner_tokens_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="What the token is for")] = "",
    json_out: JsonOption = False,
) -> None:
    """Mint a registration token. The secret is printed once, on stdout: give it to the
    runners as MINITOWER_RUNNER_REGISTRATION_TOKEN."""
    st = state(ctx)
    created = st.client().post(RunnerRegistrationTokenCreated, PATH, json={"name": name})
    if json_out:
        st.output.json(created)
        return
    st.output.plain(created.token)
    st.output.status(
        f"runner registration token {created.registration_token_id}"
        + (f" ({created.name!r})" if created.name else "")
        + ": shown only this once; runners registered with it serve only this team"
    )


@runner_tokens_app.command("list")
def runner_tokens_list(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """The team's registration tokens, revoked ones too (never their secrets)."""
    st = state(ctx)
    tokens = st.client().list_all(
        PATH,
        RunnerRegistrationTokenList,
        lambda p: (p.registration_tokens, p.next_cursor),
        limit=10_000,
    )
    st.output.listing(REGISTRATION_TOKEN_COLUMNS, tokens, json_out)


@runner_tokens_app.command("revoke")
def runner_tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(metavar="TOKEN_ID")],
    json_out: JsonOption = False,
) -> None:
    """Revoke a registration token at once (runners registered with it keep working)."""
    st = state(ctx)
    token = st.client().delete(RunnerRegistrationTokenPublic, f"{PATH}/{token_id}")
    if json_out:
        st.output.json(token)
    else:
        st.output.out.print(f"runner registration token {token.registration_token_id} revoked")
