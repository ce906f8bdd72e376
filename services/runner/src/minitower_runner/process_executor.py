"""Runs an attempt as a local process group, in a cached venv.

The runner's launcher (see ``launcher.py``) forks and execs each entrypoint as the leader
of its own process group: cancel and timeout signal the whole group, whatever it spawned,
and the group dies with the runner even when the runner is SIGKILLed. Only the app's
interpreter starts per run; the launcher is started once per runner.

Secrets reach the workload inside its request to the launcher, over a private socket:
no process's argv or environ holds them but the workload's own environment.
"""

import os
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from minitower_runner.isolation import (
    WorkloadUser,
    check_reachable,
    check_runnable,
    hand_over,
    secure_runner_dirs,
    workload_user,
)
from minitower_runner.launcher_client import Launched, LauncherClient
from minitower_runner.logs import split_lines
from minitower_runner.venvs import VenvCache
from minitower_runner.workload import Emit, RunSpec, interpreter_for, workload_environment


class ProcessWorkload:
    def __init__(
        self,
        launched: Launched,
        stdout: IO[bytes],
        stderr: IO[bytes],
        emit: Emit,
        on_exit: Callable[[], None],
    ) -> None:
        self._pgid = launched.pid  # the workload leads a new session: its pid is the group
        self._exited = threading.Event()
        self._code: int | None = None
        self._readers = [
            threading.Thread(target=self._pump, args=(stdout, "stdout", emit), daemon=True),
            threading.Thread(target=self._pump, args=(stderr, "stderr", emit), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        waiter = threading.Thread(target=self._wait_then, args=(launched, on_exit), daemon=True)
        waiter.start()

    @staticmethod
    def _pump(stream: IO[bytes], name: str, emit: Emit) -> None:
        with stream:
            for line in split_lines(stream):
                emit(name, line)

    def _wait_then(self, launched: Launched, on_exit: Callable[[], None]) -> None:
        self._code = launched.wait()
        self._exited.set()
        on_exit()

    def wait(self, timeout: float | None) -> int | None:
        return self._code if self._exited.wait(timeout) else None

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
    launcher: LauncherClient
    # None: the workload runs as the runner (a runner bound to one team).
    user: WorkloadUser | None = None

    def start(self, emit: Emit, on_exit: Callable[[], None]) -> ProcessWorkload:
        spec, venv = self.spec, self.venv
        home = spec.app_dir.parent / "home"
        home.mkdir(exist_ok=True)
        if self.user is not None:
            hand_over(spec.app_dir.parent, self.user)
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
        user = (self.user.uid, self.user.gid) if self.user is not None else None
        launched, stdout, stderr = self.launcher.launch(command, env, str(spec.app_dir), user)
        return ProcessWorkload(launched, stdout, stderr, emit, on_exit)


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
        self._launcher = LauncherClient()

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
        return PreparedProcess(spec, venv, self._launcher, self.user)

    def remove_leftovers(self) -> None:
        """Nothing to do: the launcher takes every workload down with the runner."""

    def close(self) -> None:
        """Stop the launcher and every workload it still runs. A runner process need not
        call it: its exit stops the launcher."""
        self._launcher.close()
