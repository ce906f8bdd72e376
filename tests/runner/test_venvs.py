"""The venv cache: one build per distinct requirements (and Python), shared by threads,
processes and runners, installs from an operator's wheelhouse with no index, clear
errors, nothing half-built left behind."""

import fcntl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from minitower_runner.venvs import (
    READY_MARKER,
    EnvironmentBuildError,
    IndexOptions,
    VenvCache,
    find_uv,
)
from tests.support.runner_stack import Stack
from tests.support.wheels import make_wheel

OFFLINE = "MINITOWER_PIP_NO_INDEX"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(folder, "tinypkg", "1.0", "GREETING = 'hello from tinypkg'\n")
    return folder


def requirements(folder: Path, text: str) -> Path:
    path = folder / "requirements.txt"
    path.write_text(text)
    return path


def test_one_build_per_requirements_and_reuse(tmp_path: Path, wheelhouse: Path) -> None:
    cache = VenvCache(
        tmp_path / "venvs",
        uv=find_uv(),
        index=IndexOptions(find_links=str(wheelhouse), no_index=True),
    )
    lines: list[str] = []
    bare = cache.get(None, lines.append)
    assert cache.get(None, lines.append) == bare
    with_pkg = cache.get(requirements(tmp_path, "tinypkg==1.0\n"), lines.append)
    assert with_pkg != bare
    assert cache.get(requirements(tmp_path, "tinypkg==1.0\n"), lines.append) == with_pkg
    assert cache.builds == 2
    out = subprocess.run(
        [with_pkg / "bin" / "python", "-c", "import tinypkg; print(tinypkg.GREETING)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "hello from tinypkg"
    assert (with_pkg / READY_MARKER).exists()


def test_concurrent_first_builds_happen_once(tmp_path: Path, wheelhouse: Path) -> None:
    """Eight threads over two cache objects (as two runner processes would have) on one
    directory: the flock lets exactly one build."""
    index = IndexOptions(find_links=str(wheelhouse), no_index=True)
    caches = [VenvCache(tmp_path / "venvs", uv=find_uv(), index=index) for _ in range(2)]
    req = requirements(tmp_path, "tinypkg\n")
    results: list[Path] = []
    barrier = threading.Barrier(8)

    def get(cache: VenvCache) -> None:
        barrier.wait()
        results.append(cache.get(req, lambda _line: None))

    threads = [threading.Thread(target=get, args=(caches[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 8 and len(set(results)) == 1
    assert sum(cache.builds for cache in caches) == 1


def test_failed_install_is_clear_and_leaves_nothing(tmp_path: Path, wheelhouse: Path) -> None:
    cache = VenvCache(
        tmp_path / "venvs",
        uv=find_uv(),
        index=IndexOptions(find_links=str(wheelhouse), no_index=True),
    )
    lines: list[str] = []
    req = requirements(tmp_path, "no-such-package-anywhere==9.9\n")
    with pytest.raises(EnvironmentBuildError, match="preparing the environment failed"):
        cache.get(req, lines.append)
    assert any("no-such-package-anywhere" in line for line in lines)
    assert not (cache.root / cache.key(req.read_bytes())).exists()


def test_half_built_venv_is_rebuilt(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "venvs", uv=find_uv())
    path = cache.root / cache.key(None)
    path.mkdir()
    (path / "junk").write_text("a build that died")
    assert cache.get(None, lambda _line: None) == path
    assert not (path / "junk").exists() and (path / READY_MARKER).exists()


@pytest.mark.slow
def test_without_uv_pip_builds_from_the_wheelhouse(tmp_path: Path, wheelhouse: Path) -> None:
    cache = VenvCache(
        tmp_path / "venvs", uv=None, index=IndexOptions(find_links=str(wheelhouse), no_index=True)
    )
    lines: list[str] = []
    venv = cache.get(requirements(tmp_path, "tinypkg==1.0\n"), lines.append)
    assert "installing requirements.txt with pip" in lines
    subprocess.run([venv / "bin" / "python", "-c", "import tinypkg"], check=True)


@pytest.mark.slow
def test_runs_of_one_version_share_one_build(stack: Stack, wheelhouse: Path) -> None:
    """Two runners on one host share the cache: two concurrent first runs and a third
    later one, one build among them."""
    stack.deploy(
        "needs-pkg",
        {
            # Content unique to this test, so the session-wide cache has no such venv yet.
            "requirements.txt": f"tinypkg==1.0  # {stack.environment}\n",
            "main.py": "import tinypkg, time\ntime.sleep(0.5)\nprint(tinypkg.GREETING)\n",
        },
    )
    env = {"MINITOWER_PIP_FIND_LINKS": str(wheelhouse), OFFLINE: "true"}
    stack.runner("runner-a", **env)
    stack.runner("runner-b", **env)
    stack.wait_runners({"runner-a", "runner-b"})
    first = [stack.start_run("needs-pkg") for _ in range(2)]
    runs = [stack.wait_status(run_id) for run_id in first]
    assert [r["status"] for r in runs] == ["completed", "completed"], runs
    assert {a["runner_name"] for r in first for a in stack.attempts(r)} == {
        "runner-a",
        "runner-b",
    }
    later = stack.wait_status(stack.start_run("needs-pkg"))
    assert later["status"] == "completed"
    builds = [
        run_id
        for run_id in [*first, later["run_id"]]
        if any("installing requirements.txt" in line for line in stack.lines(run_id))
    ]
    assert len(builds) == 1
    for run_id in [*first, later["run_id"]]:
        assert stack.lines(run_id, "stdout") == ["hello from tinypkg"]


@pytest.mark.slow
def test_a_requirement_that_cannot_install_fails_the_run_clearly(stack: Stack) -> None:
    stack.deploy(
        "bad-reqs",
        {"requirements.txt": "no-such-package-anywhere==9.9\n", "main.py": "print('no')\n"},
    )
    stack.runner(**{OFFLINE: "true"})
    run = stack.wait_status(stack.start_run("bad-reqs"))
    assert run["status"] == "failed"
    assert "preparing the environment failed" in run["error_message"]
    assert any("no-such-package-anywhere" in line for line in stack.lines(run["run_id"]))


@pytest.mark.parametrize(
    "line", ["-r other.txt", "--requirement=x.txt", "-e .", "./localpkg", "file:///tmp/x.whl"]
)
def test_requirements_that_point_at_files_are_refused(tmp_path: Path, line: str) -> None:
    cache = VenvCache(tmp_path / "venvs", uv=find_uv())
    with pytest.raises(EnvironmentBuildError, match=r"line 2 .* refers to other files"):
        cache.get(requirements(tmp_path, f"requests\n{line}\n"), lambda _line: None)


def test_a_hung_build_stops_when_asked(tmp_path: Path) -> None:
    fake_uv = tmp_path / "uv"
    fake_uv.write_text("#!/bin/sh\necho building forever\nsleep 300\n")
    fake_uv.chmod(0o755)
    cache = VenvCache(tmp_path / "venvs", uv=str(fake_uv))
    lines: list[str] = []
    asked_at = time.monotonic()
    with pytest.raises(EnvironmentBuildError, match="stopped"):
        cache.get(None, lines.append, should_stop=lambda: time.monotonic() > asked_at + 0.5)
    assert time.monotonic() - asked_at < 5
    assert lines == ["building forever"]
    assert not (cache.root / cache.key(None)).exists()


def test_waiting_for_another_build_stops_when_asked(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "venvs", uv=find_uv())
    with (cache.root / f"{cache.key(None)}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        asked_at = time.monotonic()
        with pytest.raises(EnvironmentBuildError, match="waiting for a venv build"):
            cache.get(
                None, lambda _line: None, should_stop=lambda: time.monotonic() > asked_at + 0.3
            )


def test_venvs_are_keyed_by_team(tmp_path: Path) -> None:
    """One team's venv never serves another's, even for the same requirements: whatever
    a team's build put into it stays with that team."""
    cache = VenvCache(tmp_path / "venvs", uv=find_uv())
    req = tmp_path / "requirements.txt"
    req.write_text("")
    keys = {cache.key(b"", 1), cache.key(b"", 2), cache.key(b"")}
    assert len(keys) == 3
    first = cache.get(req, lambda _line: None, team_id=1)
    second = cache.get(req, lambda _line: None, team_id=2)
    assert first != second and cache.builds == 2
    assert cache.get(req, lambda _line: None, team_id=1) == first and cache.builds == 2
