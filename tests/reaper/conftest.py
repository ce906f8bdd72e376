"""Fixtures for reaper tests: an engine on the migrated temporary file and one app."""

import pytest
from sqlalchemy import Engine

from tests.support.seed import Seeded, seed_app


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_app(engine)
