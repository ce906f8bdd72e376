"""End-to-end run latency and throughput: a trivial app submitted over HTTP to a real
``minitowerd`` + ``minitower-reaper`` + ``minitower-runner`` stack on 127.0.0.1.

Phases (each bounded in count and in time):

1. warm: N runs one after another with the venv cache already built;
2. cold: N runs, the venv cache emptied before each (a trivial app has no
   requirements, so "cold" is creating the bare venv);
3. docker: N runs on a runner with ``MINITOWER_RUNNER_ISOLATION=docker`` (skipped when no
   engine answers or the image is missing; ``--image`` names it);
4. throughput: K runs submitted at once, executed by R process runners.

On PostgreSQL (``--database-url``, or ``--postgres`` for a throwaway cluster) it may
start several API processes (``--api-processes``) on the one database: runners are
spread over them, and artifacts come from the database's object store.

After the warm and throughput phases it prints the CPU time (from ``/proc/<pid>/stat``) the
API, the reaper and the runners used per run; a runner's includes its workloads.

Latency is the server's own ``finished_at - queued_at`` of each run (millisecond
timestamps), so client polling adds nothing to it. Where the time goes comes from the
runner's ``phases`` log line (start, download, extract, prepare, execute, report) and
from the server's ``started_at`` (queued → started covers the lease hand-off and the
start call).

Run: ``cd /work/main && uv run python bench/run_latency.py`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

BOOTSTRAP_TOKEN = "bench-bootstrap-token-0123456789"
REGISTRATION_TOKEN = "bench-registration-token-0123456789"
BIN = Path(sys.executable).parent
# Issue 15's aims on 2 cores (the cold one is the original architecture's).
AIMS = {"warm": 0.040, "cold": 1.0, "docker": 0.300}
AIM_THROUGHPUT = 50.0
ENDED = {"completed", "failed", "cancelled", "dead"}


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of every child it has reaped (``/proc/<pid>/stat`` utime,
    stime, cutime, cstime); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> set[int]:
    """``pid`` and every live process below it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.update(children)
        frontier.extend(children)
    return found


def tree_cpu(pid: int) -> float:
    """CPU time of ``pid`` with its live descendants and everything they reaped: a
    runner's workloads count whether they were reaped by it or by a helper of its."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Stack:
    workdir: Path
    url: str
    env: dict[str, str]
    # Every API process's URL (the first is ``url``); runners take turns over them.
    urls: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    runner_logs: list[Path] = field(default_factory=list)
    # Program name → the pids started from it, for CPU per run.
    pids: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def spawn(self, name: str, program: str, env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / program)],
            env={**os.environ, **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        self.procs.append(proc)
        self.pids[program].append(proc.pid)
        if program == "minitower-runner":
            self.runner_logs.append(self.workdir / f"{name}.log")

    def runner(self, name: str, **env: str) -> None:
        urls = self.urls or [self.url]
        self.spawn(
            name,
            "minitower-runner",
            {
                "MINITOWER_SERVER_URL": urls[len(self.runner_logs) % len(urls)],
                "MINITOWER_RUNNER_NAME": name,
                "MINITOWER_DATA_DIR": str(self.workdir / name),
                # One team, the bench's: workloads run as the runner (no uid switch, whose
                # interpreter and folders must then be reachable by another user).
                "MINITOWER_RUNNER_TRUST_ALL_TEAMS": "true",
                **env,
            },
        )

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far per program (summed over its processes), workloads
        counted with the runner that ran them."""
        return {program: sum(tree_cpu(pid) for pid in pids) for program, pids in self.pids.items()}

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def phases(self) -> dict[int, dict[str, float]]:
        """Each run's phases in seconds, from its runner's ``reported`` JSON log line."""
        found: dict[int, dict[str, float]] = {}
        for path in self.runner_logs:
            for text in path.read_text(errors="replace").splitlines():
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if isinstance(line, dict) and line.get("event") == "reported":
                    found[int(line["run_id"])] = {k: v / 1000 for k, v in line["phases_ms"].items()}
        return found


