"""deploy/runbooks/disk-full.md against a live ``minitowerd`` whose objects directory is a
1 MiB tmpfs: uploads fill it, the API answers 507 and keeps serving reads, the runbook's
local steps find and remove what an interrupted upload left behind, and uploads succeed
again."""

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.archives import make_archive as archive_of
from tests.support.clients import TeamClient, check
from tests.support.databases import copy_database
from tests.support.processes import LiveApi, start_api
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.volumes import small_tmpfs

VOLUME_BYTES = 1024 * 1024
# Random bytes do not compress: each upload takes about this much of the volume.
PAYLOAD_BYTES = 150 * 1024
# What an API killed mid-upload left behind, and an object no version references: the
# runbook needs both removed to make room for one more upload.
LEFTOVER_BYTES = 200 * 1024
# The API refuses larger uploads; the runbook's check asks for room for one of these.
MAX_ARTIFACT_BYTES = 300 * 1024
TOWERFILE = '[app]\nname = "big"\nscript = "main.py"\n'


def _archive() -> bytes:
    return archive_of(
        {"Towerfile": TOWERFILE, "main.py": "", "data.bin": secrets.token_bytes(PAYLOAD_BYTES)}
    )


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted where the API keeps its objects."""
    with small_tmpfs(tmp_path / "objects", VOLUME_BYTES) as objects:
        yield objects


@pytest.fixture
def api_on_small_volume(
    tmp_path: Path, migrated_template: Path, small_volume: Path
) -> Iterator[LiveApi]:
    env = {
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "MINITOWER_MAX_ARTIFACT_BYTES": str(MAX_ARTIFACT_BYTES),
        "MINITOWER_LOG_LEVEL": "info",
    }
    db_path = copy_database(migrated_template, tmp_path)
    api = start_api(tmp_path, db_path, env)
    try:
        yield api
    finally:
        api.stop()


def test_a_full_objects_volume_refuses_uploads_then_the_runbook_frees_it(
    api_on_small_volume: LiveApi, small_volume: Path
) -> None:
    api = api_on_small_volume
    leftover = small_volume / "tmp" / "interrupted.part"
    orphan = small_volume / "artifacts" / "sha256" / "00" / f"{'0' * 64}.tar.gz"
    orphan.parent.mkdir(parents=True)
    two_hours_ago = time.time() - 7200
    for path in (leftover, orphan):
        path.write_bytes(secrets.token_bytes(LEFTOVER_BYTES))
        os.utime(path, (two_hours_ago, two_hours_ago))
    with httpx.Client(base_url=api.url, timeout=30) as http:
        team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        team.create_app("big")
        accepted = 0
        refused = None
        for _ in range(VOLUME_BYTES // PAYLOAD_BYTES + 2):  # bounded: the volume fills first
            response = team.upload("big", _archive())
            if response.status_code != 201:
                refused = response
                break
            accepted += 1
        assert refused is not None, "the 1 MiB volume never filled up"
        assert refused.status_code == 507, refused.text
        body = refused.json()
        assert body["error"]["code"] == "insufficient_storage"
        assert "out of space" in body["error"]["message"]
        # Nothing of the refused upload stayed: no partial file, no version.
        assert sorted(p.name for p in (small_volume / "tmp").iterdir()) == ["interrupted.part"]
        versions = check(team.get("/api/v1/apps/big/versions"), 200)["versions"]
        assert len(versions) == accepted >= 1
        # Everything but uploads goes on: reads, readiness, new runs.
        assert check(http.get("/ready"), 200)["status"] == "ok"
        assert team.create_run("big")["status"] == "queued"
        assert api.events(
            "object store full: uploads are refused with 507 until space is freed", level="error"
        )
        metrics = http.get("/metrics").text
        assert 'minitower_storage_full_total{volume="objects"} 1.0' in metrics

        env = {
            "MINITOWER_DB_PATH": api.env["MINITOWER_DB_PATH"],
            "MINITOWER_OBJECTS_DIR": str(small_volume),
            "MINITOWER_MAX_ARTIFACT_BYTES": str(MAX_ARTIFACT_BYTES),
        }
        seen = run_step("disk-full", "local-see-what-is-full", env=env)
        volume_line = next(
            line for line in seen.stdout.splitlines() if line.endswith(str(small_volume))
        )
        use_percent = int(volume_line.split()[4].rstrip("%"))
        assert use_percent >= 80, seen.stdout  # less left than one more upload takes
        assert str(small_volume / "artifacts") in seen.stdout
        assert run_step("disk-full", "local-verify-room", env=env, check=False).returncode != 0
        listed = run_step("disk-full", "local-list-leftover-uploads", env=env)
        assert "interrupted.part" in listed.stdout
        removed = run_step("disk-full", "local-remove-leftover-uploads", env=env)
        assert removed.stdout.strip() == str(leftover)
        assert not leftover.exists()
        assert run_step("disk-full", "local-verify-room", env=env, check=False).returncode != 0
        dry_run = run_step("disk-full", "local-prune-dry-run", env=env)
        assert f"would delete 1 unreferenced objects ({LEFTOVER_BYTES} bytes)" in dry_run.stdout
        assert orphan.exists()
        pruned = run_step("disk-full", "local-prune", env=env)
        assert f"deleted 1 unreferenced objects ({LEFTOVER_BYTES} bytes)" in pruned.stdout
        assert not orphan.exists()
        checkpoint = run_step("disk-full", "local-checkpoint-wal", env=env)
        assert checkpoint.stdout.startswith("(0, "), checkpoint.stdout
        verified = run_step("disk-full", "local-verify-room", env=env)
        assert "bytes free" in verified.stdout

        check(team.upload("big", _archive()), 201)
        versions = check(team.get("/api/v1/apps/big/versions"), 200)["versions"]
        assert len(versions) == accepted + 1
