"""The SQL an API process sends PostgreSQL per lease → result cycle, counted by the server.

Starts a throwaway PostgreSQL 15 cluster with ``log_statement=all`` (as
``postgres_scaling.py`` does, otherwise), runs ``lease_throughput.py``'s HTTP phase once
(one API process; the lease starts the attempt), and prints each statement the API's
pooled connections sent during the phase, per cycle, most frequent first, then the
total: each is a round trip, the most likely reason PostgreSQL costs the API more CPU
per run than SQLite. The peer notifications (``peer_signals.py``'s own connections) are
counted apart.

Run: ``uv run python bench/postgres_statements.py`` (``-k``: runs to drain, default 300).
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

from tests.support import postgres

_LINE = re.compile(r"^\d+@(?P<app>[^@]*)@LOG:  (?:statement|execute [^:]*): (?P<sql>.*)$")


def _shape(sql: str) -> str:
    """The statement without its numbers, cut short: one key per kind."""
    return re.sub(r"\d+", "N", " ".join(sql.split()))[:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=300, help="queued runs to drain")
    args = parser.parse_args(argv)
    if not postgres.available():
        raise SystemExit("PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin)")
    settings = postgres._SERVER_SETTINGS
    saved = dict(settings)
    # No spaces: pg_ctl hands the options to a shell.
    settings.update(log_statement="all", log_line_prefix="%p@%a@")
    phase: dict[str, Any] = {}
    run_http_phase = lease_throughput.run_http_phase

    def measured(*call: Any, **options: Any) -> Any:
        phase["from"] = log.stat().st_size
        result = run_http_phase(*call, **options)
        phase["to"] = log.stat().st_size
        phase["cycles"] = result.cycles
        return result

    lease_throughput.run_http_phase = measured
    try:
        with postgres.running_cluster() as cluster:
            log = cluster.folder / "server.log"
            url = cluster.url(cluster.create_database())
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):
                status = lease_throughput.main(
                    [
                        *("--skip-inprocess", "--skip-handoff", "-k", str(args.runs)),
                        *("--client-impl", "stdlib", "--database-url", url),
                    ]
                )
            if status != 0:
                print(captured.getvalue())
                raise SystemExit(f"lease_throughput.py failed ({status})")
            with log.open("rb") as text:
                text.seek(phase["from"])
                written = text.read(phase["to"] - phase["from"]).decode(errors="replace")
    finally:
        settings.clear()
        settings.update(saved)
        lease_throughput.run_http_phase = run_http_phase
    pooled: Counter[str] = Counter()
    peers: Counter[str] = Counter()
    for line in written.splitlines():
        found = _LINE.match(line)
        if found:
            # The engine's connections name themselves (db.py); the peer-signal ones do not.
            kept = pooled if found["app"] == "minitower" else peers
            kept[_shape(found["sql"])] += 1
    cycles = max(phase["cycles"], 1)
    print(f"{phase['cycles']} lease → result cycles, one API process; statements per cycle:")
    for shape, count in pooled.most_common():
        print(f"  {count / cycles:6.2f}  {shape}")
    print(f"  {sum(pooled.values()) / cycles:6.2f}  in all (pooled connections)")
    print(f"  {sum(peers.values()) / cycles:6.2f}  peer notifications (peer_signals.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
