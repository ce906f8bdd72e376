"""Fixtures for reaper tests: an engine on the migrated temporary file and one app."""

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
