"""The Docker executor's pieces that need no engine: the container's script, the workspace
archive, and a container workload driven by a fake engine over a socket pair."""

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from minitower_runner.docker_executor import ContainerWorkload, container_script, workspace_tar
from minitower_runner.venvs import IndexOptions
from minitower_runner.workload import RunSpec


def spec(entrypoint: str = "main.py", app_dir: Path = Path("/nonexistent")) -> RunSpec:
    return RunSpec(
        run_id=1,
        run_no=1,
        attempt_no=1,
        app_slug="app",
        version_no=1,
        entrypoint=entrypoint,
        input={},
        import_paths=[],
        app_dir=app_dir,
    )


@pytest.mark.parametrize("has_requirements", [False, True])
def test_the_script_parses_and_keeps_the_watchdog_apart(has_requirements: bool) -> None:
    script = container_script(
        spec("my app.py"), has_requirements, IndexOptions(find_links="/wheels", no_index=True)
    )
    sh = shutil.which("dash") or "/bin/sh"
    subprocess.run([sh, "-n", "-c", script], check=True)
    # The workspace arrives first, on stdin; the watchdog only then takes stdin over.
    receive = script.index("|| exit 125\n")
    lines = script[receive:].splitlines()[1:]
    assert lines.pop(0) == "cd /tmp/minitower/app"
    assert lines[0] == "exec 3<&0"
    # POSIX kill syntax (dash rejects `kill -s KILL -1`), and deaf to tini's SIGTERM.
    assert lines[1] == "(trap '' TERM; cat <&3 >/dev/null; kill -s KILL -- -1) &"
    assert "unset TINI_KILL_PROCESS_GROUP" in lines
    assert lines[-1] == "exec /tmp/minitower/venv/bin/python -u 'my app.py' </dev/null 3<&-"
    if has_requirements:
        assert "--no-index --find-links /wheels" in script
    else:
        assert "python3 -m venv --without-pip /tmp/minitower/venv" in lines


def test_a_shell_entrypoint_runs_with_sh() -> None:
    script = container_script(spec("run.sh"), False, IndexOptions())
    assert script.splitlines()[-1] == "exec /bin/sh run.sh </dev/null 3<&-"


def test_the_workspace_archive_is_owned_by_the_run_user(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "main.py").write_text("print(1)\n")
    (tmp_path / "pkg" / "m.py").write_text("")
    with tarfile.open(fileobj=io.BytesIO(workspace_tar(tmp_path, 10001, 10002))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {
        "minitower",
        "minitower/home",
        "minitower/app",
        "minitower/app/main.py",
        "minitower/app/pkg",
        "minitower/app/pkg/m.py",
    }
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(10001, 10002, "", "")}
    assert members["minitower/home"].isdir() and members["minitower/app/main.py"].isfile()


class FakeEngine:
    """Answers the calls a ContainerWorkload makes; ``exit(code)`` ends the container."""

    def __init__(self, oom: bool = False) -> None:
        self.oom = oom
        self.code = 0
        self.exited = threading.Event()
        self.killed: list[str] = []
        self.removed: list[str] = []

    def wait(self, container_id: str) -> dict[str, int]:
        self.exited.wait(10)
        return {"StatusCode": self.code}

    def kill(self, container_id: str, signal: str) -> None:
        self.killed.append(signal)

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"State": {"OOMKilled": self.oom}}

    def remove_container(self, container_id: str, force: bool) -> None:
        self.removed.append(container_id)


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def start(engine: FakeEngine) -> tuple[ContainerWorkload, socket.socket, list[tuple[str, str]]]:
    ours, theirs = socket.socketpair()
    lines: list[tuple[str, str]] = []
    workload = ContainerWorkload(
        engine, "c0ffee", ours, lambda s, line: lines.append((s, line)), lambda: None, "1g"
    )
    return workload, theirs, lines


