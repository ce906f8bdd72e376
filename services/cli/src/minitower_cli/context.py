"""What every command shares: the global options, the API client they resolve to, and
the options several commands take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import typer

from minitower_cli.client import ApiClient
from minitower_cli.config import Target, resolve_target
from minitower_cli.errors import UsageError
from minitower_cli.output import Output

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's objects as JSON instead of a table")
]


@dataclass
class State:
    server: str | None = None
    token: str | None = None
    profile: str | None = None
    output: Output = field(default_factory=Output)
    _clients: list[ApiClient] = field(default_factory=list)

    def target(self) -> Target:
        return resolve_target(server=self.server, token=self.token, profile=self.profile)

    def client(self) -> ApiClient:
        """A client with a team token (a UsageError when none is configured)."""
        target = self.target()
        if not target.token:
            raise UsageError(
                "no API token: run `minitower login --server URL --token TOKEN`, "
                "set MINITOWER_API_TOKEN, or pass --token before the command"
            )
        client = ApiClient(target.server_url, target.token, token_source=target.token_source)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def seconds_option(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    # Imported here: it brings pydantic, which every other command can start without.
    from minitower_shared.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from exc
    if seconds <= 0:
        raise UsageError(f"{option} must be more than zero")
    return seconds
