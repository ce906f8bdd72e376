"""Runs each attempt in its own throwaway container (MINITOWER_RUNNER_ISOLATION=docker).

The container's root filesystem is read-only; its only writable place is ``/tmp``, a
tmpfs of MINITOWER_DOCKER_TMP_SIZE. The workspace goes in as a tar stream over the
container's stdin once it has started (a tmpfs cannot be written before that, nor read
or written with ``put_archive``), never a bind mount, so this works as well when the
runner itself is a container talking to the host's Docker socket. Inside, as a non-root
user with no capabilities, memory, CPU and pids limits and no network unless configured,
a shell creates a venv, installs ``requirements.txt`` if there is one, and execs the
entrypoint.

The container's init (tini, ``init=True``) forwards the runner's SIGTERM to the
workload's whole process group, as the process executor signals its group; a SIGKILL
stops the container outright. Exit codes read as the process executor's do: negative for
a workload the runner's signal (or the OOM killer) ended.

Containers carry ``minitower.runner=<name>`` labels so that a restarted runner removes what
its predecessor left. A container also dies on its own when the runner does: the runner
holds the container's stdin open (``stdin_once``) on the attach connection that also
carries the output, and a watchdog in the container kills every process of the run's
user when that stdin closes, which happens when the runner closes the connection or dies,
even by SIGKILL.
"""

import io
import logging
import os
import shlex
import signal
import socket
import tarfile
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import DockerException, ImageNotFound
from docker.types import LogConfig
from docker.utils.socket import STDERR, STDOUT, SocketError, frames_iter

from minitower_runner.logs import split_lines
from minitower_runner.settings import RunnerSettings
from minitower_runner.venvs import EnvironmentBuildError, IndexOptions
from minitower_runner.workload import Emit, RunSpec, interpreter_for, workload_environment
from minitower_shared.log_context import carry_context

log = logging.getLogger("minitower.runner")

ROOT = "/tmp/minitower"  # noqa: S108 - inside the throwaway container, owned by the run's user
APP_DIR = f"{ROOT}/app"
VENV_DIR = f"{ROOT}/venv"
HOME_DIR = f"{ROOT}/home"
LABEL_RUNNER = "minitower.runner"
TINI_GROUP = "TINI_KILL_PROCESS_GROUP"


class DockerUnavailable(Exception):
    """The Docker engine does not answer; the runner cannot use docker isolation."""


def _ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def workspace_tar(app_dir: Path, uid: int, gid: int) -> bytes:
    """``minitower/app/...`` (and an empty ``minitower/home``) owned by the run's user."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("minitower", "minitower/home"):
            info = owned(tarfile.TarInfo(name))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(app_dir, arcname="minitower/app", filter=owned)
    return buffer.getvalue()


# Reads exactly argv[1] bytes of tar from stdin and unpacks them into /tmp, streaming:
# the rest of stdin stays for the watchdog.
RECEIVE_WORKSPACE = """\
import os, sys, tarfile
class Exactly:
    def __init__(self, left):
        self.left = left
    def read(self, size=-1):
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = os.read(0, size)
        if not data:
            sys.exit("minitower: the workspace did not arrive")
        self.left -= len(data)
        return data
source = Exactly(int(sys.argv[1]))
with tarfile.open(fileobj=source, mode="r|") as tar:
    tar.extractall("/tmp")
while source.read(1 << 16):
    pass
"""


def container_script(
    spec: RunSpec, has_requirements: bool, index: IndexOptions, workspace_bytes: int = 0
) -> str:
    """The container's command. It first receives the workspace (``workspace_bytes`` of
    tar on stdin); then fd 3 keeps the attached stdin for the watchdog, and the workload
    itself reads /dev/null."""
    if interpreter_for(spec.entrypoint) == "python":
        run = f"exec {VENV_DIR}/bin/python -u {shlex.quote(spec.entrypoint)}"
    else:
        run = f"exec /bin/sh {shlex.quote(spec.entrypoint)}"
    lines = [
        f"python3 -c {shlex.quote(RECEIVE_WORKSPACE)} {workspace_bytes} || exit 125",
        f"cd {APP_DIR}",
        "exec 3<&0",
        # Ignores SIGTERM (tini sends it to the whole process group), so that a runner
        # dying during the grace period still takes the container down.
        "(trap '' TERM; cat <&3 >/dev/null; kill -s KILL -- -1) &",
        "set -e",
        f"unset {TINI_GROUP}",
    ]
    if has_requirements:
        pip = [
            f"{VENV_DIR}/bin/python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
            *index.args(),
        ]
        lines += [f"python3 -m venv {VENV_DIR}", " ".join(shlex.quote(p) for p in pip) + " >&2"]
    else:
        lines.append(f"python3 -m venv --without-pip {VENV_DIR}")
    lines.append(f"{run} </dev/null 3<&-")
    return "\n".join(lines)


def _raw_socket(sock: Any) -> Any:
    """The socket object under the SocketIO that ``attach_socket`` returns."""
    return getattr(sock, "_sock", None) or sock


def _hang_up(sock: Any) -> None:
    """Close an attach connection for real. ``SocketIO.close()`` alone leaves the socket
    open while the HTTP response still refers to it; the shutdown ends the connection at
    once, so the engine closes the container's stdin and the watchdog fires."""
    raw = _raw_socket(sock)
    with suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()
    with suppress(OSError):
        raw.close()


