"""The launcher that forks every workload of a runner: exit codes as the runner reports
them, and no workload process (nor its child) outliving the runner or the launcher, even
when either is SIGKILLed, whichever runner thread started the launcher; and a SIGTERM
to the launcher (a drain, a supervisor) stopping nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minitower_runner.launcher_client import Launched, LauncherClient
from tests.support.privileges import require_root
from tests.support.proctree import alive, children_of, wait_gone

# Prints its own pid, its child's and its parent's (the launcher), then waits with its child.
WITH_CHILD = ["/bin/sh", "-c", "sleep 300 & echo $$ $! $PPID; wait"]


@pytest.fixture
def launcher() -> Iterator[LauncherClient]:
    client = LauncherClient()
    yield client
    client.close()


def launch(client: LauncherClient, command: list[str], cwd: str = "/") -> tuple[Launched, str]:
    """Starts ``command``; returns it with its first line of output."""
    launched, stdout, stderr = client.launch(command, {"PATH": "/usr/bin:/bin"}, cwd, None)
    stderr.close()
    first = stdout.readline().decode().strip()
    stdout.close()
    return launched, first


def test_exit_codes_are_the_workloads_own(launcher: LauncherClient, tmp_path: Path) -> None:
    done, _ = launch(launcher, ["/bin/sh", "-c", "exit 3"])
    assert done.wait() == 3
    killed, _ = launch(launcher, ["/bin/sh", "-c", "kill -TERM $$"])
    assert killed.wait() == -signal.SIGTERM
    launched, stdout, stderr = launcher.launch([str(tmp_path / "absent")], {}, "/", None)
    stdout.close()
    with stderr:
        said = stderr.read().decode()
    assert launched.wait() == 127
    assert said == f"minitower: cannot start {tmp_path / 'absent'}: No such file or directory\n"


def test_the_workload_gets_what_its_request_says(launcher: LauncherClient, tmp_path: Path) -> None:
    launched, stdout, stderr = launcher.launch(
        ["/bin/sh", "-c", 'echo "$PWD $SECRET"; echo err >&2; cat'],
        {"SECRET": "s3cret"},
        str(tmp_path),
        None,
    )
    with stdout, stderr:
        assert stdout.read().decode() == f"{tmp_path} s3cret\n"  # cat read /dev/null
        assert stderr.read().decode() == "err\n"
    assert launched.wait() == 0


def test_a_workload_leads_its_own_group_and_ignores_nothing(launcher: LauncherClient) -> None:
    launched, first = launch(launcher, [*WITH_CHILD])
    workload, child, _ = (int(p) for p in first.split())
    assert launched.pid == workload == os.getpgid(workload) == os.getpgid(child)
    os.killpg(launched.pid, signal.SIGTERM)  # as a cancel does: SIGTERM ends it
    assert launched.wait() == -signal.SIGTERM
    wait_gone({workload, child}, timeout=5)


def test_a_sigterm_to_the_launcher_stops_nothing(launcher: LauncherClient) -> None:
    """A drain (or a supervisor's SIGTERM to every process) is the runner's to handle:
    the workload keeps running under a draining runner."""
    launched, first = launch(launcher, [*WITH_CHILD])
    workload, child, launcher_pid = (int(p) for p in first.split())
    # A session of its own: a signal to the runner's process group misses it.
    assert os.getsid(launcher_pid) == launcher_pid != os.getsid(0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        os.kill(launcher_pid, signum)
    time.sleep(0.3)
    assert all(alive(p) for p in (launcher_pid, workload, child))
    os.killpg(launched.pid, signal.SIGKILL)
    assert launched.wait() == -signal.SIGKILL


@pytest.mark.parametrize("user", [None, (64006, 64006)], ids=["runner-user", "other-user"])
def test_a_sigkilled_launcher_takes_its_workloads_down_and_is_replaced(
    launcher: LauncherClient, user: tuple[int, int] | None
) -> None:
    if user is not None:
        require_root("the launcher switches the workload to another uid")
    launched, stdout, stderr = launcher.launch([*WITH_CHILD], {}, "/", user)
    with stdout, stderr:
        workload, child, launcher_pid = (int(p) for p in stdout.readline().split())
    assert os.stat(f"/proc/{workload}").st_uid == (user[0] if user else os.getuid())
    assert launcher_pid in children_of(os.getpid())
    os.kill(launcher_pid, signal.SIGKILL)
    # The kernel's parent-death signal, which survived the uid change, ends the workload;
    # the runner ends the rest of its group when it hears the launcher is gone.
    wait_gone({workload}, timeout=5)
    assert alive(child)
    assert launched.wait() == -signal.SIGKILL
    wait_gone({child}, timeout=5)
    again, _ = launch(launcher, ["/bin/sh", "-c", "echo; exit 4"])
    assert again.wait() == 4


# A runner in miniature: starts the launcher from a thread that then ends (the kernel's
# parent-death signal would fire at that thread's end), launches WITH_CHILD, prints what
# it printed, and sleeps until it is killed.
FAKE_RUNNER = textwrap.dedent(
    """\
    import sys, threading, time
    from minitower_runner.launcher_client import LauncherClient

    client = LauncherClient()
    got = []

    def start():
        launched, stdout, _ = client.launch(%r, {}, "/", None)
        got.append(stdout.readline().decode().split())

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    print(*got[0], flush=True)
    time.sleep(300)
    """
)


def test_a_sigkilled_runner_takes_the_launcher_its_workload_and_child_down() -> None:
    runner = subprocess.Popen(
        [sys.executable, "-c", FAKE_RUNNER % (WITH_CHILD,)], stdout=subprocess.PIPE
    )
    try:
        assert runner.stdout is not None
        pids = {int(p) for p in runner.stdout.readline().split()}
        assert len(pids) == 3
        time.sleep(0.5)  # the thread that started the launcher is gone: nothing changes
        assert all(alive(p) for p in pids)
        runner.kill()
        runner.wait(5)
        wait_gone(pids, timeout=5)
    finally:
        runner.kill()
        runner.wait(5)
