"""The runner hot path on PostgreSQL with 1, 2 and 3 API processes, next to SQLite with 1.

Starts a throwaway PostgreSQL 15 cluster (as the tests do: ``initdb`` into a temp dir,
fsync off, a free port of 127.0.0.1; ``tests/support/postgres.py``), then runs
``lease_throughput.py``'s HTTP and long-poll phases once per configuration, each on a
fresh database: K queued runs drained by M runner clients spread over the API processes
(lease that starts the attempt, then the result), and the long-poll hand-off with the run
created through the first API process and long-polled on the last. Prints each run's
figures, then a summary: cycles/s, the API processes' CPU per cycle (all of them, and
each), and the hand-off p50. With ``--trivial-runs K`` it also runs
``run_latency.py``'s throughput phase per configuration: K trivial runs on real runners
(``--runners``, spread over the API processes; artifacts from the database on
PostgreSQL), for trivial runs/s and the API's CPU per run.

Run: ``uv run python bench/postgres_scaling.py`` (``-k``, ``-m``: as lease_throughput;
``--trivial-runs 200`` for the real runners' figures too).
"""

import argparse
import contextlib
import io
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lease_throughput
import run_latency

from tests.support.postgres import available, running_cluster

_CYCLES = re.compile(r"HTTP, .*?(\d+)\s+(\d+)\s*$", re.MULTILINE)
_CPU = re.compile(r"HTTP CPU: server ([0-9.]+) ms/cycle")
_PER_PROCESS = re.compile(r"HTTP CPU per API process, ms/cycle: (.*)$", re.MULTILINE)
_HANDOFF = re.compile(r"handoff\s+p50\s+([0-9.]+) ms")
_RUNS = re.compile(r"throughput: .*= ([0-9.]+) runs/s.*\n\s+CPU per run, ms: api ([0-9.]+)")


def _output(label: str, script: Any, argv: list[str]) -> str:
    """What ``script.main(argv)`` printed (echoed as it is); exits on its failure."""
    name = f"{script.__name__}.py"
    print(f"\n=== {label}: {name} {' '.join(argv)}", flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        status = script.main(argv)
    text = captured.getvalue()
    print(text, end="")
    if status != 0:
        raise SystemExit(f"{label}: {name} failed ({status})")
    return text


def run(label: str, argv: list[str]) -> dict[str, str]:
    text = _output(label, lease_throughput, argv)
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


def trivial_runs(label: str, argv: list[str]) -> dict[str, str]:
    text = _output(label, run_latency, argv)
    found = _RUNS.search(text)
    return {
        "config": label,
        "trivial runs/s": found.group(1) if found else "?",
        "API CPU ms/run": found.group(2) if found else "?",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=2000, help="queued runs per config")
    parser.add_argument("-m", "--clients", type=int, default=8, help="runner clients")
    parser.add_argument("-n", "--handoff-repeats", type=int, default=20, help="handoffs to time")
    parser.add_argument("--max-api", type=int, default=3, help="API processes, up to (3)")
    parser.add_argument(
        "--trivial-runs", type=int, default=0, help="trivial runs on real runners per config (0)"
    )
    parser.add_argument("--runners", type=int, default=4, help="real runners (4)")
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
    latency = ["-n", "3", "-k", str(args.trivial_runs), "-r", str(args.runners), "--skip-docker"]
    rows = [run("SQLite, 1 API", common)]
    run_rows = [trivial_runs("SQLite, 1 API", latency)] if args.trivial_runs else []
    with running_cluster() as cluster:
        for processes in range(1, args.max_api + 1):
            label = f"PostgreSQL, {processes} API"
            on_postgres = ["--api-processes", str(processes), "--database-url"]
            url = cluster.url(cluster.create_database())
            rows.append(run(label, [*common, *on_postgres, url]))
            if args.trivial_runs:
                url = cluster.url(cluster.create_database())
                run_rows.append(trivial_runs(label, [*latency, *on_postgres, url]))
    print("\nSummary (one run of each; 2 cores shared by the clients, the API processes")
    print("and PostgreSQL)")
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(row[column] for column in columns))
    if run_rows:
        print(f"\nTrivial runs on {args.runners} real runners ({args.trivial_runs} per config)")
        columns = list(run_rows[0])
        print(" | ".join(columns))
        for row in run_rows:
            print(" | ".join(row[column] for column in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
