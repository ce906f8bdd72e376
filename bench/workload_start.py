"""What starting a trivial process workload costs, by the ways it can be started.

Each way starts ``python -u main.py`` (``print('hello')``) in a fresh venv N times, one
after another, reads its output to the end and waits for its exit status; it prints the
median wall time per start and the CPU per start (this process's own, plus every process
the start involved, read from ``/proc/<pid>/stat`` or ``getrusage``):

1. ``direct``: the runner spawns the app's interpreter itself (no supervision at all:
   the floor of one interpreter start, not a way the runner may use);
2. ``shim``: the way before the launcher, two interpreters: a stand-in for the removed
   shim (``python -I -S``, importing and calling what it did: ctypes, ``prctl``,
   ``posix_spawn``, ``waitpid``) that starts the app's interpreter;
3. ``launcher``: the way now: the runner's launcher, started once, forks and execs it;
4. ``zygote``: not built, for comparison: a pre-started interpreter of the venv forks
   and runs ``main.py`` in the child with ``runpy``, no interpreter start at all.

Run: ``uv run python bench/workload_start.py`` (``-n`` starts per way, 50).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from minitower_runner.launcher_client import LauncherClient

SHIM_STANDIN = """\
import ctypes, json, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, int(signal.SIGUSR2), 0, 0, 0)
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], dict(os.environ), setsigdef=(signal.SIGTERM,))
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""

# Reads a path per line on stdin; forks; the child runs it as __main__ with its output on
# the inherited stdout; the parent answers the exit status on stderr. What run_path
# imports is imported before the forks, and gc.freeze() keeps the collector from touching
# (so copying) the parent's objects in each child.
ZYGOTE = """\
import gc, os, pkgutil, runpy, sys
gc.freeze()
while line := sys.stdin.buffer.readline():
    pid = os.fork()
    if pid == 0:
        sys.argv = [line.decode().strip()]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        finally:
            sys.stdout.flush()
            os._exit(0)
    os.write(2, b"%d\\n" % os.waitpid(pid, 0)[1])
"""


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of the children it reaped."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_and_reaped() -> float:
    self, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


def measure(name: str, n: int, start: Callable[[], None], helper: int | None = None) -> None:
    start()  # warm-up: page cache, a helper's first fork
    cpu_before = own_and_reaped() + (tree_cpu(helper) if helper else 0.0)
    walls = []
    for _ in range(n):
        began = time.perf_counter()
        start()
        walls.append(time.perf_counter() - began)
    cpu = own_and_reaped() + (tree_cpu(helper) if helper else 0.0) - cpu_before
    print(
        f"{name:>9}: wall p50 {statistics.median(walls) * 1000:6.1f} ms, "
        f"CPU per start {cpu / n * 1000:6.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="starts per way (50)")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="minitower-start-") as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder / "venv"], check=True)
        python = str(folder / "venv" / "bin" / "python")
        main_py = folder / "main.py"
        main_py.write_text("print('hello')\n")
        command = [python, "-u", str(main_py)]

        def spawned(argv: list[str]) -> Callable[[], None]:
            def start() -> None:
                out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout
                assert out == b"hello\n", out

            return start

        measure("direct", args.n, spawned(command))
        measure("shim", args.n, spawned([sys.executable, "-I", "-S", "-c", SHIM_STANDIN, *command]))

        client = LauncherClient()

        def launched() -> None:
            workload, stdout, stderr = client.launch(command, {}, tmp, None)
            with stdout, stderr:
                assert stdout.read() == b"hello\n"
            assert workload.wait() == 0

        # Starts the launcher; the workload's parent is it.
        first, stdout, stderr = client.launch(["/bin/sh", "-c", "echo $PPID"], {}, tmp, None)
        with stdout, stderr:
            launcher_pid = int(stdout.read())
        first.wait()
        measure("launcher", args.n, launched, helper=launcher_pid)
        client.close()

        zygote = subprocess.Popen(
            [python, "-u", "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        requests, output, statuses = zygote.stdin, zygote.stdout, zygote.stderr
        assert requests is not None and output is not None and statuses is not None

        def forked() -> None:
            requests.write(f"{main_py}\n".encode())
            requests.flush()
            assert statuses.readline() == b"0\n"
            assert output.readline() == b"hello\n"

        measure("zygote", args.n, forked, helper=zygote.pid)
        requests.close()
        zygote.wait(10)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
