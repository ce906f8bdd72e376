"""The runner's end of its launcher (``launcher.py``): starts it once, asks it for
workloads, and hears from it their pids and exit statuses."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import IO

from minitower_runner import launcher

log = logging.getLogger("minitower.runner")

LAUNCHER_PATH = str(Path(launcher.__file__).resolve())
# How long the launcher may take to answer with a pid: its own start-up (first run after
# it was started or restarted) and a fork, on a busy machine.
_ANSWER_TIMEOUT = 30.0


class Launched:
    """A workload the launcher started: its pid, which is also its process group."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._answers = channel.makefile("rb")
        first = self._answers.readline().decode().strip()
        if not first.isdigit():
            self._answers.close()
            raise OSError(f"the launcher could not start the workload: {first or 'no answer'}")
        self.pid = int(first)
        # The exit may come at any time; the wait for it is the runner's to bound.
        channel.settimeout(None)

    def wait(self) -> int:
        """Blocks until the workload has exited; its exit code (-N: killed by signal N)."""
        with self._channel, self._answers:
            line = self._answers.readline().decode().strip()
        if line.lstrip("-").isdigit():
            return os.waitstatus_to_exitcode(int(line))
        # The launcher died: the workload got SIGKILL from the kernel (its parent-death
        # signal); whatever it spawned in its group goes the same way.
        log.warning("the launcher died under a running workload", extra={"pid": self.pid})
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return -signal.SIGKILL


class LauncherClient:
    """Started on the first launch (that run waits for the launcher's start-up), and again
    after the launcher died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER_PATH, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # its stderr stays the runner's, for its faults
                pass_fds=(theirs.fileno(),),
                # Nothing of the runner's environment: the launcher needs none, and each
                # workload's comes with its request.
                env={},
                cwd="/",
                # A signal to the runner's process group (a Ctrl-C, a kill of the group)
                # must not reach it: it ends when the runner does, by reading EOF.
                start_new_session=True,
            )
        self._control = ours
        return ours

    def launch(
        self,
        command: list[str],
        env: dict[str, str],
        cwd: str,
        user: tuple[int, int] | None,
    ) -> tuple[Launched, IO[bytes], IO[bytes]]:
        """Start ``command``; returns it with the read ends of its stdout and stderr."""
        request = json.dumps(
            {"command": command, "env": env, "cwd": cwd, "user": list(user) if user else None}
        ).encode()
        with self._lock:
            try:
                return self._launch(self._control or self._start(), request)
            except (BrokenPipeError, ConnectionResetError):
                # The launcher is gone (killed, or crashed): a new one takes over.
                log.warning("the launcher is gone; starting a new one")
                self._stop()
                return self._launch(self._start(), request)

    @staticmethod
    def _launch(control: socket.socket, request: bytes) -> tuple[Launched, IO[bytes], IO[bytes]]:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with theirs:
                socket.send_fds(control, [b"w"], [theirs.fileno(), out_write, err_write])
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            ours.close()
            raise
        finally:
            # The workload holds the write ends now: EOF comes when its group is done.
            os.close(out_write)
            os.close(err_write)
        try:
            ours.settimeout(_ANSWER_TIMEOUT)
            ours.sendall(request)
            ours.shutdown(socket.SHUT_WR)
            launched = Launched(ours)
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            ours.close()
            raise
        return launched, os.fdopen(out_read, "rb"), os.fdopen(err_read, "rb")

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._proc is not None:
            self._proc.wait(_ANSWER_TIMEOUT)
            self._proc = None

    def close(self) -> None:
        """Stop the launcher: every workload it started is killed."""
        with self._lock:
            self._stop()
