"""Backup, restore and prune benchmark on a database of N finished runs with logs.

1. Seed: migrates a fresh SQLite file in a temp dir, writes a team, an app, one version
   (a real object file), one runner, then N completed runs, each with one attempt and L
   log lines, by plain SQL in one transaction (the store's create path would take
   minutes for what is only setting the stage).
2. Backup: ``minitowerd backup``'s function (``maintenance.backup.take_backup``) R times,
   each into a fresh directory, while a writer thread appends log lines to a live
   attempt as fast as one ``write_session`` at a time allows; prints the median time,
   the database and backup sizes, and the writer's commits and worst wait meanwhile.
   ``--compare`` also times the copy methods that were weighed (see bench/README.md).
3. Prune: a dry run, then the real run, of ``--older-than 0s`` (every run qualifies).

Run: ``uv run python bench/backup.py`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from minitower_api.maintenance.backup import take_backup
from minitower_api.maintenance.prune import prune
from minitower_api.objects import ObjectStore
from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.migrate import upgrade_to_head
from minitower_shared.models import RunAttempt
from minitower_shared.store import lifecycle

LINE = "2026-12-01 12:00:00 INFO processed batch {n} of the nightly import: ok"


def seed(db: Path, objects: Path, runs: int, lines: int) -> int:
    """The database described above; returns the id of one live attempt for the writer."""
    upgrade_to_head(db)
    artifact = b"\x1f\x8b" + os.urandom(4096)
    key = ObjectStore.artifact_key("ab" * 32)
    (objects / key).parent.mkdir(parents=True)
    (objects / key).write_bytes(artifact)
    now = utcnow()
    stamp = (now - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "INSERT INTO team (id, slug, name, created_at) VALUES (1, 'bench', 'B', ?)", (stamp,)
        )
        conn.execute(
            "INSERT INTO environment (id, team_id, name, created_at) VALUES (1, 1, 'default', ?)",
            (stamp,),
        )
        conn.execute(
            "INSERT INTO app (id, team_id, slug, description, disabled, created_at, updated_at)"
            " VALUES (1, 1, 'bench', '', 0, ?, ?)",
            (stamp, stamp),
        )
        conn.execute(
            "INSERT INTO app_version (id, app_id, version_no, artifact_object_key,"
            " artifact_sha256, artifact_size, entrypoint, timeout_seconds, import_paths,"
            " created_at) VALUES (1, 1, 1, ?, ?, ?, 'main.py', 60, '[]', ?)",
            (key, "ab" * 32, len(artifact), stamp),
        )
        conn.execute(
            "INSERT INTO runner (id, name, environment, labels, token_hash, status, created_at)"
            " VALUES (1, 'r1', 'default', '{}', 'h', 'online', ?)",
            (stamp,),
        )
        conn.executemany(
            "INSERT INTO run (id, team_id, app_id, environment_id, environment, app_version_id,"
            " run_no, status, input, priority, max_retries, retry_count, cancel_requested,"
            " queued_at, started_at, finished_at, exit_code, updated_at) VALUES"
            " (?, 1, 1, 1, 'default', 1, ?, 'completed', '{}', 0, 0, 0, 0, ?, ?, ?, 0, ?)",
            ((n, n, stamp, stamp, stamp, stamp) for n in range(1, runs + 1)),
        )
        conn.executemany(
            "INSERT INTO run_attempt (id, run_id, runner_id, attempt_no, lease_token_hash,"
            " lease_expires_at, status, reported_status, exit_code, leased_at, started_at,"
            " finished_at) VALUES (?, ?, 1, 1, ?, ?, 'completed', 'completed', 0, ?, ?, ?)",
            ((n, n, f"t{n}", stamp, stamp, stamp, stamp) for n in range(1, runs + 1)),
        )
        conn.executemany(
            "INSERT INTO run_log (attempt_id, seq, stream, line, logged_at)"
            " VALUES (?, ?, 'stdout', ?, ?)",
            (
                (n, seq, LINE.format(n=n * lines + seq), stamp)
                for n in range(1, runs + 1)
                for seq in range(1, lines + 1)
            ),
        )
        # One live run whose attempt the writer thread appends to during the backups.
        live = runs + 1
        expires = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute(
            "INSERT INTO run (id, team_id, app_id, environment_id, environment, app_version_id,"
            " run_no, status, input, priority, max_retries, retry_count, cancel_requested,"
            " queued_at, started_at, updated_at) VALUES"
            " (?, 1, 1, 1, 'default', 1, ?, 'running', '{}', 0, 0, 0, 0, ?, ?, ?)",
            (live, live, stamp, stamp, stamp),
        )
        conn.execute(
            "INSERT INTO run_attempt (id, run_id, runner_id, attempt_no, lease_token_hash,"
            " lease_expires_at, status, leased_at, started_at)"
            " VALUES (?, ?, 1, 1, 'live', ?, 'running', ?, ?)",
            (live, live, expires, stamp, stamp),
        )
    return live


class Writer(threading.Thread):
    """Appends one log line per write transaction to a live attempt until stopped,
    recording how long each commit took (what an API request would wait)."""

    def __init__(self, db: Path, attempt_id: int, time_limit: float) -> None:
        super().__init__(daemon=True)
        self.engine = create_db_engine(db, pool_size=1)
        self.attempt_id = attempt_id
        self.time_limit = time_limit
        self.stop = threading.Event()
        self.waits: list[float] = []

    def run(self) -> None:
        seq = 0
        deadline = time.monotonic() + self.time_limit
        while not self.stop.is_set() and time.monotonic() < deadline:
            seq += 1
            started = time.perf_counter()
            with write_session(self.engine) as session:
                attempt = session.get(RunAttempt, self.attempt_id)
                assert attempt is not None
                key = lifecycle.LeaseKey(
                    attempt.run_id, attempt.runner_id, attempt.lease_token_hash
                )
                line = {
                    "seq": seq,
                    "stream": "stdout",
                    "line": f"live {seq}",
                    "logged_at": utcnow(),
                }
                lifecycle.append_logs(session, key, [line], now=utcnow(), max_bytes=1 << 30)
            self.waits.append(time.perf_counter() - started)
            time.sleep(0.002)
        self.engine.dispose()


def timed_with_writer(
    db: Path, attempt_id: int, action: object, limit: float
) -> tuple[float, int, float]:
    """Run ``action()`` while a Writer works; (seconds, writer commits, worst commit s)."""
    assert callable(action)
    writer = Writer(db, attempt_id, limit)
    writer.start()
    time.sleep(0.2)
    before = len(writer.waits)
    started = time.perf_counter()
    try:
        action()
    finally:
        elapsed = time.perf_counter() - started
        during = writer.waits[before:]
        writer.stop.set()
        writer.join(limit)
    return elapsed, len(during), max(during, default=0.0)


def copy_methods(db: Path, folder: Path) -> dict[str, object]:
    """The copy methods weighed for ``minitowerd backup`` (see bench/README.md)."""

    def backup_api(pages: int, sleep: float) -> object:
        def run() -> None:
            target = folder / f"api-{pages}-{time.monotonic_ns()}.db"
            with (
                closing(sqlite3.connect(db, timeout=30)) as src,
                closing(sqlite3.connect(target)) as dst,
            ):
                src.backup(dst, pages=pages, sleep=sleep)

        return run

    def vacuum_into() -> None:
        target = folder / f"vacuum-{time.monotonic_ns()}.db"
        with closing(sqlite3.connect(db, timeout=30, isolation_level=None)) as src:
            src.execute("VACUUM INTO ?", (str(target),))

    return {
        "backup API, one step (pages=-1)": backup_api(-1, 0),
        "backup API, 1000 pages a step, 5 ms sleep": backup_api(1000, 0.005),
        "VACUUM INTO": vacuum_into,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=10_000, help="finished runs")
    parser.add_argument("-l", "--lines", type=int, default=20, help="log lines per run")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="backups to time")
    parser.add_argument("--compare", action="store_true", help="also time the other methods")
    parser.add_argument("--time-limit", type=float, default=120, help="per phase, seconds")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="mt-bench-backup-") as tmp:
        folder = Path(tmp)
        db, objects = folder / "db" / "minitower.db", folder / "objects"
        db.parent.mkdir()
        started = time.perf_counter()
        live = seed(db, objects, args.runs, args.lines)
        print(
            f"seeded {args.runs} runs x {args.lines} lines "
            f"in {time.perf_counter() - started:.1f} s;"
            f" database {db.stat().st_size / 1e6:.1f} MB"
        )
        rows = []
        for n in range(args.repeat):
            dest = folder / "backups" / f"b{n}"
            elapsed, commits, worst = timed_with_writer(
                db,
                live,
                lambda dest=dest: take_backup(db, objects, dest),  # type: ignore[misc]
                args.time_limit,
            )
            size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
            rows.append((elapsed, size, commits, worst))
        median = statistics.median(r[0] for r in rows)
        print(
            f"minitowerd backup (median of {args.repeat}): {median:.2f} s; "
            f"backup {rows[0][1] / 1e6:.1f} MB; writer meanwhile: "
            + ", ".join(f"{c} commits, worst {w * 1000:.0f} ms" for _, _, c, w in rows)
        )
        if args.compare:
            (folder / "methods").mkdir()
            for name, action in copy_methods(db, folder / "methods").items():
                times = [timed_with_writer(db, live, action, args.time_limit) for _ in range(3)]
                med = statistics.median(t[0] for t in times)
                worst = max(t[2] for t in times)
                print(f"  {name}: median {med:.2f} s, writer worst commit {worst * 1000:.0f} ms")
            shutil.rmtree(folder / "methods")
        for dry_run in (True, False):
            started = time.perf_counter()
            report = prune(db, objects, older_than=timedelta(0), dry_run=dry_run)
            print(
                f"prune --older-than 0s{' --dry-run' if dry_run else ''}: "
                f"{time.perf_counter() - started:.2f} s; {report.log_lines} lines, "
                f"{report.log_bytes / 1e6:.1f} MB of {report.runs} runs"
            )
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
