"""Fixtures of the console tier: a live local stack (``minitowerd``, ``minitower-reaper``
and a ``minitower-runner`` on 127.0.0.1) that the module shares, a team with a password,
the CLI, and Debian's chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.support.browser import LAUNCH_ARGS, require_chromium
from tests.support.cli import API_ENV, Cli, clean_environment
from tests.support.clients import TeamClient, check
from tests.support.console import (
    PASSWORD,
    TEAM,
    VIEWPORT,
    ConsoleStack,
    sign_in_with_password,
)
from tests.support.databases import copy_database
from tests.support.processes import fast_runner_env, start_api, start_reaper, start_runner
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[ConsoleStack]:
    require_chromium()
    workdir = tmp_path_factory.mktemp("console-stack")
    db_path = copy_database(migrated_template, workdir)
    # Leases long enough for a runner to ship a 100,000-line log before reporting.
    api = start_api(workdir, db_path, {**API_ENV, "MINITOWER_LEASE_TTL": "30s"})
    http = api.client()
    body = check(
        http.post(
            "/api/v1/bootstrap/team",
            json={"slug": TEAM, "name": "Console Team", "password": PASSWORD},
            headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"},
        ),
        201,
    )
    team = TeamClient(http=http, token=body["token"], team_id=body["team_id"])
    home = workdir / "home"
    home.mkdir()
    env = {
        **clean_environment(home),
        "MINITOWER_SERVER_URL": api.url,
        "MINITOWER_API_TOKEN": team.token,
    }
    stack = ConsoleStack(
        api=api, http=http, team=team, cli=Cli(env=env, cwd=workdir), workdir=workdir
    )
    try:
        stack.processes.append(
            start_reaper(workdir, db_path, {"MINITOWER_EXPIRY_CHECK_INTERVAL": "0.2s"}, "reaper")
        )
        stack.processes.append(
            start_runner(
                workdir,
                api.url,
                "console-runner",
                fast_runner_env("default", workdir / "venvs", REGISTRATION_TOKEN),
            )
        )
        yield stack
    finally:
        for process in stack.processes:
            process.stop()
        http.close()
        api.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = require_chromium()
    browser = playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, stack: ConsoleStack) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=stack.url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def signed_in(page: Page) -> Page:
    sign_in_with_password(page)
    return page
