"""The runner hot path on PostgreSQL with 1, 2 and 3 API processes, next to SQLite with 1.

Starts a throwaway PostgreSQL 15 cluster (as the tests do: ``initdb`` into a temp dir,
fsync off, a free port of 127.0.0.1; ``tests/support/postgres.py``), then runs
``lease_throughput.py``'s HTTP and long-poll phases once per configuration, each on a
fresh database: K queued runs drained by M runner clients spread over the API processes
(lease that starts the attempt, then the result), and the long-poll hand-off with the run
created through the first API process and long-polled on the last. Prints each run's
figures, then a summary: cycles/s, the API processes' CPU per cycle (all of them, and
each), and the hand-off p50.

Run: ``uv run python bench/postgres_scaling.py`` (``-k``, ``-m``: as lease_throughput).
"""

import argparse
import contextlib
import io
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lease_throughput

from tests.support.postgres import available, running_cluster

_CYCLES = re.compile(r"HTTP, .*?(\d+)\s+(\d+)\s*$", re.MULTILINE)
_CPU = re.compile(r"HTTP CPU: server ([0-9.]+) ms/cycle")
_PER_PROCESS = re.compile(r"HTTP CPU per API process, ms/cycle: (.*)$", re.MULTILINE)
_HANDOFF = re.compile(r"handoff\s+p50\s+([0-9.]+) ms")


def run(label: str, argv: list[str]) -> dict[str, str]:
    print(f"\n=== {label}: lease_throughput.py {' '.join(argv)}", flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        status = lease_throughput.main(argv)
    text = captured.getvalue()
    print(text, end="")
    if status != 0:
        raise SystemExit(f"{label}: lease_throughput.py failed ({status})")
    cycles = _CYCLES.search(text)
    cpu = _CPU.search(text)
    per_process = _PER_PROCESS.search(text)
    handoff = _HANDOFF.search(text)
    return {
        "config": label,
        "cycles/s": cycles.group(2) if cycles else "?",
        "API CPU ms/cycle": cpu.group(1) if cpu else "?",
        "per API process": per_process.group(1) if per_process else (cpu.group(1) if cpu else "?"),
        "handoff p50 ms": handoff.group(1) if handoff else "?",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=2000, help="queued runs per config")
    parser.add_argument("-m", "--clients", type=int, default=8, help="runner clients")
    parser.add_argument("-n", "--handoff-repeats", type=int, default=20, help="handoffs to time")
    parser.add_argument("--max-api", type=int, default=3, help="API processes, up to (3)")
    args = parser.parse_args(argv)
    if not available():
        raise SystemExit("PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin)")
    common = [
        "--skip-inprocess",
        "-k",
        str(args.runs),
        "-m",
        str(args.clients),
        "-n",
        str(args.handoff_repeats),
        "--client-impl",
        "stdlib",
    ]
    rows = [run("SQLite, 1 API", common)]
    with running_cluster() as cluster:
        for processes in range(1, args.max_api + 1):
            url = cluster.url(cluster.create_database())
            rows.append(
                run(
                    f"PostgreSQL, {processes} API",
                    [*common, "--database-url", url, "--api-processes", str(processes)],
                )
            )
    print("\nSummary (one run of each; 2 cores shared by the clients, the API processes")
    print("and PostgreSQL)")
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(row[column] for column in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
