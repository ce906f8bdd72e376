"""Runs an attempt as a local process group, in a cached venv.

The entrypoint runs under the shim (see ``shim.py``) as the leader of its own process
group: cancel and timeout signal the whole group, whatever it spawned, and the group dies
with the runner even when the runner is SIGKILLed.

Secrets reach the workload through a pipe to the shim (``--env-fd``), not through the
shim's own environment or command line: ``/proc/<shim>/environ`` and ``cmdline`` never
hold them, only the workload's environment does.

The kernel's parent-death signal fires when the *thread* that started the child ends,
not the process: start workloads from a thread that lives as long as they do (the
runner's main loop does).
"""

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from minitower_runner import shim
from minitower_runner.isolation import (
    WorkloadUser,
    check_reachable,
    check_runnable,
    hand_over,
    secure_runner_dirs,
    workload_user,
)
from minitower_runner.logs import split_lines
from minitower_runner.venvs import VenvCache
from minitower_runner.workload import Emit, RunSpec, interpreter_for, workload_environment

SHIM_PATH = str(Path(shim.__file__).resolve())


class ProcessWorkload:
    def __init__(
        self, proc: subprocess.Popen[bytes], emit: Emit, on_exit: Callable[[], None]
    ) -> None:
        self._proc = proc
        self._pgid = proc.pid  # the shim leads a new session, so its pid is the group id
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, "stdout", emit), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, "stderr", emit), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        waiter = threading.Thread(target=self._wait_then, args=(on_exit,), daemon=True)
        waiter.start()

    @staticmethod
    def _pump(stream: IO[bytes], name: str, emit: Emit) -> None:
        with stream:
            for line in split_lines(stream):
                emit(name, line)

    def _wait_then(self, on_exit: Callable[[], None]) -> None:
        self._proc.wait()
        on_exit()

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, signum: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, signum)

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def finish(self, timeout: float) -> None:
        # Whatever the workload left behind in its group (a background job holding the
        # output pipes open) ends with it.
        self.kill()
        for reader in self._readers:
            reader.join(timeout)


@dataclass(frozen=True)
class PreparedProcess:
    spec: RunSpec
    venv: Path
    # None: the workload runs as the runner (a runner bound to one team).
    user: WorkloadUser | None = None

    def start(self, emit: Emit, on_exit: Callable[[], None]) -> ProcessWorkload:
        spec, venv = self.spec, self.venv
        home = spec.app_dir.parent / "home"
        home.mkdir(exist_ok=True)
        drop: list[str] = []
        if self.user is not None:
            hand_over(spec.app_dir.parent, self.user)
            drop = ["--as", f"{self.user.uid}:{self.user.gid}:{spec.app_dir}"]
        entry = str(spec.app_dir / spec.entrypoint)
        if interpreter_for(spec.entrypoint) == "python":
            command = [str(venv / "bin" / "python"), "-u", entry]
        else:
            command = ["/bin/sh", entry]
        env = workload_environment(
            spec,
            home=str(home),
            python_path=[str(spec.app_dir / p) for p in spec.import_paths],
            path_prefix=[str(venv / "bin")],
        )
        env["VIRTUAL_ENV"] = str(venv)
        env["TMPDIR"] = str(home)
        # The secrets as they ended up in the workload's environment go through the pipe.
        piped = {k: env.pop(k) for k, v in spec.secrets.items() if env.get(k) == v}
        env_fd: list[str] = []
        read_end = write_end = -1
        if piped:
            read_end, write_end = os.pipe()
            env_fd = ["--env-fd", str(read_end)]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", SHIM_PATH, str(os.getpid()), *env_fd, *drop, *command],
                # A workload user's workspace is not the runner's to enter: the shim changes
                # into it once it has dropped to that user.
                cwd=spec.app_dir if self.user is None else spec.app_dir.parent.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=(read_end,) if piped else (),
            )
        except BaseException:
            if piped:
                os.close(write_end)
            raise
        finally:
            if piped:
                os.close(read_end)
        if piped:
            # A thread: more than a pipe's buffer (64 KiB) must not block the runner.
            threading.Thread(
                target=_write_all, args=(write_end, json.dumps(piped).encode()), daemon=True
            ).start()
        return ProcessWorkload(proc, emit, on_exit)


def _write_all(fd: int, payload: bytes) -> None:
    """Hand the shim its secrets; a shim that died early just never reads them."""
    with suppress(OSError), os.fdopen(fd, "wb") as pipe:
        pipe.write(payload)


@dataclass(frozen=True)
class WorkloadIdentity:
    """What a shared runner needs to run workloads apart from itself."""

    uid: int
    gid: int
    trust_all_teams: bool
    data_dir: Path
    work_root: Path


class ProcessExecutor:
    def __init__(self, venvs: VenvCache, identity: WorkloadIdentity | None = None) -> None:
        self.venvs = venvs
        self._identity = identity
        self.user: WorkloadUser | None = None

    def bind(self, *, shared: bool) -> None:
        identity = self._identity
        if identity is None:
            return
        self.user = workload_user(
            shared=shared,
            uid=identity.uid,
            gid=identity.gid,
            trust_all_teams=identity.trust_all_teams,
        )
        if self.user is None:
            return
        secure_runner_dirs(identity.data_dir, identity.work_root, self.venvs.root)
        check_reachable(identity.work_root, self.user, "the workspaces in")
        check_reachable(self.venvs.root, self.user, "the venv cache")
        check_runnable(Path(self.venvs.python), self.user)
        self.venvs.wheels_only = True

    def prepare(
        self, spec: RunSpec, emit: Emit, should_stop: Callable[[], bool]
    ) -> PreparedProcess:
        interpreter_for(spec.entrypoint)
        requirements = spec.app_dir / "requirements.txt"
        venv = self.venvs.get(
            requirements if requirements.is_file() else None,
            lambda line: emit("stderr", f"[minitower] {line}"),
            should_stop,
            team_id=spec.team_id,
        )
        return PreparedProcess(spec, venv, self.user)

    def remove_leftovers(self) -> None:
        """Nothing to do: the shim takes its group down with the runner."""
