"""The SQL an API process sends PostgreSQL per lease → result cycle, counted by the server.

Starts a throwaway PostgreSQL 15 cluster with ``log_statement=all`` (as
``postgres_scaling.py`` does, otherwise), runs ``lease_throughput.py``'s HTTP phase once
(one API process; the lease starts the attempt), and prints each statement the API's
pooled connections sent during the phase, per cycle, most frequent first, then the
total: each is a round trip, the most likely reason PostgreSQL costs the API more CPU
per run than SQLite. The peer notifications (``peer_signals.py``'s own connections) are
counted apart.

With ``--trivial-runs N`` it counts a whole run instead: ``run_latency.py``'s
throughput phase (N trivial runs submitted by 4 clients, executed by one process
runner, awaited as that script awaits them), statements per run: the create, the lease,
the log lines, the result, the runner's other calls and the script's few reads.

Run: ``uv run python bench/postgres_statements.py`` (``-k``: runs to drain, default 300;
``--trivial-runs 200``: per trivial run).
"""

import argparse
import contextlib
import io
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lease_throughput
import run_latency

from tests.support import postgres

_LINE = re.compile(r"^\d+@(?P<app>[^@]*)@LOG:  (?:statement|execute [^:]*): (?P<sql>.*)$")


def _shape(sql: str) -> str:
    """The statement without its numbers, cut short: one key per kind."""
    return re.sub(r"\d+", "N", " ".join(sql.split()))[:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=300, help="queued runs to drain")
    parser.add_argument(
        "--trivial-runs",
        type=int,
        metavar="N",
        help="count per trivial run on a real runner (run_latency.py's throughput phase)",
    )
    args = parser.parse_args(argv)
    if not postgres.available():
        raise SystemExit("PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin)")
    settings = postgres._SERVER_SETTINGS
    saved = dict(settings)
    # No spaces: pg_ctl hands the options to a shell.
    settings.update(log_statement="all", log_line_prefix="%p@%a@")
    phase: dict[str, Any] = {}
    module: Any = run_latency if args.trivial_runs else lease_throughput
    name = "run_batch" if args.trivial_runs else "run_http_phase"
    original = getattr(module, name)

    def measured(*call: Any, **options: Any) -> Any:
        phase["from"] = log.stat().st_size
        result = original(*call, **options)
        phase["to"] = log.stat().st_size
        phase["count"] = len(result[0]) if args.trivial_runs else result.cycles
        return result

    setattr(module, name, measured)
    try:
        with postgres.running_cluster() as cluster:
            log = cluster.folder / "server.log"
            url = cluster.url(cluster.create_database())
            if args.trivial_runs:
                command = [
                    *("-n", "2", "-k", str(args.trivial_runs), "-r", "1", "--skip-docker"),
                    *("--database-url", url),
                ]
            else:
                command = [
                    *("--skip-inprocess", "--skip-handoff", "-k", str(args.runs)),
                    *("--client-impl", "stdlib", "--database-url", url),
                ]
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):
                status = module.main(command)
            if status != 0:
                print(captured.getvalue())
                raise SystemExit(f"{module.__name__}.py failed ({status})")
            with log.open("rb") as text:
                text.seek(phase["from"])
                written = text.read(phase["to"] - phase["from"]).decode(errors="replace")
    finally:
        settings.clear()
        settings.update(saved)
        setattr(module, name, original)
    pooled: Counter[str] = Counter()
    peers: Counter[str] = Counter()
    for line in written.splitlines():
        found = _LINE.match(line)
        if found:
            # The engine's connections name themselves (db.py); the peer-signal ones do not.
            kept = pooled if found["app"] == "minitower" else peers
            kept[_shape(found["sql"])] += 1
    count = max(phase["count"], 1)
    what = "trivial runs" if args.trivial_runs else "lease → result cycles"
    print(f"{phase['count']} {what}, one API process; statements per {what.split()[-1][:-1]}:")
    for shape, seen in pooled.most_common():
        print(f"  {seen / count:6.2f}  {shape}")
    print(f"  {sum(pooled.values()) / count:6.2f}  in all (pooled connections)")
    print(f"  {sum(peers.values()) / count:6.2f}  peer notifications (peer_signals.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
