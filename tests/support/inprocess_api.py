"""The API in-process (FastAPI's TestClient) as the API tier uses it: its settings over a
copy of the migrated template, emptied between tests, the shapes of the apps with
expiring leases and of the module-wide sandbox (tests/api/conftest.py builds them)."""

import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlmodel import SQLModel

from minitower_api.settings import ApiSettings
from minitower_shared import models  # noqa: F401 - registers the tables in the metadata
from tests.support.clients import Lease, RunnerClient, TeamClient
from tests.support.databases import Template, database_settings, libpq_url, object_store
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

# Long enough that a lease, a start and a heartbeat fit in it on a loaded machine, short
# enough that expiry tests sleep well under a second.
SHORT_TTL = 0.5

ClientFactory = Callable[..., TestClient]


def api_settings(folder: Path, template: Template) -> ApiSettings:
    """The settings of the root conftest's ``settings``, over a copy of ``template``."""
    database = template.copy(folder)
    return ApiSettings(
        **database_settings(database, folder),  # type: ignore[arg-type]
        objects_dir=folder / "objects",
        object_store=object_store(database),
        bootstrap_token=BOOTSTRAP_TOKEN,  # type: ignore[arg-type]
        runner_registration_token=REGISTRATION_TOKEN,  # type: ignore[arg-type]
        lease_ttl=30,
        lease_poll_interval=0.2,
    )


def empty_api(settings: ApiSettings) -> None:
    """Back to a freshly migrated, empty database and an empty object store. Ids start at
    1 again: the tables have no AUTOINCREMENT, so SQLite reuses rowids of an empty table;
    PostgreSQL's sequences are restarted."""
    tables = [table.name for table in reversed(SQLModel.metadata.sorted_tables)]
    if settings.database_url is not None:
        listed = ", ".join(f'"{name}"' for name in tables)
        with psycopg.connect(libpq_url(settings.database_url.get_secret_value())) as db:
            db.execute(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")  # type: ignore[arg-type]
    else:
        with closing(sqlite3.connect(settings.db_path, timeout=30)) as db, db:
            for name in tables:
                db.execute(f'DELETE FROM "{name}"')
    shutil.rmtree(settings.objects_dir / "artifacts", ignore_errors=True)
    temporary = settings.objects_dir / "tmp"  # created by the first app over these settings
    for leftover in temporary.iterdir() if temporary.is_dir() else ():
        leftover.unlink()


@dataclass
class ShortTtl:
    """An API whose leases live ``ttl`` seconds, with a team, ``hello`` and a runner."""

    client: TestClient
    team: TeamClient
    runner: RunnerClient
    ttl: float


@dataclass
class Sandbox:
    """One API with a little of everything, shared by the tests of a module that send
    only requests the API must refuse: those change nothing, so sharing is safe, and
    each test checks that what it touched is as it was."""

    client: TestClient
    team: TeamClient
    runner: RunnerClient
    runner2: RunnerClient
    completed: dict[str, Any]
    completed_lease: Lease
    running: dict[str, Any]
    lease: Lease
    leased: dict[str, Any]
    lease2: Lease

    def run(self, run_id: int) -> dict[str, Any]:
        return self.team.run(run_id)
