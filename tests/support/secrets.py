"""Shared by the secrets tests: a fixed key, a Towerfile declaring secrets, and calls on
the secrets routes."""

from typing import Any

import httpx

from tests.support.archives import make_archive
from tests.support.clients import Lease, RunnerClient, TeamClient

# Fixed keys (Fernet.generate_key() output): tests must not depend on randomness here.
KEY = "x2Dv8m3k9Zc0QH0j1pN4C2e2u0Ww3v4M5r6Y7s8T9aE="
OTHER_KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE="

SECRETS_TOWERFILE = """\
[app]
name = "vault"
script = "main.py"
secrets = ["DB_URL", "API_KEY"]
"""


def secrets_archive(main: str = "print('hi')\\n") -> bytes:
    return make_archive({"Towerfile": SECRETS_TOWERFILE, "main.py": main})


def put_secret(
    team: TeamClient, name: str, value: Any, environment: str | None = None
) -> httpx.Response:
    params = {} if environment is None else {"environment": environment}
    return team.http.put(
        f"/api/v1/secrets/{name}", params=params, json={"value": value}, headers=team.headers
    )


def delete_secret(team: TeamClient, name: str, environment: str | None = None) -> httpx.Response:
    params = {} if environment is None else {"environment": environment}
    return team.http.delete(f"/api/v1/secrets/{name}", params=params, headers=team.headers)


def run_secrets(runner: RunnerClient, lease: Lease) -> httpx.Response:
    return runner.call(lease, "GET", "secrets")
