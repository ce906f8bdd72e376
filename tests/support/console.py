"""The console tier's shared pieces: the team it signs in as, the browser's viewport, the
local stack a module shares (tests/console/conftest.py builds it) and the ways to sign
in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.support.cli import Cli
from tests.support.clients import TeamClient, check
from tests.support.processes import LiveApi, Process

PASSWORD = "console-password-1"
TEAM = "console-team"
VIEWPORT = {"width": 1280, "height": 900}
# Long enough for a first run to build its venv on a loaded machine.
RUN_TIMEOUT_MS = 90_000


@dataclass
class ConsoleStack:
    api: LiveApi
    http: httpx.Client
    team: TeamClient
    cli: Cli
    workdir: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.api.url


def sign_in_with_password(page: Page, slug: str = TEAM, password: str = PASSWORD) -> None:
    page.goto("/signin")
    page.get_by_label("Team", exact=True).fill(slug)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r"/$"))


def sign_in_with_token(page: Page, token: str) -> None:
    page.goto("/signin")
    page.get_by_label("Team token").fill(token)
    page.get_by_role("button", name="Sign in with token").click()


def member_token(team: TeamClient) -> str:
    body: dict[str, Any] = check(
        team.post("/api/v1/tokens", json={"name": "member", "role": "member"}), 201
    )
    return str(body["token"])
