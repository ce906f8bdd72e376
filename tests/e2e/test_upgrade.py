"""deploy/runbooks/upgrade.md, as written, from the previous release's images
(``:previous``, deploy/offline/build-previous-images.sh) to this checkout's (``:latest``),
with finished runs to keep and long runs in flight that must finish exactly once.

Leases last 30 s here (production: 60 s), longer than the API's restart; the drain
timeout (40 s) is longer than the in-flight runs (about 30 s).
"""

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import check
from tests.support.compose_stack import Stack, bring_up, tear_down
from tests.support.runbooks import run_step
from tests.support.waiting import wait_for

# One compose stack test at a time (under pytest-xdist): each drives a whole stack on
# timings of seconds (leases, heartbeats), which a second one beside it would crowd.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

HELLO = 'import os\nprint("hello", os.environ.get("who", "world"))\nprint("bye")\n'
SLOW = """\
import time
for i in range(30):
    print("tick", i, flush=True)
    time.sleep(1)
"""
REVISION = (
    "import sqlite3; print(sqlite3.connect('/var/lib/minitower/db/minitower.db')"
    ".execute('select version_num from alembic_version').fetchone()[0])"
)
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    up = bring_up(
        tmp_path_factory.mktemp("e2e-upgrade"),
        image_tag="previous",
        lease_ttl="30s",
        env={"MINITOWER_DRAIN_TIMEOUT": "40s", "MINITOWER_RUNNER_STOP_GRACE": "60s"},
    )
    try:
        yield up
    finally:
        tear_down(up)


def schema_revision(stack: Stack) -> str:
    done = stack.cli("run", "--rm", "--no-deps", "-T", "migrate", "python3", "-c", REVISION)
    return done.stdout.strip()


def images(stack: Stack, service: str) -> set[str]:
    return {c.attrs["Config"]["Image"] for c in stack.containers(service)}


def snapshot(stack: Stack, run_ids: list[int]) -> dict[int, tuple[dict[str, Any], list[str]]]:
    return {run_id: (stack.run(run_id), stack.lines(run_id)) for run_id in run_ids}


def unchanged(
    before: dict[int, tuple[dict[str, Any], list[str]]], stack: Stack
) -> dict[int, tuple[dict[str, Any], list[str]]]:
    """The runs of ``before`` as they read now, through the fields they had then: a new
    release may add fields to a run, never change or drop the old ones."""
    now = snapshot(stack, list(before))
    return {
        run_id: ({key: run.get(key, "<missing>") for key in before[run_id][0]}, lines)
        for run_id, (run, lines) in now.items()
    }


