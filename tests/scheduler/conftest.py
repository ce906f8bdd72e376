"""Fixtures for scheduler tests: a migrated file, one app, and schedules made through
the shared store as the API makes them."""

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from minitower_shared.db import write_session
from minitower_shared.models import App
from minitower_shared.store import schedules as schedule_store
from tests.support.seed import Seeded, seed_app


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_app(engine)


def add_schedule(
    engine: Engine, app: App, *, now: datetime, retry: dict[str, Any] | None = None, **fields: Any
) -> int:
    base: dict[str, Any] = {
        "name": "",
        "cron": "* * * * *",
        "timezone": "UTC",
        "input": {},
        "version_no": None,
        "environment": "default",
        "priority": 0,
        "overlap": "allow",
        "catchup": "none",
        "enabled": True,
    }
    with write_session(engine) as session:
        schedule = schedule_store.create_schedule(
            session, app=app, fields={**base, **fields}, retry=retry or {}, now=now
        )
        assert schedule is not None and schedule.id is not None
        return schedule.id
