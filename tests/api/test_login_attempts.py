"""The sign-in rate limits (minitower_api.login_attempts) over the database: a sliding
window per team slug and per client address, the table bounded to one window's
failures, and one count for every API process of an installation (three processes on
one PostgreSQL database answer 429 after the same number of failures as one)."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, func, select

from minitower_api.login_attempts import LoginAttempts
from minitower_shared.db import read_session, write_session
from minitower_shared.models import LoginFailure
from tests.support.api_assertions import expect_error
from tests.support.api_group import ONE_OR_THREE_APIS, LiveApiGroup
from tests.support.clients import check

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _failures(engine: Engine) -> int:
    with read_session(engine) as session:
        return int(session.execute(select(func.count()).select_from(LoginFailure)).scalar_one())


def test_the_window_slides_per_slug_and_per_address(engine: Engine) -> None:
    clock = Clock()
    attempts = LoginAttempts(per_slug=2, per_address=3, window=10, clock=clock)

    def check_now(slug: str, address: str) -> tuple[int, str] | None:
        with read_session(engine) as session:
            throttled = attempts.check(session, slug, address)
        return None if throttled is None else (throttled.retry_after_seconds, throttled.reason)

    def fail(slug: str, address: str) -> None:
        with write_session(engine) as session:
            attempts.failed(session, slug, address)

    fail("acme", "10.0.0.1")
    clock.now = T0 + timedelta(seconds=1)
    fail("acme", "10.0.0.1")
    assert check_now("acme", "10.0.0.2") == (9, "too many failed sign-ins for this team")
    assert check_now("globex", "10.0.0.2") is None
    fail("globex", "10.0.0.1")  # the address's third
    assert check_now("initech", "10.0.0.1") == (9, "too many failed sign-ins from this address")
    clock.now = T0 + timedelta(seconds=10)  # the first failure has left the window
    assert check_now("acme", "10.0.0.2") is None
    assert check_now("initech", "10.0.0.1") is None
    # A right password forgives the team, not the address.
    fail("acme", "10.0.0.3")
    with write_session(engine) as session:
        attempts.succeeded(session, "acme")
    assert check_now("acme", "10.0.0.4") is None
    with read_session(engine) as session:
        assert attempts.check(session, "x", "10.0.0.3") is None


def test_failures_that_left_the_window_are_deleted(engine: Engine) -> None:
    """The table holds one window's failures: 1,000 guesses at 1,000 slugs, then one
    more a window later, leave that one (and its address's) only. A slug as long as the
    login allows is kept, cut to the column."""
    clock = Clock()
    attempts = LoginAttempts(per_slug=1, per_address=10_000, window=60, clock=clock)
    with write_session(engine) as session:
        for n in range(1000):
            attempts.failed(session, f"slug-{n}", "10.0.0.1")
    assert _failures(engine) == 2000
    clock.now = T0 + timedelta(seconds=60)
    with write_session(engine) as session:
        attempts.failed(session, "x" * 200, "10.0.0.9")
    assert _failures(engine) == 2
    with read_session(engine) as session:
        assert attempts.check(session, "x" * 200, "10.0.0.8") is not None


@pytest.mark.slow
@ONE_OR_THREE_APIS
@pytest.mark.api_settings(login_attempts_per_slug="4", login_attempts_per_address="1000")
def test_every_api_process_counts_the_same_failures(apis: LiveApiGroup) -> None:
    """Guesses spread round-robin over the processes: the fifth is refused (429) by
    whichever process gets it, even with the right password."""
    with apis.clients() as clients:
        bootstrap = apis.env["MINITOWER_BOOTSTRAP_TOKEN"]
        created = clients[0].post(
            "/api/v1/bootstrap/team",
            json={"slug": "acme", "name": "Acme", "password": PASSWORD},
            headers={"Authorization": f"Bearer {bootstrap}"},
        )
        check(created, 201)

        def login(index: int, password: str) -> httpx.Response:
            body = {"slug": "acme", "password": password}
            return clients[index % len(clients)].post("/api/v1/teams/login", json=body)

        check(login(0, PASSWORD), 201)
        for index in range(4):
            expect_error(login(index, "guess"), 401, "unauthorized")
        for index in range(len(clients)):
            error = expect_error(login(index + 1, PASSWORD), 429, "rate_limited")
            assert "this team" in error["message"]