def start_stack(workdir: Path, database_url: str | None = None, api_processes: int = 1) -> Stack:
    ports = [free_port() for _ in range(api_processes)]
    port = ports[0]
    database = (
        {"MINITOWER_DATABASE_URL": database_url, "MINITOWER_OBJECT_STORE": "postgres"}
        if database_url
        else {}
    )
    env = {
        **database,
        "MINITOWER_DB_PATH": str(workdir / "minitower.db"),
        "MINITOWER_OBJECTS_DIR": str(workdir / "objects"),
        "MINITOWER_LISTEN_ADDR": f"127.0.0.1:{port}",
        "MINITOWER_BOOTSTRAP_TOKEN": BOOTSTRAP_TOKEN,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "MINITOWER_SERVER_URL": f"http://127.0.0.1:{port}",
        "MINITOWER_VENV_CACHE_DIR": str(workdir / "venvs"),
        "MINITOWER_LOG_LEVEL": "info",
        # phases() reads the runners' JSON lines.
        "MINITOWER_LOG_FORMAT": "json",
    }
    subprocess.run(
        [str(BIN / "minitowerd"), "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    stack = Stack(workdir=workdir, url=urls[0], env=env, urls=urls)
    for number, api_port in enumerate(ports, 1):
        stack.spawn(
            f"api-{number}",
            "minitowerd",
            {"MINITOWER_LOG_LEVEL": "warning", "MINITOWER_LISTEN_ADDR": f"127.0.0.1:{api_port}"},
        )
    stack.spawn("reaper", "minitower-reaper", {})
    deadline = time.monotonic() + 30
    waiting = list(urls)
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            waiting = [u for u in waiting if httpx.get(f"{u}/ready", timeout=1).status_code != 200]
        if not waiting:
            return stack
        time.sleep(0.1)
    stack.stop()
    raise SystemExit(f"the API at {waiting} did not become ready in 30 s")


class Team:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        body = self.http.post(
            "/api/v1/bootstrap/team",
            json={"slug": "bench", "name": "Bench"},
            headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"},
        ).json()
        self.http.headers["Authorization"] = f"Bearer {body['token']}"

    def deploy(self, slug: str, files: dict[str, str]) -> None:
        self.http.post("/api/v1/apps", json={"slug": slug}).raise_for_status()
        self.http.post(
            f"/api/v1/apps/{slug}/versions",
            files={"artifact": ("app.tar.gz", archive(files), "application/gzip")},
            data={"entrypoint": "main.py"},
        ).raise_for_status()

    def submit(self, slug: str, environment: str = "default") -> int:
        response = self.http.post(f"/api/v1/apps/{slug}/runs", json={"environment": environment})
        response.raise_for_status()
        run_id: int = response.json()["run_id"]
        return run_id

    def wait(
        self, run_ids: list[int], timeout: float, interval: float = 0.02
    ) -> list[dict[str, Any]]:
        """The runs once all have ended. Runs are leased oldest first, so the script
        watches only the newest unfinished one (one GET per ``interval``), then reads the
        ended ones a page at a time: the API's CPU per run is then the run's own, not the
        script's polling."""
        deadline = time.monotonic() + timeout
        done: dict[int, dict[str, Any]] = {}
        while len(done) < len(run_ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"runs not finished after {timeout}s: {len(done)}/{len(run_ids)}")
            newest = max(run_id for run_id in run_ids if run_id not in done)
            run = self.http.get(f"/api/v1/runs/{newest}").json()
            if run["status"] not in ENDED:
                time.sleep(interval)
                continue
            done[newest] = run
            if len(run_ids) - len(done) > 1:
                done.update(self._ended(set(run_ids) - set(done)))
        return [done[run_id] for run_id in run_ids]

    def _ended(self, wanted: set[int]) -> dict[int, dict[str, Any]]:
        ended: dict[int, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor is not None:
                params["cursor"] = cursor
            page = self.http.get("/api/v1/runs", params=params).json()
            for run in page["runs"]:
                if run["run_id"] in wanted and run["status"] in ENDED:
                    ended[run["run_id"]] = run
            cursor = page["next_cursor"]
            if cursor is None or min(run["run_id"] for run in page["runs"]) < min(wanted):
                return ended


def latency(run: dict[str, Any]) -> float:
    if run["status"] != "completed":
        raise SystemExit(f"run {run['run_id']} ended {run['status']}: {run['error_message']}")
    return (parse_time(run["finished_at"]) - parse_time(run["queued_at"])).total_seconds()


def sequential(
    team: Team, count: int, environment: str, before_each: Any = None
) -> list[dict[str, Any]]:
    runs = []
    for _ in range(count):
        if before_each is not None:
            before_each()
        runs.extend(team.wait([team.submit("trivial", environment)], timeout=120))
    return runs


def run_batch(team: Team, runs: int, clients: int) -> tuple[list[dict[str, Any]], float]:
    """The throughput phase: ``runs`` trivial runs submitted by ``clients`` at once, as a
    team's services would (one client's round trips would otherwise bound the rate the
    runners can reach), then waited for. Returns the runs and the submitting time."""
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(lambda _: team.submit("trivial"), range(runs)))
    submitted = time.monotonic() - started
    return team.wait(ids, timeout=300, interval=0.1), submitted


def docker_image_present(image: str) -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


def report(name: str, runs: list[dict[str, Any]], phases: dict[int, dict[str, float]]) -> None:
    values = [latency(run) for run in runs]
    aim = AIMS[name]
    verdict = "met" if statistics.median(values) <= aim else "NOT met"
    print(
        f"{name:>7}: n={len(values):3d}  p50 {statistics.median(values) * 1000:7.1f} ms  "
        f"p95 {pct(values, 95) * 1000:7.1f} ms  (aim p50 <= {aim * 1000:.0f} ms: {verdict})"
    )
    queued_to_started = [
        (parse_time(r["started_at"]) - parse_time(r["queued_at"])).total_seconds() for r in runs
    ]
    per_phase: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for phase, seconds in phases.get(run["run_id"], {}).items():
            per_phase[phase].append(seconds)
    parts = [f"queued->started {statistics.median(queued_to_started) * 1000:.1f}"]
    parts += [f"{k} {statistics.median(v) * 1000:.1f}" for k, v in per_phase.items()]
    print(f"         medians, ms: {', '.join(parts)}")


def cpu_per_run(before: dict[str, float], after: dict[str, float], runs: int) -> str:
    """Each program's CPU over a phase, per run. The API's includes the script's status
    reads (see ``Team.wait``); the runners' includes their workloads and the idle
    runners' long polls."""
    names = {"minitowerd": "api", "minitower-reaper": "reaper", "minitower-runner": "runners"}
    return ", ".join(
        f"{label} {(after[program] - before.get(program, 0.0)) / runs * 1000:.1f}"
        for program, label in names.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="runs per latency phase (30)")
    parser.add_argument("-k", type=int, default=100, help="runs in the throughput phase (100)")
    parser.add_argument("-r", type=int, default=2, help="process runners (2)")
    parser.add_argument(
        "-s", type=int, default=4, help="clients submitting the throughput phase's runs (4)"
    )
    parser.add_argument(
        "--image",
        default=os.environ.get("MINITOWER_RUNNER_IMAGE", "minitower/workload:latest"),
        help="image for the docker phase (MINITOWER_RUNNER_IMAGE or minitower/workload:latest)",
    )
    parser.add_argument("--skip-docker", action="store_true")
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument("--database-url", help="run on this PostgreSQL database (empty)")
    engine.add_argument(
        "--postgres",
        action="store_true",
        help="run on a throwaway PostgreSQL 15 cluster (as the tests start one)",
    )
    parser.add_argument(
        "--api-processes", type=int, default=1, help="API processes (1; more need PostgreSQL)"
    )
    args = parser.parse_args(argv)
    if args.api_processes > 1 and not (args.database_url or args.postgres):
        parser.error("--api-processes above 1 needs --database-url or --postgres")
    with contextlib.ExitStack() as resources:
        database_url = args.database_url
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.support.postgres import running_cluster

            cluster = resources.enter_context(running_cluster())
            database_url = cluster.url(cluster.create_database())
        return measure(args, database_url)


def measure(args: argparse.Namespace, database_url: str | None) -> int:
    engine = "SQLite" if database_url is None else "PostgreSQL"
    print(f"load average before: {os.getloadavg()}; {engine}, {args.api_processes} API process(es)")
    workdir = Path(tempfile.mkdtemp(prefix="minitower-bench-"))
    stack = start_stack(workdir, database_url, args.api_processes)
    try:
        for i in range(args.r):
            stack.runner(f"bench-{i + 1}")
        team = Team(stack.url)
        team.deploy("trivial", {"main.py": "print('hello')\n"})
        sequential(team, 2, "default")  # warm-up: builds the venv, loads the code paths
        before = stack.cpu()
        warm = sequential(team, args.n, "default")
        warm_cpu = cpu_per_run(before, stack.cpu(), len(warm))

        def empty_cache() -> None:
            for entry in (workdir / "venvs").iterdir():
                if entry.is_dir() and not entry.name.startswith("."):
                    shutil.rmtree(entry)

        cold = sequential(team, max(3, args.n // 3), "default", before_each=empty_cache)
        docker_runs: list[dict[str, Any]] = []
        if not args.skip_docker and docker_image_present(args.image):
            stack.runner(
                "bench-docker",
                MINITOWER_RUNNER_ISOLATION="docker",
                MINITOWER_RUNNER_IMAGE=args.image,
                MINITOWER_RUNNER_ENVIRONMENT="docker",
            )
            sequential(team, 1, "docker")
            docker_runs = sequential(team, max(3, args.n // 3), "docker")
        else:
            print(f"docker phase skipped (no engine, or no image {args.image!r})")
        before = stack.cpu()
        batch, submitted = run_batch(team, args.k, args.s)
        batch_cpu = cpu_per_run(before, stack.cpu(), len(batch))
        first_queued = min(parse_time(r["queued_at"]) for r in batch)
        last_finished = max(parse_time(r["finished_at"]) for r in batch)
        span = (last_finished - first_queued).total_seconds()
        phases = stack.phases()
        print()
        report("warm", warm, phases)
        print(f"         CPU per run, ms: {warm_cpu}")
        report("cold", cold, phases)
        if docker_runs:
            report("docker", docker_runs, phases)
        rate = len(batch) / span
        verdict = "met" if rate >= AIM_THROUGHPUT else "NOT met"
        failed = sum(r["status"] != "completed" for r in batch)
        print(
            f"throughput: {len(batch)} runs on {args.r} runners in {span:.2f} s = "
            f"{rate:.1f} runs/s "
            f"(submitting took {submitted:.2f} s on {args.s} clients; {failed} not completed; "
            f"aim >= {AIM_THROUGHPUT:.0f}/s: {verdict})"
        )
        print(f"         CPU per run, ms: {batch_cpu}")
    finally:
        stack.stop()
        print(f"load average after: {os.getloadavg()}")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
