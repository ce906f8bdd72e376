"""Several ``minitowerd`` processes over one database, for the races whose clients are
spread over them round-robin, as a proxy in front of API replicas would spread them.

Only PostgreSQL may have more than one API process per database (they wake each other
through LISTEN/NOTIFY): a group of several is always on PostgreSQL. A race test asks for
the ``apis`` fixture through ``ONE_OR_THREE_APIS``: against one API over the test's own
database (SQLite or PostgreSQL, by the pass), and in the PostgreSQL pass
(``MINITOWER_TEST_DATABASE=postgresql``) also against three over one database. The SQLite
pass leaves the three out: they would run on the same PostgreSQL, a second time, at
half a minute each. Index ``i`` names API ``i % len``, so a test written for the group
runs unchanged against one API.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from minitower_shared.db import create_db_engine
from tests.support.clients import RunnerClient
from tests.support.databases import ENGINE, Database
from tests.support.processes import LiveApi, spawn_api, wait_ready
from tests.support.tokens import REGISTRATION_TOKEN

SPREAD = 3
_COUNTS = [1, SPREAD] if ENGINE == "postgresql" else [1]
ONE_OR_THREE_APIS = pytest.mark.parametrize(
    "apis",
    _COUNTS,
    indirect=True,
    ids=["1-api", f"{SPREAD}-apis-postgresql"][: len(_COUNTS)],
)


@dataclass
class LiveApiGroup:
    apis: list[LiveApi]
    database: Database

    def __len__(self) -> int:
        return len(self.apis)

    def api(self, index: int) -> LiveApi:
        return self.apis[index % len(self.apis)]

    @property
    def env(self) -> dict[str, str]:
        return self.apis[0].env

    def client(
        self,
        index: int,
        *,
        timeout: float = 30,
        hooks: dict[str, list[Callable[..., Any]]] | None = None,
    ) -> httpx.Client:
        return httpx.Client(base_url=self.api(index).url, timeout=timeout, event_hooks=hooks or {})

    @contextlib.contextmanager
    def clients(
        self, *, hooks: dict[str, list[Callable[..., Any]]] | None = None
    ) -> Iterator[list[httpx.Client]]:
        """One client per API, in the group's order."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.client(i, hooks=hooks)) for i in range(len(self))]

    @contextlib.contextmanager
    def engine(self) -> Iterator[Engine]:
        """An engine of the test's own on the group's database."""
        engine = create_db_engine(self.database, pool_size=2)
        try:
            yield engine
        finally:
            engine.dispose()

    def logs(self) -> str:
        return "\n".join(api.log() for api in self.apis)

    def stop(self) -> None:
        for api in self.apis:
            api.stop()


def start_api_group(
    workdir: Path, database: Database, env: dict[str, str], count: int
) -> LiveApiGroup:
    """``count`` API processes over ``database``, started side by side, each in a folder
    of its own under ``workdir``."""
    started: list[LiveApi] = []
    try:
        for index in range(count):
            folder = workdir / f"api-{index}"
            folder.mkdir(exist_ok=True)
            started.append(spawn_api(folder, database, env))
        for api in started:
            wait_ready(api.url, api, timeout=60)
    except BaseException:
        for api in started:
            api.stop()
        raise
    return LiveApiGroup(apis=started, database=database)


def runner_spread(clients: list[httpx.Client], index: int, name: str) -> list[RunnerClient]:
    """Runner ``index`` registered through API ``index``, as three clients of one runner:
    through that API and the next two, so that its lease, start and result go to
    different API processes (all three the same one with a group of one)."""
    registered = RunnerClient.register(clients[index % len(clients)], name, REGISTRATION_TOKEN)
    return [replace(registered, http=clients[(index + step) % len(clients)]) for step in range(3)]
