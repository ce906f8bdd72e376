"""Fixtures for store-level tests: an engine on the migrated temporary file and one app."""

import pytest
from sqlalchemy import Engine

from tests.support.seed import Seeded, seed_app


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_app(engine)


@pytest.fixture
def long_lease_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give ``live_api`` a 30 s lease TTL: request it before ``live_api``.

    Race tests over HTTP are about who gets a lease, not about expiry; on a loaded
    machine a request can take longer than the default 2 s test TTL, and a lease that
    expires between lease and start would turn the race into an expiry test."""
    monkeypatch.setenv("MINITOWER_TEST_LEASE_TTL", "30s")