class ContainerWorkload:
    """A started container. One attach connection, opened before the start, carries the
    container's output (so none of it is missed, whatever the log driver) and holds its
    stdin open for the watchdog until ``finish()`` closes it."""

    def __init__(
        self,
        api: Any,
        container_id: str,
        attached: Any,
        emit: Emit,
        on_exit: Callable[[], None],
        memory_limit: str,
    ) -> None:
        self._api = api
        self._id = container_id
        self._attached = attached
        self._emit = emit
        self._memory_limit = memory_limit
        self._exit_code: int | None = None
        self._exited = threading.Event()
        # The signals the runner sent, to tell "killed by SIGTERM" from "exit 143".
        self._sent: set[int] = set()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._threads = [
            threading.Thread(target=carry_context(self._pump), args=(out_w, err_w), daemon=True),
            threading.Thread(target=self._read, args=(out_r, "stdout", emit), daemon=True),
            threading.Thread(target=self._read, args=(err_r, "stderr", emit), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        threading.Thread(
            target=carry_context(self._wait_then), args=(on_exit,), daemon=True
        ).start()

    def _pump(self, out_w: int, err_w: int) -> None:
        """Demultiplexed container output into two pipes, split into lines by readers.
        The stream ends when the container exits (or ``finish()`` shuts the socket)."""
        try:
            for stream, data in frames_iter(self._attached, tty=False):
                if stream == STDOUT:
                    os.write(out_w, data)
                elif stream == STDERR:
                    os.write(err_w, data)
        except (DockerException, SocketError, OSError, ValueError) as exc:
            log.warning(
                "container output stream ended",
                extra={"container": self._id[:12], "error": str(exc)},
            )
        finally:
            os.close(out_w)
            os.close(err_w)

    @staticmethod
    def _read(fd: int, name: str, emit: Emit) -> None:
        stream: IO[bytes]
        with os.fdopen(fd, "rb") as stream:
            for line in split_lines(stream):
                emit(name, line)

    def _wait_then(self, on_exit: Callable[[], None]) -> None:
        try:
            self._exit_code = self._status(int(self._api.wait(self._id)["StatusCode"]))
        except Exception as exc:
            # The engine went away (a restart) or answered nonsense: the run is over for
            # the runner either way, and the attempt must not wait for it forever.
            log.warning(
                "container wait failed", extra={"container": self._id[:12], "error": str(exc)}
            )
            self._exit_code = -1
        finally:
            self._exited.set()
            on_exit()

    def _status(self, code: int) -> int:
        """The exit code as the process executor reports it: negative for a workload the
        runner's signal (or the kernel's OOM killer) ended. The init in the container
        (tini) exits with 128 + N for a child killed by signal N, and the engine reports
        128 + 9 for a container it SIGKILLed; a workload's own ``exit 143`` stays 143."""
        signum = code - 128
        oom = False
        if code == 128 + signal.SIGKILL:
            with suppress(DockerException, OSError, KeyError, TypeError):
                oom = bool(self._api.inspect_container(self._id)["State"]["OOMKilled"])
        if oom:
            self._emit(
                "stderr",
                f"[minitower] the run ran out of memory (limit {self._memory_limit}, "
                "MINITOWER_DOCKER_MEMORY) and the kernel killed it",
            )
        if oom or signum in self._sent:
            return -signum
        return code

    def wait(self, timeout: float | None) -> int | None:
        return self._exit_code if self._exited.wait(timeout) else None

    def _signal(self, signum: signal.Signals) -> None:
        if self._exited.is_set():
            return
        self._sent.add(signum)
        with suppress(DockerException, OSError):
            self._api.kill(self._id, signal=signum.name)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def finish(self, timeout: float) -> None:
        self.kill()
        self._exited.wait(timeout)
        # The output stream ends with the container; should the engine keep it open,
        # hanging up ends it.
        self._threads[0].join(timeout)
        _hang_up(self._attached)
        for thread in self._threads:
            thread.join(timeout)
        with suppress(DockerException, OSError):
            self._api.remove_container(self._id, force=True)


@dataclass(frozen=True)
class PreparedContainer:
    executor: "DockerExecutor"
    spec: RunSpec

    def start(self, emit: Emit, on_exit: Callable[[], None]) -> ContainerWorkload:
        return self.executor.start(self.spec, emit, on_exit)


class DockerExecutor:
    def __init__(self, settings: RunnerSettings, runner_name: str, index: IndexOptions) -> None:
        self._settings = settings
        self._runner_name = runner_name
        self._index = index
        self._uid, self._gid = _ids(settings.docker_user)
        try:
            self._client = docker.from_env()
            self._client.ping()
        except DockerException as exc:
            raise DockerUnavailable(f"no Docker engine answers ({exc})") from exc
        self._api = self._client.api

    def prepare(
        self, spec: RunSpec, emit: Emit, should_stop: Callable[[], bool]
    ) -> PreparedContainer:
        """Checks the image (quick; the venv is built inside the container at start)."""
        interpreter_for(spec.entrypoint)
        try:
            self._client.images.get(self._settings.runner_image)
        except ImageNotFound:
            raise EnvironmentBuildError(
                f"the run image {self._settings.runner_image!r} is not on this host: build it "
                "(deploy/offline/) or pull it, or set MINITOWER_RUNNER_IMAGE"
            ) from None
        except DockerException as exc:
            raise EnvironmentBuildError(f"the Docker engine failed: {exc}") from exc
        return PreparedContainer(self, spec)

    def start(self, spec: RunSpec, emit: Emit, on_exit: Callable[[], None]) -> ContainerWorkload:
        settings = self._settings
        has_requirements = (spec.app_dir / "requirements.txt").is_file()
        env = workload_environment(
            spec,
            home=HOME_DIR,
            python_path=[f"{APP_DIR}/{p}" for p in spec.import_paths],
            path_prefix=[f"{VENV_DIR}/bin"],
            base={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        env.update({"VIRTUAL_ENV": VENV_DIR, "TMPDIR": HOME_DIR})
        # The container's init (tini) then signals the whole process group, as the process
        # executor does; the script unsets it before the entrypoint starts.
        env[TINI_GROUP] = "1"
        host_config = self._api.create_host_config(
            init=True,
            network_mode=settings.docker_network,
            mem_limit=settings.docker_memory,
            memswap_limit=settings.docker_memory,  # the limit, not twice it with swap
            nano_cpus=int(settings.docker_cpus * 1e9),
            pids_limit=settings.docker_pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={settings.docker_tmp_size},mode=1777"},  # noqa: S108
            # The output reaches the runner over the attach stream; what the engine keeps
            # for `docker logs` (while the container exists) must not fill its disk.
            log_config=LogConfig(
                type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "1"}
            ),
        )
        workspace = workspace_tar(spec.app_dir, self._uid, self._gid)
        script = container_script(spec, has_requirements, self._index, len(workspace))
        container = self._api.create_container(
            settings.runner_image,
            command=["/bin/sh", "-c", script],
            user=settings.docker_user,
            # Not APP_DIR: the engine would create it, as root, before the workspace
            # arrives (the script changes into it).
            working_dir="/tmp",  # noqa: S108
            environment=env,
            labels={
                LABEL_RUNNER: self._runner_name,
                "minitower.run_id": str(spec.run_id),
                "minitower.attempt_no": str(spec.attempt_no),
            },
            stdin_open=True,  # and, as the container is not detached, stdin_once
            host_config=host_config,
            # Proxy settings from the runner's Docker config may carry credentials.
            use_config_proxy=False,
        )
        container_id = container["Id"]
        attached: Any = None
        try:
            # Attached before the start: no output is missed, and stdin (held by this
            # process alone) stays open for the watchdog exactly as long as the runner lives.
            attached = self._api.attach_socket(
                container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            # The engine's client times requests out; this stream stays silent at will.
            _raw_socket(attached).settimeout(None)
            self._api.start(container_id)
            _raw_socket(attached).sendall(workspace)
        except BaseException:
            if attached is not None:
                _hang_up(attached)
            with suppress(DockerException):
                self._api.remove_container(container_id, force=True)
            raise
        log.info(
            "container started",
            extra={
                "run_id": spec.run_id,
                "attempt_no": spec.attempt_no,
                "container": container_id[:12],
            },
        )
        return ContainerWorkload(
            self._api, container_id, attached, emit, on_exit, settings.docker_memory
        )

    def bind(self, *, shared: bool) -> None:
        """Every run gets a container of its own: any binding is kept apart."""

    def remove_leftovers(self) -> None:
        """Removes the containers of this runner's name: its watchdog has stopped those of
        a runner that died; one that died between create and start left one never run."""
        try:
            leftovers = self._api.containers(
                all=True, filters={"label": f"{LABEL_RUNNER}={self._runner_name}"}
            )
        except DockerException as exc:
            log.warning(
                "could not list containers left by a previous runner", extra={"error": str(exc)}
            )
            return
        for container in leftovers:
            with suppress(DockerException, OSError):
                self._api.remove_container(container["Id"], force=True)
                log.warning(
                    "removed a container left by a previous runner",
                    extra={"container": container["Id"][:12]},
                )
