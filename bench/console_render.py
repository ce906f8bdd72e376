"""Console render benchmark: the server's time to render the Runs page of a team with
10,000 runs and the Run page of a run with 200,000 log lines (target: 50 ms each).

Seeding: a fresh migrated SQLite file in a temp dir; a team with a password, one app and
version, 10,000 runs (a tenth of them in each of several statuses) and one attempt with
200,000 log lines, written with plain INSERTs in one transaction. Then the app is built
in-process (``create_app``) and driven through Starlette's TestClient with a signed-in
console session, so the figures are the server's own: routing, the session lookup,
the store queries and the Jinja render, without a network or a browser.

Also measured: the overview (runs summary), the Runs page's refresh fragment, the run's
state JSON that the page polls, and a full download of the 200,000 lines as text.

Run: ``uv run python bench/console_render.py`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.migrate import upgrade_to_head

BOOTSTRAP = "bench-bootstrap-token-0123456789"
PASSWORD = "bench-password"
STATUSES = ["completed", "failed", "cancelled", "dead", "queued", "running"]


def ts(value: datetime) -> str:
    # As SQLModel stores aware datetimes: ISO text without the offset.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def seed(db: Path, team_id: int, runs: int, lines: int) -> int:
    """Runs and log lines; returns the id of the run that has the lines."""
    now = datetime.now(UTC)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO app (team_id, slug, description, disabled, created_at, updated_at) "
            "VALUES (?, 'bench', 'render benchmark', 0, ?, ?)",
            (team_id, ts(now), ts(now)),
        )
        app_id = conn.execute("SELECT id FROM app WHERE slug = 'bench'").fetchone()[0]
        conn.execute(
            "INSERT INTO app_version (app_id, version_no, artifact_object_key, artifact_sha256, "
            "artifact_size, entrypoint, timeout_seconds, params_schema, import_paths, created_at) "
            "VALUES (?, 1, 'artifacts/none', ?, 1234, 'main.py', 60, NULL, '[]', ?)",
            (app_id, "0" * 64, ts(now)),
        )
        version_id = conn.execute("SELECT id FROM app_version").fetchone()[0]
        env_id = conn.execute(
            "SELECT id FROM environment WHERE team_id = ?", (team_id,)
        ).fetchone()[0]
        rows = []
        for n in range(1, runs + 1):
            status = STATUSES[n % len(STATUSES)]
            queued = now - timedelta(seconds=(runs - n) * 10)
            finished = (
                ts(queued + timedelta(seconds=5)) if status not in ("queued", "running") else None
            )
            started = ts(queued + timedelta(seconds=1)) if status != "queued" else None
            rows.append(
                (
                    team_id,
                    app_id,
                    env_id,
                    "default",
                    version_id,
                    n,
                    status,
                    f'{{"n": {n}}}',
                    0,
                    0,
                    0,
                    0,
                    ts(queued),
                    started,
                    finished,
                    0 if finished else None,
                    None,
                    ts(now),
                )
            )
        conn.executemany(
            "INSERT INTO run (team_id, app_id, environment_id, environment, app_version_id, "
            "run_no, status, input, priority, max_retries, retry_count, cancel_requested, "
            "queued_at, started_at, finished_at, exit_code, error_message, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        run_id = conn.execute("SELECT max(id) FROM run WHERE status = 'completed'").fetchone()[0]
        conn.execute(
            "INSERT INTO runner (name, environment, labels, token_hash, status, last_seen_at, "
            "created_at) VALUES ('bench-runner', 'default', '{}', ?, 'online', ?, ?)",
            ("1" * 64, ts(now), ts(now)),
        )
        runner_id = conn.execute("SELECT id FROM runner").fetchone()[0]
        conn.execute(
            "INSERT INTO run_attempt (run_id, runner_id, attempt_no, lease_token_hash, "
            "lease_expires_at, status, exit_code, leased_at, started_at, finished_at) "
            "VALUES (?, ?, 1, ?, ?, 'completed', 0, ?, ?, ?)",
            (run_id, runner_id, "2" * 64, ts(now), ts(now), ts(now), ts(now)),
        )
        attempt_id = conn.execute("SELECT id FROM run_attempt").fetchone()[0]
        conn.executemany(
            "INSERT INTO run_log (attempt_id, seq, stream, line, logged_at) VALUES (?, ?, ?, ?, ?)",
            (
                (
                    attempt_id,
                    seq,
                    "stderr" if seq % 10 == 0 else "stdout",
                    f"line {seq}: the quick brown fox jumps over the lazy dog",
                    ts(now),
                )
                for seq in range(1, lines + 1)
            ),
        )
    return int(run_id)


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    call()  # warm: route models and statement caches are built on first use
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        upgrade_to_head(db)
        settings = ApiSettings(
            db_path=db,
            objects_dir=Path(folder) / "objects",
            bootstrap_token=BOOTSTRAP,  # type: ignore[arg-type]
        )
        with TestClient(create_app(settings)) as client:
            team = client.post(
                "/api/v1/bootstrap/team",
                json={"slug": "bench", "name": "Bench", "password": PASSWORD},
                headers={"Authorization": f"Bearer {BOOTSTRAP}"},
            ).json()
            started = time.perf_counter()
            run_id = seed(db, team["team_id"], args.runs, args.lines)
            print(
                f"seeded {args.runs} runs and {args.lines} log lines "
                f"in {time.perf_counter() - started:.1f} s"
            )
            form = client.get("/signin").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert csrf is not None
            signed = client.post(
                "/signin",
                data={"csrf_token": csrf.group(1), "slug": "bench", "password": PASSWORD},
                follow_redirects=False,
            )
            assert signed.status_code == 303, signed.text

            def get(path: str) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(path)
                    assert response.status_code == 200, (path, response.status_code)
                    return response

                return call

            cases = [
                ("Runs page (10,000 runs, first page)", "/runs", args.repeat),
                ("Runs page, status filter", "/runs?status=failed", args.repeat),
                ("Runs page refresh fragment", "/runs?fragment=true", args.repeat),
                ("Run page (200,000 log lines)", f"/runs/{run_id}", args.repeat),
                ("Run state JSON (polled)", f"/runs/{run_id}/state.json", args.repeat),
                ("Overview (runs summary)", "/", args.repeat),
                ("Log download, 200,000 lines", f"/runs/{run_id}/log.txt", 3),
                ("Log page JSON (10,000 lines)", f"/runs/{run_id}/log.json?after_seq=100000", 5),
            ]
            print(f"\n{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
            for name, path, repeat in cases:
                samples = sorted(timed(get(path), repeat))
                p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
                print(f"{name:44} {statistics.median(samples):8.1f} {p95:8.1f} {samples[-1]:8.1f}")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
