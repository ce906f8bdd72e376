"""``minitower secrets``: a team's secrets per environment (values go in, never out)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from minitower_cli.context import JsonOption, state
from minitower_cli.errors import UsageError
from minitower_cli.output import Column, short_time
from minitower_shared.schemas import SecretList, SecretPublic, SecretValue

secrets_app = typer.Typer(
    help="A team's secrets per environment: set (value from stdin or a prompt), list, "
    "delete. Values are never shown.",
    no_args_is_help=True,
    add_completion=False,
)

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="The secret's name, e.g. DB_URL (A-Z 0-9 _)")
]
EnvironmentOption = Annotated[
    str, typer.Option("--environment", "-e", help="The environment", show_default=True)
]

COLUMNS: list[Column[SecretPublic]] = [
    Column("NAME", lambda s: s.name, keep=True),
    Column("ENVIRONMENT", lambda s: s.environment, keep=True),
    Column("SET BY", lambda s: s.set_by_token_name or str(s.set_by_token_id or "-")),
    Column("UPDATED", lambda s: short_time(s.updated_at)),
]


def read_value(prompt: str) -> str:
    """From stdin when it is not a terminal (one trailing line break dropped, as ``echo``
    adds it), else a prompt without echo: never from an argument, which ``ps`` and the
    shell's history would show."""
    if not sys.stdin.isatty():
        value = sys.stdin.read()
        if value.endswith("\r\n"):
            return value[:-2]
        return value.removesuffix("\n")
    return getpass.getpass(prompt)


@secrets_app.command("set")
def secrets_set(
    ctx: typer.Context,
    name: NameArgument,
    environment: EnvironmentOption = "default",
    json_out: JsonOption = False,
) -> None:
    """Create or replace a secret (admin token). The value comes from stdin, e.g.
    ``printf %s "$DB_URL" | minitower secrets set DB_URL``, or a hidden prompt."""
    value = read_value(f"value of {name} ({environment}): ")
    if not value:
        raise UsageError("the value is empty; nothing was set")
    try:
        body = SecretValue(value=value)
    except ValidationError as exc:
        # Not str(exc): pydantic's text quotes the input, and the input is the secret.
        message = str(exc.errors(include_input=False)[0]["msg"]).removeprefix("Value error, ")
        raise UsageError(message) from None
    st = state(ctx)
    secret = st.client().call(
        SecretPublic,
        "PUT",
        f"/api/v1/secrets/{name}",
        params={"environment": environment},
        json=body.model_dump(),
    )
    if json_out:
        st.output.json(secret)
        return
    st.output.status(f"set secret {secret.name} in environment {secret.environment}")


@secrets_app.command("list")
def secrets_list(
    ctx: typer.Context,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Only this environment")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """The team's secrets: names, environments and who set them (no values)."""
    st = state(ctx)
    params = {"environment": environment} if environment else {}
    listing = st.client().get(SecretList, "/api/v1/secrets", params=params)
    st.output.listing(COLUMNS, listing.secrets, json_out)


@secrets_app.command("delete")
def secrets_delete(
    ctx: typer.Context, name: NameArgument, environment: EnvironmentOption = "default"
) -> None:
    """Delete a secret (admin token). Runs that already started keep their copy."""
    st = state(ctx)
    st.client().send("DELETE", f"/api/v1/secrets/{name}", params={"environment": environment})
    st.output.status(f"deleted secret {name} from environment {environment}")
