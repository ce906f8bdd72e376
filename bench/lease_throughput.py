"""Runner hot-path benchmark: lease -> start -> result over HTTP against a real minitowerd.

A cycle is two calls, as the runner makes them now: a lease that starts its attempt
(``start: true``), then the result; ``--three-calls`` times the older protocol, with its
own start call.

Phases (each bounded in count and in time):

1. HTTP throughput: K queued runs, M runner clients (each a registered runner with its
   own keep-alive ``httpx.Client``) loop lease -> (start ->) result until the queue is
   empty. Reports cycles/s and p50/p99 per call and per cycle, and CPU spent by the
   server and by the clients.
2. Long-poll handoff: one runner long-polls (``wait_seconds``); the script creates a run
   over HTTP and measures from the create request's send to the lease response's arrival.
3. In-process ceiling: the same cycle through the store functions alone, one thread, one
   ``write_session`` per call as the routes do (and once more with the routes' per-request
   runner-token lookup inside each call's transaction), on a fresh SQLite file with no server.

Seeding: the team, a team token, the app, one version (a placeholder artifact key: no
phase downloads the artifact) and the K runs are written through the store functions
(``create_run``) in one transaction into the server's SQLite file *before* the server
starts. Runners register over HTTP. The handoff runs are created over HTTP in a separate
environment (``handoff``) so that leftovers of phase 1 can never be handed out.

Run: ``cd /work/main && uv run python bench/lease_throughput.py`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session

from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.migrate import upgrade_to_head
from minitower_shared.retry import RetryPolicy
from minitower_shared.states import AttemptStatus, TokenRole
from minitower_shared.store import apps as app_store
from minitower_shared.store import lifecycle
from minitower_shared.store import runners as runner_store
from minitower_shared.store import runs as run_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.lifecycle import Finished, Granted, LeaseKey, LiveAttempt
from minitower_shared.store.runners import RunnerIdentity
from minitower_shared.tokens import (
    LEASE_TOKEN_PREFIX,
    RUNNER_TOKEN_PREFIX,
    TEAM_TOKEN_PREFIX,
    hash_token,
    new_token,
)

REGISTRATION_TOKEN = "bench-registration-token-0123456789"
BOOTSTRAP_TOKEN = "bench-bootstrap-token-0123456789"
APP_SLUG = "bench"
LEASE_TTL_SECONDS = 600  # no lease may expire during a bench
AIM_HTTP = 500.0
AIM_INPROC = 5000.0
AIM_HANDOFF_P50_MS = 50.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- helpers


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for an empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Seeded:
    team_token: str
    run_ids: list[int]


def seed(database: Path | str, runs: int, environment: str = "default") -> Seeded:
    """Team, token, app, version and ``runs`` queued runs, via the store, one transaction."""
    engine = create_db_engine(database, pool_size=1)
    try:
        token = new_token(TEAM_TOKEN_PREFIX)
        now = utcnow()
        with write_session(engine) as session:
            team = team_store.create_team(session, slug="bench", name="Bench")
            assert team.id is not None
            team_store.create_token(
                session,
                team_id=team.id,
                token_hash=hash_token(token),
                role=TokenRole.ADMIN,
                name="bench",
            )
            app = app_store.create_app(session, team_id=team.id, slug=APP_SLUG, description="")
            assert app is not None
            version = app_store.create_version(
                session,
                app=app,
                artifact_object_key="bench/placeholder.tar.gz",
                artifact_sha256="0" * 64,
                artifact_size=0,
                entrypoint="main.py",
                timeout_seconds=3600,
                params_schema=None,
                import_paths=[],
            )
            env = team_store.get_or_create_environment(session, team.id, environment)
            ids = []
            for _ in range(runs):
                run = run_store.create_run(
                    session,
                    app=app,
                    version=version,
                    environment=env,
                    input={},
                    priority=0,
                    retry=RetryPolicy(),
                    now=now,
                )
                assert run.id is not None
                ids.append(run.id)
        return Seeded(team_token=token, run_ids=ids)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(workdir: Path, database: Path | str, index: int = 0) -> Server:
    """``minitowerd`` over ``database``: a SQLite file, or a PostgreSQL URL."""
    port = free_port()
    binary = Path(sys.executable).parent / "minitowerd"
    found = str(binary) if binary.exists() else shutil.which("minitowerd")
    if not found:
        raise SystemExit("minitowerd is not installed: run `uv sync` in /work/main")
    env = {
        **os.environ,
        **(
            {"MINITOWER_DATABASE_URL": database}
            if isinstance(database, str)
            else {"MINITOWER_DB_PATH": str(database)}
        ),
        "MINITOWER_OBJECTS_DIR": str(workdir / "objects"),
        "MINITOWER_LISTEN_ADDR": f"127.0.0.1:{port}",
        "MINITOWER_LOG_LEVEL": "warning",
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "MINITOWER_LEASE_TTL": str(LEASE_TTL_SECONDS),
    }
    log_path = workdir / f"minitowerd-{index}.log"
    with log_path.open("wb") as log:
        # cwd = workdir, so that no stray .env file is picked up.
        proc = subprocess.Popen([found], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"minitowerd exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise SystemExit(f"minitowerd not ready after 30 s:\n{log_path.read_text()}")


def register_runner(url: str, name: str, environment: str = "default") -> str:
    response = httpx.post(
        f"{url}/api/v1/runners/register",
        json={"name": name, "environment": environment},
        headers={"Authorization": f"Bearer {REGISTRATION_TOKEN}"},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


# --------------------------------------------------------------------------- phase 1


@dataclass
class WorkerResult:
    lease: list[float] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    result: list[float] = field(default_factory=list)
    cycle: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ended_at: float = 0.0
    cpu_seconds: float = 0.0  # only filled in by client processes


class HttpxRunner:
    """A runner's connection: one ``httpx.Client`` with keep-alive (the default)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        r = self.http.post(path, json=body, headers=headers)
        return r.status_code, (r.json() if r.status_code == 200 else None)

    def warm_up(self) -> None:
        self.http.get("/health")

    def close(self) -> None:
        self.http.close()


