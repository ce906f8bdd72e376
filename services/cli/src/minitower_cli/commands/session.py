"""Who the CLI talks to: ``login``, ``logout``, ``whoami``."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.text import Text

from minitower_cli.client import ApiClient
from minitower_cli.config import (
    DEFAULT_PROFILE,
    DEFAULT_SERVER_URL,
    PROFILE_ENV,
    SERVER_ENV,
    Profile,
    check_profile_name,
    check_server_url,
    config_path,
    load_config,
    save_config,
)
from minitower_cli.context import JsonOption, state
from minitower_cli.errors import UsageError
from minitower_shared.schemas import Me


def login(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", metavar="URL", help=f"The API [default: {DEFAULT_SERVER_URL}]"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", metavar="TOKEN", help="A team token (asked for when omitted)"),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", metavar="NAME", help=f"Save as this profile [default: {DEFAULT_PROFILE}]"
        ),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check the token with the API first")
    ] = True,
) -> None:
    """Save a server and a team token as a profile.

    The profile goes to $XDG_CONFIG_HOME/minitower/config.toml (~/.config/... when unset),
    mode 0600, and becomes the default profile. The token is checked with the API first
    (--no-verify skips that)."""
    st = state(ctx)
    name = check_profile_name(
        profile or st.profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    )
    url = check_server_url(
        server or st.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER_URL, "--server"
    )
    secret = token or st.token
    if not secret:
        if not sys.stdin.isatty():
            raise UsageError("--token is required (no terminal to ask for it)")
        secret = typer.prompt("Team token", hide_input=True).strip()
    if not secret:
        raise UsageError("the token is empty")
    note = ""
    if verify:
        source = "login --token"
        with ApiClient(url, secret, token_source=source) as client:
            me = client.get(Me, "/api/v1/me")
        note = f" as team {me.team_slug} ({me.role} token {me.token_id})"
    path = config_path()
    config = load_config(path)
    config.profiles[name] = Profile(server_url=url, token=secret)
    config.default_profile = name
    save_config(path, config)
    st.output.out.print(
        Text.assemble(("logged in", "green"), f" to {url}{note}; saved as profile "),
        Text(name, style="bold"),
        Text(f" (the default) in {path}"),
        soft_wrap=True,
    )


def logout(
    ctx: typer.Context,
    profile: Annotated[
        str | None, typer.Option("--profile", metavar="NAME", help="[default: the current one]")
    ] = None,
) -> None:
    """Forget a profile's token."""
    st = state(ctx)
    path = config_path()
    config = load_config(path)
    name = profile or st.profile or config.default_profile or DEFAULT_PROFILE
    if name not in config.profiles:
        raise UsageError(f"no profile {name!r} in {path}")
    del config.profiles[name]
    if config.default_profile == name:
        config.default_profile = None
    save_config(path, config)
    st.output.out.print(f"removed profile {name} from {path}")


def whoami(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """Show the team and token in use.

    Also where requests go, and which profile or variable the token came from."""
    st = state(ctx)
    target = st.target()
    me = st.client().get(Me, "/api/v1/me")
    if json_out:
        st.output.json(me)
        return
    st.output.details(
        [
            ("team", f"{me.team_slug} (id {me.team_id})"),
            ("token", f"{me.token_id} ({me.role}), from {target.token_source}"),
            ("server", target.server_url),
            ("profile", target.profile or "-"),
        ]
    )
