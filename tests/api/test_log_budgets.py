"""MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT: lines are stored up to the cap, then one
truncation line, then later lines are accepted (so the runner stops resending) but
dropped; a restarted API remembers the truncation from the database."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.databases import Database, database_settings
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

CAP = 1024


@contextmanager
def api(tmp_path: Path, database: Database) -> Iterator[TestClient]:
    settings = ApiSettings(
        **database_settings(database, tmp_path),  # type: ignore[arg-type]
        objects_dir=tmp_path / "objects",
        bootstrap_token=BOOTSTRAP_TOKEN,
        runner_registration_token=REGISTRATION_TOKEN,
        max_log_bytes_per_attempt=CAP,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def batch(first: int, count: int, size: int = 100) -> list[dict[str, Any]]:
    return [
        {"seq": seq, "stream": "stdout", "line": f"{seq:04d}".ljust(size, "x")}
        for seq in range(first, first + count)
    ]


def running_run(
    client: TestClient, archive: bytes, *, start_on_lease: bool = False
) -> tuple[TeamClient, RunnerClient, int, Lease]:
    """Team ``acme``'s first run of ``hello``, leased and started by runner ``r1``."""
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.deploy("hello", archive)
    run_id = team.create_run("hello")["run_id"]
    runner = RunnerClient.register(client, "r1", REGISTRATION_TOKEN)
    lease = runner.lease(start=start_on_lease)
    assert isinstance(lease, Lease)
    if not start_on_lease:
        check(runner.start(lease), 200)
    return team, runner, run_id, lease


def stored(team: TeamClient, run_id: int) -> list[dict[str, Any]]:
    page = check(team.get(f"/api/v1/runs/{run_id}/logs", params={"limit": 10_000}), 200)
    return list(page["logs"])


def test_lines_past_the_cap_are_dropped_after_one_truncation_line(
    tmp_path: Path, own_database: Database, hello_archive: bytes
) -> None:
    with api(tmp_path, own_database) as client:
        team, runner, run_id, lease = running_run(client, hello_archive)
        # 8 lines of 100 bytes fit; the 11th would pass 1024.
        assert check(runner.logs(lease, batch(1, 8)), 200) == {"accepted": 8, "dropped": 0}
        assert check(runner.logs(lease, batch(9, 5)), 200) == {"accepted": 5, "dropped": 3}
        # A resend of stored lines, and new lines, after the cap: accepted, not stored.
        assert check(runner.logs(lease, batch(1, 3)), 200)["accepted"] == 3
        assert check(runner.logs(lease, batch(14, 50)), 200) == {"accepted": 50, "dropped": 50}
        logs = stored(team, run_id)
    assert [line["seq"] for line in logs] == list(range(1, 12))
    assert sum(len(line["line"]) for line in logs[:10]) <= CAP
    marker = logs[-1]
    assert marker["stream"] == "stderr"
    assert marker["line"].startswith("[minitower] log truncated:")
    assert str(CAP) in marker["line"]

    # Another API process over the same database (a restart) knows the attempt is full.
    with api(tmp_path, own_database) as client:
        runner.http = team.http = client
        assert check(runner.logs(lease, batch(64, 2)), 200) == {"accepted": 2, "dropped": 2}
        assert len(stored(team, run_id)) == 11


def test_a_restarted_api_counts_the_bytes_already_stored(
    tmp_path: Path, own_database: Database, hello_archive: bytes
) -> None:
    with api(tmp_path, own_database) as client:
        team, runner, run_id, lease = running_run(client, hello_archive)
        check(runner.logs(lease, batch(1, 9)), 200)
    with api(tmp_path, own_database) as client:
        runner.http = team.http = client
        # 900 bytes stored before the restart: only one more 100-byte line fits.
        assert check(runner.logs(lease, batch(10, 3)), 200) == {"accepted": 3, "dropped": 2}
        logs = stored(team, run_id)
    assert [line["seq"] for line in logs] == list(range(1, 12))
    assert logs[-1]["line"].startswith("[minitower] log truncated:")


def test_a_results_last_lines_count_against_the_cap(
    tmp_path: Path, own_database: Database, hello_archive: bytes
) -> None:
    with api(tmp_path, own_database) as client:
        team, runner, run_id, lease = running_run(client, hello_archive, start_on_lease=True)
        check(runner.logs(lease, batch(1, 6)), 200)
        # 600 bytes stored: four of the result's lines fit, the fifth becomes the
        # truncation line, and the rest are dropped.
        check(runner.result(lease, "completed", exit_code=0, logs=batch(7, 8)), 200)
        logs = stored(team, run_id)
    assert [line["seq"] for line in logs] == list(range(1, 12))
    assert logs[-1]["line"].startswith("[minitower] log truncated:")
