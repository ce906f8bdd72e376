"""What secrets and webhooks cost a run, on a real ``minitowerd`` + ``minitower-reaper`` +
``minitower-runner`` stack on 127.0.0.1 (the same stack as ``run_latency.py``).

Phases (each bounded in count and in time):

1. plain: N warm runs of an app that declares no secrets;
2. secrets: N warm runs of an app that declares two (Towerfile ``[app] secrets``), both
   set: the runner fetches them on the lease and redacts them from the log lines;
3. webhooks: K runs that fail at once, with a webhook for ``run.failed`` pointing at a
   receiver this script starts on 127.0.0.1; each delivery is timed from the run's
   ``finished_at`` to its arrival, and its signature checked as the README says.

Run: ``cd /work/main && uv run python bench/notifications.py`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from run_latency import BIN, Stack, Team, parse_time, pct, start_stack

SECRETS_TOWERFILE = """\
[app]
name = "with-secrets"
script = "main.py"
secrets = ["DB_URL", "API_KEY"]
"""
WITH_SECRETS_MAIN = """\
import os
print("connecting to", os.environ["DB_URL"])
"""


class Receiver:
    """Records when each delivery arrived, its body and whether its signature verified."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[datetime, dict[str, Any], str]] = []
        self.lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = datetime.now(UTC)
                self.send_response(200)
                self.end_headers()
                with received.lock:
                    received.arrivals.append(
                        (
                            at,
                            json.loads(body),
                            self.headers["MiniTower-Signature"] + "|" + body.decode(),
                        )
                    )

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


def verified(secret: str, signed: str) -> bool:
    header, body = signed.split("|", 1)
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.{body}".encode(), hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields["v1"])


def warm_latencies(team: Team, slug: str, count: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(count + 2):  # two warm-ups: the venv, the code paths
        runs.extend(team.wait([team.submit(slug)], timeout=120))
    for run in runs:
        if run["status"] != "completed":
            raise SystemExit(f"run {run['run_id']} ended {run['status']}: {run['error_message']}")
    return runs[2:]


def summary(name: str, runs: list[dict[str, Any]], stack: Stack) -> float:
    values = [
        (parse_time(r["finished_at"]) - parse_time(r["queued_at"])).total_seconds() for r in runs
    ]
    phases = stack.phases()
    secrets_ms = [
        phases[r["run_id"]]["secrets"] * 1000 for r in runs if "secrets" in phases[r["run_id"]]
    ]
    extra = f", secrets phase p50 {statistics.median(secrets_ms):.1f} ms" if secrets_ms else ""
    print(
        f"{name:>8}: n={len(values):3d}  submit -> completed p50 "
        f"{statistics.median(values) * 1000:6.1f} ms  p95 {pct(values, 95) * 1000:6.1f} ms{extra}"
    )
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="runs per latency phase (30)")
    parser.add_argument("-k", type=int, default=50, help="failing runs for webhooks (50)")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="minitower-bench-"))
    key = subprocess.run(
        [str(BIN / "minitowerd"), "generate-secrets-key"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    os.environ["MINITOWER_SECRETS_KEY"] = key
    os.environ["MINITOWER_WEBHOOK_ALLOW_PRIVATE"] = "true"
    stack = start_stack(workdir)
    # The API alone holds the key: the runner started below does not inherit it.
    del os.environ["MINITOWER_SECRETS_KEY"]
    receiver = Receiver()
    try:
        stack.runner("bench-1")
        team = Team(stack.url)
        team.deploy("plain", {"main.py": "print('hello')\n"})
        team.deploy("with-secrets", {"Towerfile": SECRETS_TOWERFILE, "main.py": WITH_SECRETS_MAIN})
        for name, value in (("DB_URL", "postgres://bench:pw@db/bench"), ("API_KEY", "sk-bench")):
            team.http.put(f"/api/v1/secrets/{name}", json={"value": value}).raise_for_status()
        plain = summary("plain", warm_latencies(team, "plain", args.n), stack)
        secret = summary("secrets", warm_latencies(team, "with-secrets", args.n), stack)
        print(f"          secrets cost {(secret - plain) * 1000:+.1f} ms per run (p50 difference)")

        hook = team.http.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["run.failed"]}
        )
        hook.raise_for_status()
        signing_secret = hook.json()["secret"]
        team.deploy("failing", {"main.py": "raise SystemExit(3)\n"})
        ids = [team.submit("failing") for _ in range(args.k)]
        runs = {r["run_id"]: r for r in team.wait(ids, timeout=300)}
        deadline = time.monotonic() + 120
        while receiver.count() < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        with receiver.lock:
            arrivals = list(receiver.arrivals)
        delays = []
        bad = 0
        seen: set[int] = set()
        for at, body, signed in arrivals:
            run_id = body["data"]["run"]["id"]
            bad += not verified(signing_secret, signed)
            if run_id in runs and run_id not in seen:
                seen.add(run_id)
                delays.append((at - parse_time(runs[run_id]["finished_at"])).total_seconds())
        print(
            f"webhooks: {len(seen)}/{len(ids)} run.failed events delivered "
            f"({len(arrivals)} requests, {bad} bad signatures); run finished -> delivered "
            f"p50 {statistics.median(delays) * 1000:.0f} ms, p95 {pct(delays, 95) * 1000:.0f} ms, "
            f"max {max(delays) * 1000:.0f} ms (reaper polls every 1 s)"
        )
    finally:
        receiver.server.shutdown()
        stack.stop()
        print(f"load average after: {os.getloadavg()}")
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
