"""The hostile-input tier: each reproduction of a costly input, sent to one live
``minitowerd`` process of the module, while its memory and ``/health`` are watched."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from minitower_shared.migrate import upgrade_to_head
from tests.support import hostile
from tests.support.processes import LiveApi, start_api
from tests.support.tokens import BOOTSTRAP_TOKEN


@pytest.fixture(scope="module")
def hostile_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    workdir = tmp_path_factory.mktemp("hostile")
    db_path = workdir / "db" / "minitower.db"
    upgrade_to_head(db_path)
    api = start_api(workdir, db_path, {"MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN})
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def target(hostile_api: LiveApi, tmp_path_factory: pytest.TempPathFactory) -> hostile.Target:
    objects_dir = Path(hostile_api.env["MINITOWER_OBJECTS_DIR"])
    workdir = tmp_path_factory.mktemp("hostile-inputs")
    return hostile.prepare_target(hostile_api.url, BOOTSTRAP_TOKEN, objects_dir, workdir)
