"""Prepared Python environments, built once per distinct requirements and reused.

Creating a venv and installing into it is the dominant cost of a run, so environments
are cached under ``<data dir>/venvs/<key>``, where the key hashes the interpreter's
version and the exact bytes of ``requirements.txt``. A build holds an exclusive
``flock`` on ``<key>.lock`` (across threads and processes alike) and writes a marker
last, so a crashed build is detected and redone, and concurrent first runs build once.
Runs never write into a cached venv: each has its own workspace.
"""

import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger("minitower.runner")

READY_MARKER = ".minitower-ready"


class EnvironmentBuildError(Exception):
    """Creating the venv or installing the requirements failed; the message says how."""


@dataclass(frozen=True)
class IndexOptions:
    index_url: str | None = None
    extra_index_url: str | None = None
    find_links: str | None = None
    no_index: bool = False

    def args(self) -> list[str]:
        args: list[str] = ["--no-index"] if self.no_index else []
        for flag, value in (
            ("--index-url", self.index_url),
            ("--extra-index-url", self.extra_index_url),
            ("--find-links", self.find_links),
        ):
            if value:
                args += [flag, value]
        return args


# Options that point at files of the run's workspace, which is gone after the run: the
# cache, keyed by the text of requirements.txt alone, could not tell two such venvs apart.
_LOCAL_REFERENCE = re.compile(
    r"^\s*(-r|--requirement|-c|--constraint|-e|--editable)\b|^\s*(\.|/|file:)"
)


def check_requirements(content: bytes) -> None:
    """Refuse requirements that the cache cannot key by their text."""
    for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        if _LOCAL_REFERENCE.search(line):
            raise EnvironmentBuildError(
                f"requirements.txt line {number} ({line.strip()!r}) refers to other files; "
                "list packages by name and version (the runner caches venvs by the text of "
                "requirements.txt)"
            )


def find_uv() -> str | None:
    """The uv binary installed with the runner (the ``uv`` package), else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def _python_tag(python: str) -> str:
    probe = subprocess.run(
        [python, "-c", "import sys; print(sys.implementation.name, *sys.version_info[:3])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return probe.stdout.strip()


class VenvCache:
    def __init__(
        self,
        root: Path,
        *,
        python: str = sys.executable,
        uv: str | None = None,
        index: IndexOptions | None = None,
    ) -> None:
        self.root = root
        self.python = python
        self.uv = uv
        self.index = index or IndexOptions()
        # Wheels only: no package's build code runs as the runner (a shared runner's
        # builds would otherwise run one team's code with the runner's rights).
        self.wheels_only = False
        self._python_tag = _python_tag(python)
        self.builds = 0  # venvs this cache created (for tests and the bench)
        root.mkdir(parents=True, exist_ok=True)

    def key(self, requirements: bytes | None, team_id: int | None = None) -> str:
        """The interpreter, the requirements and the team: one team's venv never serves
        another's, so nothing a team put into one (through a build it controls) reaches
        another team's runs."""
        scope = b"" if team_id is None else f"\0team:{team_id}".encode()
        digest = hashlib.sha256(self._python_tag.encode() + scope + b"\0" + (requirements or b""))
        return digest.hexdigest()[:32]

    def get(
        self,
        requirements: Path | None,
        emit: Callable[[str], None],
        should_stop: Callable[[], bool] = lambda: False,
        team_id: int | None = None,
    ) -> Path:
        """The venv for ``requirements`` (a requirements.txt or None) of ``team_id``'s
        runs, built if needed;
        build output goes to ``emit`` line by line. Waiting for another build and
        building both give up (EnvironmentBuildError) once ``should_stop`` says so."""
        content = requirements.read_bytes() if requirements is not None else None
        if content is not None:
            check_requirements(content)
        path = self.root / self.key(content, team_id)
        if (path / READY_MARKER).exists():
            return path
        with (self.root / f"{path.name}.lock").open("w") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if should_stop():
                        raise EnvironmentBuildError(
                            "stopped while waiting for a venv build"
                        ) from None
                    time.sleep(0.1)
            if (path / READY_MARKER).exists():
                return path
            if path.exists():
                shutil.rmtree(path)  # a build that died half-way
            try:
                self._build(path, requirements, emit, should_stop)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            (path / READY_MARKER).touch()
            self.builds += 1
            return path

    def _build(
        self,
        path: Path,
        requirements: Path | None,
        emit: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> None:
        def run(command: list[str]) -> None:
            self._run(command, emit, should_stop)

        # Built in place, not renamed into place: venvs hold absolute paths.
        if self.uv is not None:
            run([self.uv, "venv", "--quiet", "--python", self.python, str(path)])
            if requirements is not None:
                emit(f"installing {requirements.name} with uv")
                run(
                    [
                        self.uv,
                        "pip",
                        "install",
                        "--python",
                        str(path / "bin" / "python"),
                        "-r",
                        str(requirements),
                        *(["--no-build"] if self.wheels_only else []),
                        *self.index.args(),
                    ]
                )
            return
        if requirements is None:
            run([self.python, "-m", "venv", "--without-pip", str(path)])
            return
        run([self.python, "-m", "venv", str(path)])
        emit(f"installing {requirements.name} with pip")
        run(
            [
                str(path / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
                *(["--only-binary", ":all:"] if self.wheels_only else []),
                *self.index.args(),
            ]
        )

    def _run(
        self, command: list[str], emit: Callable[[str], None], should_stop: Callable[[], bool]
    ) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("MINITOWER_") and key != "VIRTUAL_ENV"
        }
        env["UV_CACHE_DIR"] = str(self.root / ".uv-cache")
        output: list[str] = []
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None

        def pump(stream: IO[bytes]) -> None:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                output.append(line)
                emit(line)

        reader = threading.Thread(target=pump, args=(proc.stdout,), daemon=True)
        reader.start()
        try:
            while proc.poll() is None:
                if should_stop():
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise EnvironmentBuildError("the environment build was stopped")
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(0.1)
        finally:
            reader.join(5)
            proc.stdout.close()
        if proc.returncode != 0:
            last = output[-1] if output else "no output"
            raise EnvironmentBuildError(
                f"preparing the environment failed ({Path(command[0]).name} exited "
                f"{proc.returncode}): {last}"
            )
