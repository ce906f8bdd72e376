"""MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT: lines are stored up to the cap, then one
truncation line, then later lines are accepted (so the runner stops resending) but
dropped; a restarted API remembers the truncation from the database, and batches sent
at once through several API processes (PostgreSQL) spend one budget."""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.log_budget import TRUNCATION_PREFIX
from tests.support.api_group import ONE_OR_THREE_APIS, LiveApiGroup, runner_spread
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.concurrency import run_in_threads
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


SENDERS = 6
BATCHES = 8
PER_BATCH = 4


@pytest.mark.slow
@ONE_OR_THREE_APIS
@pytest.mark.api_settings(max_log_bytes_per_attempt=str(CAP), lease_ttl="60s")
def test_batches_at_once_through_every_api_process_spend_one_budget(
    apis: LiveApiGroup, hello_archive: bytes
) -> None:
    """One attempt's batches from 6 threads at once, each through another API process:
    exactly the lines the cap allows are stored, with one truncation line, whichever
    process took which batch. (Counted by each process for itself, as before the budget
    moved into the attempt's row, three processes stored 27 lines and 3 truncation
    lines.)"""
    with apis.clients() as clients:
        team = TeamClient.bootstrap(clients[0], "acme", apis.env["MINITOWER_BOOTSTRAP_TOKEN"])
        team.deploy("hello", hello_archive)
        run_id = team.create_run("hello")["run_id"]
        via = runner_spread(clients, 0, "r1")
        lease = via[0].lease(start=True)
        assert isinstance(lease, Lease)
        # First one line through each process in turn: each has seen the attempt before
        # the others wrote to it (a budget a process kept for itself would now be stale).
        for seq, client in enumerate(clients, start=1):
            assert check(replace(via[0], http=client).logs(lease, batch(seq, 1)), 200) == {
                "accepted": 1,
                "dropped": 0,
            }
        primed = len(clients)

        def send(sender: int) -> int:
            runner = replace(via[0], http=clients[sender % len(clients)])
            dropped = 0
            for number in range(BATCHES):
                first = 1 + primed + (sender * BATCHES + number) * PER_BATCH
                answer = check(runner.logs(lease, batch(first, PER_BATCH)), 200)
                assert answer["accepted"] == PER_BATCH
                dropped += answer["dropped"]
            return dropped

        dropped = run_in_threads(
            [functools.partial(send, sender) for sender in range(SENDERS)], timeout=60
        )
        logs = stored(team, run_id)
    markers = [line for line in logs if line["line"].startswith(TRUNCATION_PREFIX)]
    kept = [line for line in logs if not line["line"].startswith(TRUNCATION_PREFIX)]
    assert len(markers) == 1, markers
    # Lines of 100 bytes: ten fit in 1,024, the eleventh became the truncation line.
    assert len(kept) == CAP // 100 and sum(len(line["line"]) for line in kept) <= CAP
    # Every other line sent is counted dropped, the one the truncation line stands for too.
    assert sum(dropped) == primed + SENDERS * BATCHES * PER_BATCH - len(kept)