def test_output_is_demultiplexed_and_the_container_removed() -> None:
    engine = FakeEngine()
    workload, theirs, lines = start(engine)
    theirs.sendall(frame(1, b"out 1\nout") + frame(2, b"err 1\n") + frame(1, b" 2\n"))
    assert workload.wait(0.05) is None
    engine.code = 3
    theirs.close()
    engine.exited.set()
    assert workload.wait(5) == 3
    workload.finish(5)
    assert [x for x in lines if x[0] == "stdout"] == [("stdout", "out 1"), ("stdout", "out 2")]
    assert [x for x in lines if x[0] == "stderr"] == [("stderr", "err 1")]
    assert engine.killed == []  # nothing to kill once it has exited
    assert engine.removed == ["c0ffee"]


@pytest.mark.parametrize(
    ("sent", "code", "oom", "reported"),
    [
        ([], 143, False, 143),  # the workload's own `exit 143`
        (["terminate"], 143, False, -signal.SIGTERM),  # tini: child killed by SIGTERM
        (["terminate", "kill"], 137, False, -signal.SIGKILL),  # the engine killed tini
        (["terminate"], 0, False, 0),  # it handled SIGTERM and exited cleanly
        ([], 137, True, -signal.SIGKILL),  # the OOM killer
    ],
)
def test_exit_codes_read_as_the_process_executor_reports_them(
    sent: list[str], code: int, oom: bool, reported: int
) -> None:
    engine = FakeEngine(oom=oom)
    workload, theirs, lines = start(engine)
    for name in sent:
        getattr(workload, name)()
    engine.code = code
    theirs.close()
    engine.exited.set()
    assert workload.wait(5) == reported
    workload.finish(5)
    assert any("ran out of memory" in line for _, line in lines) == oom


def test_finish_hangs_up_a_stream_the_engine_keeps_open() -> None:
    engine = FakeEngine()
    workload, theirs, _ = start(engine)
    engine.exited.set()
    assert workload.wait(5) == 0
    workload.finish(0.5)  # returns although the other end never closed
    assert theirs.recv(1) == b""  # and the engine sees the hang-up (stdin closes)
    theirs.close()


def test_the_workspace_is_received_from_stdin_and_the_rest_left_for_the_watchdog(
    tmp_path: Path,
) -> None:
    """Exactly the announced bytes are unpacked; what follows on stdin (the watchdog's
    stream) is not consumed by the receiver."""
    from minitower_runner.docker_executor import RECEIVE_WORKSPACE

    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print(1)\n")
    workspace = workspace_tar(app, os.getuid(), os.getgid())
    target = tmp_path / "unpacked"
    target.mkdir()
    script = RECEIVE_WORKSPACE.replace('"/tmp"', repr(str(target)))
    done = subprocess.run(
        [
            "python3",
            "-c",
            f"{script}\nimport sys; sys.stdout.buffer.write(sys.stdin.buffer.read())",
            str(len(workspace)),
        ],
        input=workspace + b"after",
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert (target / "minitower" / "app" / "main.py").read_text() == "print(1)\n"
    assert done.stdout == b"after"
    short = subprocess.run(
        ["python3", "-c", script, str(len(workspace) + 10)],
        input=workspace,
        capture_output=True,
        timeout=30,
    )
    assert short.returncode != 0 and b"the workspace did not arrive" in short.stderr


class _RecordingEngine:
    """The low-level API client, as far as a container's creation: records it, stops there."""

    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, Any]:
        self.created = {"image": image, **kwargs}
        raise RuntimeError("recorded")


def test_secrets_go_in_the_containers_environment_never_its_command(tmp_path: Path) -> None:
    from minitower_runner.docker_executor import DockerExecutor
    from minitower_runner.settings import RunnerSettings

    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("")
    executor = object.__new__(DockerExecutor)
    engine = _RecordingEngine()
    executor._settings = RunnerSettings(data_dir=tmp_path / "data")
    executor._runner_name = "r"
    executor._index = IndexOptions()
    executor._uid, executor._gid = 10001, 10001
    executor._api = engine
    run = RunSpec(**{**spec(app_dir=app).__dict__, "secrets": {"DB_URL": "docker-secret-1f"}})
    with pytest.raises(RuntimeError, match="recorded"):
        executor.start(run, lambda _stream, _line: None, lambda: None)
    assert engine.created["environment"]["DB_URL"] == "docker-secret-1f"
    assert "docker-secret-1f" not in repr(engine.created["command"])
    assert "docker-secret-1f" not in repr(engine.created["labels"])