class StdlibRunner:
    """The same calls through ``http.client`` (about 3-4x less client CPU per request than
    httpx), to show how much of the HTTP figure is the benchmark's own client."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=30
        )
        self.auth = f"Bearer {token}"

    def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        all_headers = {"Authorization": self.auth, **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        self.conn.request("POST", path, body=payload, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if response.status == 200 else None)

    def warm_up(self) -> None:
        self.conn.request("GET", "/health")
        self.conn.getresponse().read()

    def close(self) -> None:
        self.conn.close()


CLIENTS = {"httpx": HttpxRunner, "stdlib": StdlibRunner}


def http_worker(
    url: str,
    token: str,
    max_cycles: int,
    time_limit: float,
    barrier: Any,
    impl: str = "httpx",
    fold: bool = True,
) -> WorkerResult:
    out = WorkerResult()
    client = CLIENTS[impl](url, token)
    try:
        client.warm_up()  # open the keep-alive connection before the clock starts
        barrier.wait(60)
        cpu0 = time.process_time()
        deadline = time.perf_counter() + time_limit
        clock = time.perf_counter
        while len(out.cycle) < max_cycles and clock() < deadline:
            t0 = clock()
            # fold: the lease starts the attempt (start: true), as the runner asks now.
            status, body = client.post("/api/v1/runs/lease", {"wait_seconds": 0, "start": fold})
            t1 = clock()
            if status == 204:
                break
            if status != 200:
                out.errors[f"lease {status}"] += 1
                break
            path = f"/api/v1/runs/{body['run_id']}"
            lease_header = {"X-Lease-Token": body["lease_token"]}
            if not fold:
                status, _ = client.post(f"{path}/start", headers=lease_header)
            t2 = clock()
            if status != 200:
                out.errors[f"start {status}"] += 1
                break
            status, _ = client.post(
                f"{path}/result", {"status": "completed", "exit_code": 0}, headers=lease_header
            )
            t3 = clock()
            if status != 200:
                out.errors[f"result {status}"] += 1
                break
            out.lease.append(t1 - t0)
            out.start.append(t2 - t1)
            out.result.append(t3 - t2)
            out.cycle.append(t3 - t0)
        out.ended_at = clock()
        out.cpu_seconds = time.process_time() - cpu0
    finally:
        client.close()
    return out


def _process_worker(
    url: str,
    token: str,
    max_cycles: int,
    time_limit: float,
    barrier: Any,
    queue: Any,
    impl: str,
    fold: bool,
) -> None:
    try:
        queue.put(http_worker(url, token, max_cycles, time_limit, barrier, impl, fold))
    except BaseException as exc:
        failed = WorkerResult(ended_at=time.perf_counter())
        failed.errors[f"worker crashed: {exc!r}"] += 1
        queue.put(failed)


@dataclass
class Throughput:
    cycles: int
    wall: float
    lease: list[float]
    start: list[float]
    result: list[float]
    cycle: list[float]
    errors: Counter[str]
    server_cpu: float
    client_cpu: float
    # Each API process's share of server_cpu (HTTP phase).
    per_server_cpu: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.cycles / self.wall if self.wall > 0 else 0.0


def run_http_phase(
    servers: list[Server],
    tokens: list[str],
    max_cycles: int,
    time_limit: float,
    mode: str,
    impl: str = "httpx",
    fold: bool = True,
) -> Throughput:
    parties = len(tokens) + 1
    results: list[WorkerResult] = []
    per_client = max_cycles  # a client stops on 204 (queue empty) long before this
    if mode == "thread":
        barrier: Any = threading.Barrier(parties)
        lock = threading.Lock()

        def target(url: str, token: str) -> None:
            try:
                res = http_worker(url, token, per_client, time_limit, barrier, impl, fold)
            except BaseException as exc:
                res = WorkerResult(ended_at=time.perf_counter())
                res.errors[f"worker crashed: {exc!r}"] += 1
            with lock:
                results.append(res)

        workers: list[Any] = [
            threading.Thread(target=target, args=(servers[i % len(servers)].url, t), daemon=True)
            for i, t in enumerate(tokens)
        ]
    else:
        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(parties)
        queue = ctx.Queue()
        workers = [
            ctx.Process(
                target=_process_worker,
                args=(
                    servers[i % len(servers)].url,
                    t,
                    per_client,
                    time_limit,
                    barrier,
                    queue,
                    impl,
                    fold,
                ),
                daemon=True,
            )
            for i, t in enumerate(tokens)
        ]
    for w in workers:
        w.start()
    barrier.wait(60)
    started = time.perf_counter()
    server_cpu0 = [proc_cpu_seconds(server.proc.pid) for server in servers]
    client_cpu0 = time.process_time()
    if mode == "thread":
        for w in workers:
            w.join(time_limit + 60)
        client_cpu = time.process_time() - client_cpu0
    else:
        for _ in workers:
            results.append(queue.get(timeout=time_limit + 60))
        for w in workers:
            w.join(30)
        client_cpu = sum(r.cpu_seconds for r in results)
    per_server = [
        proc_cpu_seconds(server.proc.pid) - before
        for server, before in zip(servers, server_cpu0, strict=True)
    ]
    ended = max((r.ended_at for r in results), default=started)
    merged = WorkerResult()
    for r in results:
        merged.lease += r.lease
        merged.start += r.start
        merged.result += r.result
        merged.cycle += r.cycle
        merged.errors.update(r.errors)
    return Throughput(
        cycles=len(merged.cycle),
        wall=ended - started,
        lease=merged.lease,
        start=merged.start,
        result=merged.result,
        cycle=merged.cycle,
        errors=merged.errors,
        server_cpu=sum(per_server),
        client_cpu=client_cpu,
        per_server_cpu=per_server,
    )


# --------------------------------------------------------------------------- phase 2


@dataclass
class Handoff:
    handoff: list[float]
    create: list[float]
    errors: Counter[str]


def run_handoff_phase(
    servers: list[Server], team_token: str, repeats: int, wait_seconds: float, delay: float
) -> Handoff:
    """The run is created through the first API process; the runner long-polls the last
    (the same one when there is one)."""
    creating, polled = servers[0], servers[-1]
    runner_token = register_runner(polled.url, "bench-handoff", environment="handoff")
    out = Handoff(handoff=[], create=[], errors=Counter())
    with (
        httpx.Client(
            base_url=creating.url, timeout=30, headers={"Authorization": f"Bearer {team_token}"}
        ) as team,
        httpx.Client(
            base_url=polled.url,
            timeout=wait_seconds + 10,
            headers={"Authorization": f"Bearer {runner_token}"},
        ) as runner,
    ):
        team.get("/health")
        runner.get("/health")
        for _ in range(repeats):
            got: dict[str, Any] = {}

            def long_poll(box: dict[str, Any] = got) -> None:
                try:
                    box["response"] = runner.post(
                        "/api/v1/runs/lease", json={"wait_seconds": wait_seconds}
                    )
                except httpx.HTTPError as exc:
                    box["error"] = repr(exc)
                box["arrived"] = time.perf_counter()

            poller = threading.Thread(target=long_poll, daemon=True)
            poller.start()
            time.sleep(delay)  # let the lease call reach the server and park
            sent = time.perf_counter()
            created = team.post(f"/api/v1/apps/{APP_SLUG}/runs", json={"environment": "handoff"})
            create_done = time.perf_counter()
            poller.join(wait_seconds + 15)
            if created.status_code != 201:
                out.errors[f"create {created.status_code}"] += 1
                break
            response = got.get("response")
            if response is None or response.status_code != 200:
                status = response.status_code if response is not None else got.get("error")
                out.errors[f"lease {status}"] += 1
                break
            body = response.json()
            if body["run_id"] != created.json()["run_id"]:
                out.errors["leased another run"] += 1
            out.handoff.append(got["arrived"] - sent)
            out.create.append(create_done - sent)
            lease_header = {"X-Lease-Token": body["lease_token"]}
            path = f"/api/v1/runs/{body['run_id']}"
            ok = runner.post(f"{path}/start", headers=lease_header).status_code == 200
            ok = ok and (
                runner.post(
                    f"{path}/result", headers=lease_header, json={"status": "completed"}
                ).status_code
                == 200
            )
            if not ok:
                out.errors["could not finish handoff run"] += 1
                break
    return out


# --------------------------------------------------------------------------- phase 3


def run_inprocess_phase(
    workdir: Path, max_cycles: int, time_limit: float, with_auth: bool, fold: bool = True
) -> Throughput:
    """The routes' database work for lease, start and result, minus HTTP and FastAPI.

    Mirrors ``services/api/.../routers/leases.py`` (``_try_lease``, ``start_run``,
    ``report_result``): one ``write_session`` per call. With ``with_auth`` each call also
    looks the runner up by its token inside that transaction, as the routes do."""
    name = "inproc-auth" if with_auth else "inproc"
    db_path = workdir / f"{name}.db"
    upgrade_to_head(db_path)
    seed(db_path, max_cycles)
    engine = create_db_engine(db_path)
    ttl = timedelta(seconds=LEASE_TTL_SECONDS)
    runner_token = new_token(RUNNER_TOKEN_PREFIX)
    with write_session(engine) as session:
        runner_store.register_runner(
            session,
            name="bench-inproc",
            environment="default",
            labels={},
            token_hash=hash_token(runner_token),
            now=utcnow(),
        )
        registered = runner_store.find_runner_by_token(session, hash_token(runner_token))
    assert registered is not None
    runner_id = registered.id
    cached = registered

    def authenticate(session: Session) -> RunnerIdentity:
        """The runner as the route sees it: read per call, or (without auth) a cached
        copy whose ``last_seen_at`` follows what ``mark_seen`` writes."""
        if not with_auth:
            return cached
        found = runner_store.find_runner_by_token(session, hash_token(runner_token))
        assert found is not None
        return found

    out = WorkerResult()
    clock = time.perf_counter
    cpu0 = time.process_time()
    started = clock()
    deadline = started + time_limit
    try:
        while len(out.cycle) < max_cycles and clock() < deadline:
            t0 = clock()
            lease_token = new_token(LEASE_TOKEN_PREFIX)
            with write_session(engine) as session:
                now = utcnow()
                runner = authenticate(session)
                runner_store.mark_seen(session, runner, now)
                grant = lifecycle.lease(
                    session,
                    runner_id=runner_id,
                    environment=runner.environment,
                    lease_token_hash=hash_token(lease_token),
                    now=now,
                    ttl=ttl,
                    start_it=fold,
                )
            if not with_auth and (
                cached.last_seen_at is None
                or now - cached.last_seen_at >= runner_store.SEEN_RESOLUTION
            ):
                cached = replace(cached, last_seen_at=now)
            t1 = clock()
            if not isinstance(grant, Granted):
                break
            # What the start and result routes do: authenticate, then one lifecycle call.
            key = LeaseKey(grant.run.id, runner_id, hash_token(lease_token))
            if not fold:
                with write_session(engine) as session:
                    authenticate(session)
                    live = lifecycle.start(session, key, now=utcnow(), ttl=ttl)
                    assert isinstance(live, LiveAttempt), live
            t2 = clock()
            with write_session(engine) as session:
                authenticate(session)
                finished = lifecycle.report_result(
                    session,
                    key,
                    reported=AttemptStatus.COMPLETED,
                    exit_code=0,
                    error_message=None,
                    now=utcnow(),
                )
                assert isinstance(finished, Finished), finished
            t3 = clock()
            out.lease.append(t1 - t0)
            out.start.append(t2 - t1)
            out.result.append(t3 - t2)
            out.cycle.append(t3 - t0)
    finally:
        ended = clock()
        engine.dispose()
    return Throughput(
        cycles=len(out.cycle),
        wall=ended - started,
        lease=out.lease,
        start=out.start,
        result=out.result,
        cycle=out.cycle,
        errors=out.errors,
        server_cpu=0.0,
        client_cpu=time.process_time() - cpu0,
    )


# --------------------------------------------------------------------------- report


def throughput_table(rows: list[tuple[str, Throughput]]) -> None:
    """One line per phase: p50/p99 (ms) of each call and of the cycle, then cycles/s."""
    head = f"  {'':<34}" + "".join(
        f"{name + ' p50/p99':>17}" for name in ("lease", "start", "result", "cycle")
    )
    print(head + f"{'cycles':>8}{'cycles/s':>10}")
    for label, t in rows:
        cells = "".join(
            f"{ms(pct(v, 50)):>9}/{ms(pct(v, 99)):<7}"
            for v in (t.lease, t.start, t.result, t.cycle)
        )
        print(f"  {label:<34}{cells}{t.cycles:>8}{t.rate:>10,.0f}")
    for label, t in rows:
        if t.errors:
            print(f"  errors in {label.strip()}: {dict(t.errors)}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the runner hot path (lease -> start -> result) of minitowerd "
        "over HTTP, its long-poll handoff, and the same cycle in-process through the store. "
        "Every phase is bounded by a count and by --time-limit; the server is always killed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-k", "--runs", type=int, default=2000, help="queued runs to drain")
    parser.add_argument("-m", "--clients", type=int, default=8, help="concurrent runners")
    parser.add_argument(
        "--client-mode",
        choices=("thread", "process"),
        default="thread",
        help="runner clients as threads of this process (they share one GIL) or as "
        "separate processes",
    )
    parser.add_argument(
        "--client-impl",
        choices=tuple(CLIENTS),
        default="httpx",
        help="HTTP client of each runner: httpx.Client, or the lighter stdlib http.client",
    )
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds allowed per throughput phase"
    )
    parser.add_argument(
        "-n", "--handoff-repeats", type=int, default=30, help="long-poll handoffs to time"
    )
    parser.add_argument("--wait-seconds", type=float, default=10.0, help="long-poll wait")
    parser.add_argument(
        "--handoff-delay",
        type=float,
        default=0.2,
        help="seconds between sending the long poll and creating the run",
    )
    parser.add_argument(
        "--three-calls",
        action="store_true",
        help="lease, then start, then result (the protocol before a lease could start its "
        "attempt); by default the lease starts it (start: true) and the cycle is two calls",
    )
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database (postgresql+psycopg://…) for phases 1 and 2 instead "
        "of a SQLite file; bench/postgres_scaling.py runs the comparison",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="minitowerd processes over the one database (PostgreSQL; runners are spread "
        "over them, the handoff is created on the first and long-polled on the last)",
    )
    parser.add_argument("--skip-http", action="store_true", help="skip phase 1")
    parser.add_argument("--skip-handoff", action="store_true", help="skip phase 2")
    parser.add_argument("--skip-inprocess", action="store_true", help="skip phase 3")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (db, server log)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.clients < 1 or args.handoff_repeats < 1:
        parser.error("--runs, --clients and --handoff-repeats must be at least 1")
    if not 0 < args.wait_seconds <= 30:
        parser.error("--wait-seconds must be in (0, 30]")

    cores = os.cpu_count() or 1
    print(
        f"lease_throughput: K={args.runs} runs, M={args.clients} runners "
        f"({args.client_impl} clients as {args.client_mode}s), N={args.handoff_repeats} handoffs "
        f"(wait_seconds={args.wait_seconds:g})"
    )
    print(
        f"machine: {cores} CPU core(s), shared by the benchmark's clients and the single "
        "minitowerd process: HTTP figures include client-side CPU contention"
    )
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work skews figures)"
    )
    workdir = Path(tempfile.mkdtemp(prefix="minitower-bench-"))
    servers: list[Server] = []
    rows: list[tuple[str, Throughput]] = []
    over_http: Throughput | None = None
    handoff: Handoff | None = None
    inproc: Throughput | None = None
    try:
        if not (args.skip_http and args.skip_handoff):
            database: Path | str = args.database_url or workdir / "server.db"
            t0 = time.perf_counter()
            upgrade_to_head(database)
            seeded = seed(database, 0 if args.skip_http else args.runs)
            print(
                f"seed: {len(seeded.run_ids)} queued runs written with store.create_run in one "
                f"transaction before the server started ({time.perf_counter() - t0:.2f} s)"
            )
            for index in range(args.api_processes):
                servers.append(start_server(workdir, database, index))
                print(
                    f"minitowerd pid {servers[-1].proc.pid} on {servers[-1].url} "
                    "(log level warning)"
                )
            if not args.skip_http:
                tokens = [
                    register_runner(servers[i % len(servers)].url, f"bench-runner-{i}")
                    for i in range(args.clients)
                ]
                cycle = "lease -> start -> result" if args.three_calls else "lease+start -> result"
                print(f"phase 1: HTTP {cycle} ...", flush=True)
                over_http = run_http_phase(
                    servers,
                    tokens,
                    args.runs,
                    args.time_limit,
                    args.client_mode,
                    args.client_impl,
                    fold=not args.three_calls,
                )
                engine = "PostgreSQL" if args.database_url else "SQLite"
                rows.append(
                    (
                        f"HTTP, {args.clients} runners, {args.client_impl}/{args.client_mode}, "
                        f"{engine}, {len(servers)} API",
                        over_http,
                    )
                )
            if not args.skip_handoff:
                print("phase 2: long-poll handoff ...", flush=True)
                handoff = run_handoff_phase(
                    servers,
                    seeded.team_token,
                    args.handoff_repeats,
                    args.wait_seconds,
                    args.handoff_delay,
                )
            for server in servers:
                server.stop()
            servers = []
        if not args.skip_inprocess:
            print("phase 3: in-process store cycle (server stopped) ...", flush=True)
            fold = not args.three_calls
            inproc = run_inprocess_phase(
                workdir, args.runs, args.time_limit, with_auth=False, fold=fold
            )
            rows.append(("in-process store, 1 thread", inproc))
            with_auth = run_inprocess_phase(
                workdir, args.runs, args.time_limit, with_auth=True, fold=fold
            )
            rows.append(("  + runner-token lookup per call", with_auth))

        print("\nThroughput (latencies in ms, measured at the caller)")
        throughput_table(rows)
        if over_http is not None:
            n = max(over_http.cycles, 1)
            print(
                f"  HTTP CPU: server {over_http.server_cpu / n * 1000:.2f} ms/cycle, clients "
                f"{over_http.client_cpu / n * 1000:.2f} ms/cycle; "
                f"{(over_http.server_cpu + over_http.client_cpu) / max(over_http.wall, 1e-9):.2f}"
                f" of {cores} "
                f"cores busy over {over_http.wall:.1f} s"
            )
            if len(over_http.per_server_cpu) > 1:
                shares = ", ".join(f"{cpu / n * 1000:.2f}" for cpu in over_http.per_server_cpu)
                print(f"  HTTP CPU per API process, ms/cycle: {shares}")
        if handoff is not None:
            print(
                f"\nLong-poll handoff, {len(handoff.handoff)} samples "
                "(create request sent -> lease response arrived)"
            )
            for name, values in (("handoff", handoff.handoff), ("create call", handoff.create)):
                print(
                    f"  {name:<12} p50 {ms(pct(values, 50)):>7} ms   p95 "
                    f"{ms(pct(values, 95)):>7} ms   max {ms(max(values, default=math.nan)):>7} ms"
                )
            if handoff.errors:
                print(f"  errors: {dict(handoff.errors)}")

        load = os.getloadavg()
        print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print("\nAims")
        if over_http is not None:
            print(
                f"  HTTP full cycles/s     {over_http.rate:>8,.0f}  (aim >= {AIM_HTTP:,.0f})    "
                f"{verdict(over_http.rate >= AIM_HTTP)}"
            )
        if inproc is not None:
            print(
                f"  in-process cycles/s    {inproc.rate:>8,.0f}  (aim >= {AIM_INPROC:,.0f})  "
                f"{verdict(inproc.rate >= AIM_INPROC)}"
            )
        if over_http is not None and inproc is not None and inproc.rate > 0:
            print(f"  HTTP / in-process      {over_http.rate / inproc.rate:>8.1%}")
        if handoff is not None and handoff.handoff:
            p50 = pct(handoff.handoff, 50) * 1000
            print(
                f"  handoff p50 ms         {p50:>8.1f}  (aim <= {AIM_HANDOFF_P50_MS:.0f})      "
                f"{verdict(p50 <= AIM_HANDOFF_P50_MS)}"
            )
        failed = any(t.errors for _, t in rows) or (handoff is not None and handoff.errors)
        return 1 if failed else 0
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