def test_upgrade_keeps_data_and_runs_in_flight(stack: Stack, tmp_path: Path) -> None:
    assert images(stack, "runner") == {"minitower/runner:previous"}
    # Data of the old release: two versions, finished runs with their logs.
    stack.deploy("hello", HELLO)
    stack.deploy("hello", HELLO.replace("bye", "bye, v2"))
    finished = [stack.start_run("hello", input={"who": f"n{i}"}) for i in range(4)]
    for run_id in finished:
        assert stack.wait_status(run_id)["status"] == "completed"
    before = snapshot(stack, finished)
    versions = check(stack.team.get("/api/v1/apps/hello/versions"), 200)["versions"]
    record = tmp_path / "schema-before.txt"
    old = stack.runbook_env(
        MINITOWER_UPGRADE_RECORD=str(record),
        MINITOWER_BACKUP_DIR=str(tmp_path / "backups"),
        PATH=PATH,
    )
    recorded = run_step(
        "upgrade", "compose-record-before", env={**old, "MINITOWER_IMAGE_TAG": "previous"}
    )
    assert record.read_text().strip() == recorded.stdout.strip().splitlines()[-1]

    new = {**old, "MINITOWER_IMAGE_TAG": "latest"}
    started = time.monotonic()
    checked = run_step("upgrade", "compose-check-images", env=new)
    assert "minitower/api:latest revision" in checked.stdout
    backed_up = run_step("upgrade", "compose-backup-before-upgrade", env=new)
    backup = Path(backed_up.stdout.strip().splitlines()[-1].removeprefix("backup: "))
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["schema_revision"] == record.read_text().strip()

    # Runs keep coming: two running (one per runner), one queued behind them.
    stack.deploy("slow", SLOW)
    in_flight = [stack.start_run("slow") for _ in range(3)]
    wait_for(
        lambda: sum(stack.run(r)["status"] == "running" for r in in_flight) == 2,
        timeout=60,
        what="two slow runs to be running",
    )
    migrated = run_step("upgrade", "compose-migrate", env=new)
    assert "is up to date" in migrated.stdout
    run_step("upgrade", "compose-restart-control-plane", env=new)
    # The old runners still hold runs: the rolling restart must drain them, not find idle.
    assert any(stack.run(r)["status"] == "running" for r in in_flight)
    rolled = run_step("upgrade", "compose-rolling-restart-runners", env=new, timeout=400)
    took = time.monotonic() - started
    print(f"upgrade took {took:.1f} s\n{rolled.stderr}")
    assert "replaced 2 of 2; 2 runner containers, all on minitower/runner:latest" in rolled.stderr
    assert images(stack, "api") == images(stack, "reaper") == {"minitower/api:latest"}
    assert images(stack, "runner") == {"minitower/runner:latest"}

    verified = run_step("upgrade", "verify-upgrade", env=new)
    assert '"status":"ok"' in verified.stdout.replace(" ", "")
    assert stack.http.get("/ready").status_code == 200  # the schema is at the new head
    # Every run in flight finished once, with all its lines; nothing old was lost.
    for run_id in in_flight:
        run = stack.wait_status(run_id, timeout=120)
        attempts = [(a["attempt_no"], a["status"]) for a in stack.attempts(run_id)]
        assert (run["status"], attempts) == ("completed", [(1, "completed")]), (run, attempts)
        assert stack.lines(run_id) == [f"tick {i}" for i in range(30)]
    assert unchanged(before, stack) == before
    now_versions = check(stack.team.get("/api/v1/apps/hello/versions"), 200)["versions"]
    # Through the fields they had: the new release may add some (retry_policy).
    assert [
        {k: v.get(k, "<missing>") for k in old}
        for v, old in zip(now_versions, versions, strict=True)
    ] == versions
    again = stack.wait_status(stack.start_run("hello", input={"who": "after"}))
    assert stack.lines(again["run_id"]) == ["hello after", "bye, v2"]

    # Roll back to the old images: allowed only while the schema is the one recorded.
    after = schema_revision(stack)
    back = run_step(
        "upgrade",
        "compose-roll-back-images",
        env={**old, "MINITOWER_IMAGE_TAG": "previous"},
        timeout=400,
        check=False,
    )
    if after != record.read_text().strip():
        # The new release migrated: the old one cannot run on this database until the
        # backup taken before the migration is back.
        assert back.returncode != 0 and "restore the backup" in back.stderr, back
        assert images(stack, "api") == {"minitower/api:latest"}
        restored = run_step(
            "upgrade",
            "compose-roll-back-restore",
            env={**new, "MINITOWER_RESTORE_FROM": str(backup)},
        )
        assert f"schema revision {record.read_text().strip()}" in restored.stdout
        back = run_step(
            "upgrade",
            "compose-roll-back-images",
            env={**old, "MINITOWER_IMAGE_TAG": "previous"},
            timeout=400,
        )
        assert images(stack, "api") == {"minitower/api:previous"}
        assert images(stack, "runner") == {"minitower/runner:previous"}
        assert schema_revision(stack) == record.read_text().strip()
        # The backup's runs and versions, not the later ones: the window is lost.
        stack.wait_ready()
        assert check(stack.team.get("/api/v1/apps/hello/versions"), 200)["versions"] == versions
        assert stack.team.get(f"/api/v1/runs/{again['run_id']}").status_code == 404
    else:
        assert back.returncode == 0, back.stderr
        assert images(stack, "runner") == {"minitower/runner:previous"}
    stack.wait_ready()
    assert unchanged(before, stack) == before
