"""The workloads' parent: one small process per runner, started once, that forks and execs
every workload, so a run starts one interpreter (the app's) instead of two.

The runner starts it (``python -I -S launcher.py FD``) in a session of its own, with FD
one end of a private socket pair. For each workload the runner sends over that socket,
in one message, three descriptors: a socket for this workload and the write ends of its
stdout and stderr pipes. On the workload's socket it then writes a JSON request
(command, environment, working directory, optional uid and gid) and shuts its side for
writing; the launcher answers with the workload's pid on one line and, once it has
reaped it, its raw wait status on another. The request holds the run's secrets: they so
travel only through that socket, never through an argv or environ that others can read.

Each workload leads a process group of its own (the runner signals the group on cancel
and timeout) and gets SIGKILL when the launcher dies (``PR_SET_PDEATHSIG``, set after any
uid change, which clears it; the launcher is single-threaded, so the thread that forked
it is the one that lives). The launcher kills every group it started and exits as soon as
its end of the socket pair reads EOF: that happens when the runner exits for any reason,
SIGKILL included, because the runner's end is close-on-exec and held by nobody else. So
no workload process outlives the runner, with no per-run supervisor and no dependence on
which runner thread started the launcher.

It ignores SIGTERM and SIGINT: a drain or a Ctrl-C is the runner's to handle, and the
workload must not be stopped under a draining runner. Standard library only, nothing
imported from the runner.
"""

import ctypes
import json
import os
import selectors
import signal
import socket
import sys
from contextlib import suppress
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
# A workload starts with default dispositions: not the ones set here, nor the SIGPIPE
# and SIGXFSZ that Python itself ignores (an ignored signal stays ignored across exec).
_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ)


def _drop_to(uid: int, gid: int, libc: ctypes.CDLL) -> None:
    """Become ``uid``:``gid`` for good, with no supplementary groups, no capabilities and
    ``no_new_privs``: the workload cannot signal, trace or read the launcher or the
    runner. Raises OSError when any step fails."""
    # Ambient capabilities survive a change between two non-root uids (a runner given
    # CAP_SETUID by its container): clear them, or the workload would inherit them.
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if os.getresuid() != (uid, uid, uid) or os.getgroups() not in ([], [gid]):
        raise OSError(1, "the uid did not change")


def _become_workload(request: dict[str, Any], out: int, err: int, libc: ctypes.CDLL) -> None:
    """In the forked child: set the workload up and exec it; returns only on failure,
    having said why on the workload's stderr."""
    command: list[str] = request["command"]
    user: list[int] | None = request["user"]
    signal.set_wakeup_fd(-1)
    for signum in _DEFAULT_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    launcher = os.getppid()
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    # Nothing of the launcher's (its socket, other runs' sockets and pipes) goes along.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    try:
        if user is not None:
            _drop_to(user[0], user[1], libc)
        # After the uid change, which clears it.
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != launcher:  # the launcher died before prctl took effect
            os._exit(125)
        # Only now: a workload user's workspace is its own, private to it.
        os.chdir(request["cwd"])
        os.execve(command[0], command, request["env"])  # noqa: S606 - the workload
    except OSError as exc:
        who = f" as {user[0]}:{user[1]}" if user is not None else ""
        reason = exc.strerror or str(exc)
        os.write(2, f"minitower: cannot start {command[0]}{who}: {reason}\n".encode())


def _read_request(channel: socket.socket) -> dict[str, Any]:
    chunks = []
    while chunk := channel.recv(65536):
        chunks.append(chunk)
    request: dict[str, Any] = json.loads(b"".join(chunks))
    return request


class Launcher:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self._libc = ctypes.CDLL(None, use_errno=True)
        # pid → the workload's socket, until it is reaped.
        self._live: dict[int, socket.socket] = {}

    def launch(self) -> bool:
        """Start the workload the runner asks for; False once the runner is gone."""
        message, fds, _flags, _addr = socket.recv_fds(self.control, 1, 3)
        if not message:
            return False
        channel_fd, out, err = fds
        channel = socket.socket(fileno=channel_fd)
        try:
            request = _read_request(channel)
            pid = os.fork()
            if pid == 0:
                try:
                    _become_workload(request, out, err, self._libc)
                finally:
                    os._exit(127)
        except (OSError, ValueError) as exc:
            with suppress(OSError):
                channel.sendall(f"error {exc}\n".encode())
            channel.close()
            return True
        finally:
            os.close(out)
            os.close(err)
        self._live[pid] = channel
        with suppress(OSError):  # a runner that gave up on it learns nothing more
            channel.sendall(f"{pid}\n".encode())
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            channel = self._live.pop(pid, None)
            if channel is not None:
                with suppress(OSError):
                    channel.sendall(f"{status}\n".encode())
                channel.close()

    def kill_all(self) -> None:
        for pid in self._live:
            with suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with suppress(OSError):  # not yet its own group leader
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A SIGCHLD wakes the loop through this pipe, so exits are reported at once.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    launcher = Launcher(socket.socket(fileno=int(argv[1])))
    selector = selectors.DefaultSelector()
    selector.register(launcher.control, selectors.EVENT_READ, "control")
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    try:
        while True:
            for key, _events in selector.select():
                if key.data == "wake":
                    with suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                    launcher.reap()
                elif not launcher.launch():
                    return 0
    finally:
        launcher.kill_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
