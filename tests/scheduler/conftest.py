"""Fixtures for scheduler tests: a migrated file and one app (``add_schedule`` in
tests/support/seed.py makes schedules through the shared store as the API makes them)."""

import pytest
from sqlalchemy import Engine

from tests.support.seed import Seeded, seed_app


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_app(engine)
