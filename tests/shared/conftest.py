"""Fixtures for store-level tests: an engine on the migrated temporary file and one app."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from minitower_shared.db import create_db_engine
from tests.support.seed import Seeded, seed_app


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(db_path, pool_size=2)
    yield engine
    engine.dispose()


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
