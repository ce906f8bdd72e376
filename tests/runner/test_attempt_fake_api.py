"""One attempt against a fake control plane (httpx.MockTransport), with a real workload:
what the runner does when the API says 410, asks for a cancel at start, or serves an
artifact that is not what the lease announced; and the runner's artifact cache."""

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from minitower_runner.artifacts import ArtifactCache
from minitower_runner.attempt import Attempt, Finished
from minitower_runner.client import ApiClient, LeaseClock
from minitower_runner.process_executor import ProcessExecutor
from minitower_runner.settings import RunnerSettings
from minitower_runner.venvs import VenvCache, find_uv
from minitower_shared.clock import rfc3339
from minitower_shared.schemas import LeaseGranted
from tests.support.archives import make_archive
from tests.support.proctree import alive
from tests.support.waiting import wait_for

RUN_ID = 7
# Prints its pids, then a line every 50 ms, so that log batches keep going out.
SLEEPER = """\
import os, subprocess, time
child = subprocess.Popen(["sleep", "300"])
print(f"pids {os.getpid()} {child.pid}", flush=True)
for i in range(6000):
    print(f"tick {i}", flush=True)
    time.sleep(0.05)
"""


@dataclass
class FakeApi:
    """Answers the runner endpoints of one run; ``gone_on`` names the endpoint that
    starts answering 410 after ``gone_after`` calls."""

    archive: bytes
    gone_on: str | None = None
    gone_after: int = 0
    cancel_at_start: bool = False
    announced_sha: str | None = None
    calls: list[str] = field(default_factory=list)
    log_lines: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        action = request.url.path.rsplit("/", 1)[1]
        with self.lock:
            self.calls.append(action)
            count = self.calls.count(action)
        if action == self.gone_on and count > self.gone_after:
            return httpx.Response(410, json={"error": {"code": "gone", "message": "gone"}})
        expires = rfc3339(datetime.now(UTC) + timedelta(seconds=30))
        if action == "start":
            return httpx.Response(
                200,
                json={
                    "attempt_no": 1,
                    "status": "running",
                    "lease_expires_at": expires,
                    "cancel_requested": self.cancel_at_start,
                },
            )
        if action == "artifact":
            sha = self.announced_sha or hashlib.sha256(self.archive).hexdigest()
            return httpx.Response(200, content=self.archive, headers={"X-Artifact-SHA256": sha})
        if action == "heartbeat":
            return httpx.Response(
                200, json={"lease_expires_at": expires, "cancel_requested": False}
            )
        if action == "logs":
            with self.lock:
                self.log_lines.extend(json.loads(request.content)["logs"])
            return httpx.Response(200, json={"accepted": 1})
        if action == "result":
            body = json.loads(request.content)
            self.results.append(body)
            with self.lock:
                self.log_lines.extend(body.get("logs", []))
            return httpx.Response(
                200,
                json={
                    "run_id": RUN_ID,
                    "attempt_no": 1,
                    "status": body["status"],
                    "run_status": body["status"],
                },
            )
        return httpx.Response(404, json={"error": {"code": "not_found", "message": action}})

    def printed_pids(self) -> list[int] | None:
        with self.lock:
            for entry in self.log_lines:
                if entry["line"].startswith("pids "):
                    return [int(p) for p in entry["line"].split()[1:]]
        return None


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessExecutor]:
    executor = ProcessExecutor(VenvCache(tmp_path_factory.mktemp("venvs"), uv=find_uv()))
    yield executor
    executor.close()  # its launcher, which this process would otherwise keep until it exits


@pytest.fixture
def settings(tmp_path: Path) -> RunnerSettings:
    return RunnerSettings(
        data_dir=tmp_path,
        heartbeat_interval=0.2,
        log_flush_interval=0.05,
        kill_grace_period=1,
        request_timeout=5,
    )


def attempt_against(
    fake: FakeApi,
    settings: RunnerSettings,
    executor: ProcessExecutor,
    entrypoint: str,
    *,
    started: bool = False,
) -> Attempt:
    grant = LeaseGranted(
        run_id=RUN_ID,
        run_no=1,
        app_id=1,
        app_slug="fake",
        version_no=1,
        entrypoint=entrypoint,
        timeout_seconds=60,
        input={},
        import_paths=[],
        artifact_sha256=hashlib.sha256(fake.archive).hexdigest(),
        attempt_id=1,
        attempt_no=1,
        lease_token="mtl_fake",
        lease_expires_at=datetime.now(UTC) + timedelta(seconds=30),
        started=started,
    )
    client = ApiClient("http://fake", timeout=5, transport=httpx.MockTransport(fake))
    client.token = "mtr_fake"
    (settings.data_dir / "work").mkdir(exist_ok=True)
    return Attempt(
        grant,
        LeaseClock(deadline=time.monotonic() + 30),
        client=client,
        executor=executor,
        settings=settings,
        work_root=settings.data_dir / "work",
        artifacts=ArtifactCache(settings.artifacts_dir, settings.artifact_cache_mb << 20),
        drain_started=lambda: None,
    )


def run_until_fenced(fake: FakeApi, settings: RunnerSettings, executor: ProcessExecutor) -> None:
    attempt = attempt_against(fake, settings, executor, "main.py")
    outcome: list[Finished] = []
    worker_started = time.monotonic()
    # The attempt runs on this (the main) thread, as in the runner; the pids are read
    # from the fake's log lines once the workload has printed them.
    watcher_pids: list[list[int]] = []

    def watch() -> None:
        watcher_pids.append(
            wait_for(fake.printed_pids, timeout=30, what="the workload's pids", interval=0.02)
        )

    watcher = threading.Thread(target=watch)
    watcher.start()
    outcome.append(attempt.run())
    watcher.join()
    assert outcome == [Finished(None)]
    assert time.monotonic() - worker_started < 20
    assert fake.results == [], "a fenced attempt must report nothing"
    assert "result" not in fake.calls
    for pid in watcher_pids[0]:
        assert not alive(pid), "the workload outlived its lease"
    assert list((settings.data_dir / "work").iterdir()) == []  # workspace removed


def test_410_on_heartbeat_stops_the_workload_and_reports_nothing(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": SLEEPER}), gone_on="heartbeat", gone_after=3)
    run_until_fenced(fake, settings, executor)
    assert fake.calls.count("heartbeat") == 4


def test_410_on_logs_stops_the_workload_and_reports_nothing(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": SLEEPER}), gone_on="logs", gone_after=3)
    run_until_fenced(fake, settings, executor)
    assert fake.calls.count("logs") == 4


def test_cancel_requested_at_start_reports_cancelled_without_running(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": "print('must not run')\n"}), cancel_at_start=True)
    result = attempt_against(fake, settings, executor, "main.py").run()
    assert result.status == "cancelled"
    assert "artifact" not in fake.calls
    assert [r["status"] for r in fake.results] == ["cancelled"]


def test_artifact_checksum_mismatch_fails_the_run_without_running_it(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": "print('must not run')\n"}), announced_sha="0" * 64)
    result = attempt_against(fake, settings, executor, "main.py").run()
    assert result.status == "failed"
    assert result.error_message is not None and "SHA-256 mismatch" in result.error_message
    assert [r["status"] for r in fake.results] == ["failed"]
    assert not any("must not run" in line["line"] for line in fake.log_lines)
    assert any("SHA-256 mismatch" in line["line"] for line in fake.log_lines)


def test_unsafe_artifact_is_refused(settings: RunnerSettings, executor: ProcessExecutor) -> None:
    fake = FakeApi(make_archive({"../escape.py": "print('x')\n", "main.py": ""}))
    result = attempt_against(fake, settings, executor, "main.py").run()
    assert result.status == "failed"
    assert result.error_message is not None and "artifact refused" in result.error_message
    assert not (settings.data_dir / "escape.py").exists()


def cached_archives(settings: RunnerSettings) -> list[Path]:
    return sorted(settings.artifacts_dir.glob("*/*.tar.gz"))


def test_a_verified_artifact_is_downloaded_once_per_runner(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": "print('hello from the app')\n"}))
    first = attempt_against(fake, settings, executor, "main.py").run()
    second = attempt_against(fake, settings, executor, "main.py").run()
    assert [first.status, second.status] == ["completed", "completed"]
    assert fake.calls.count("artifact") == 1
    assert [line["line"] for line in fake.log_lines].count("hello from the app") == 2
    (cached,) = cached_archives(settings)
    assert cached.read_bytes() == fake.archive
    assert cached.parent.stat().st_mode & 0o077 == 0
    assert settings.artifacts_dir.stat().st_mode & 0o077 == 0


def test_a_cached_artifact_changed_on_disk_is_downloaded_again(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": "print('the real app')\n"}))
    assert attempt_against(fake, settings, executor, "main.py").run().status == "completed"
    (cached,) = cached_archives(settings)
    cached.write_bytes(make_archive({"main.py": "print('tampered')\n"}))
    assert attempt_against(fake, settings, executor, "main.py").run().status == "completed"
    assert fake.calls.count("artifact") == 2
    lines = [line["line"] for line in fake.log_lines]
    assert lines.count("the real app") == 2 and "tampered" not in lines
    assert cached.read_bytes() == fake.archive


def test_an_artifact_that_fails_its_checksum_is_not_cached(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": "print('x')\n"}), announced_sha="0" * 64)
    assert attempt_against(fake, settings, executor, "main.py").run().status == "failed"
    assert cached_archives(settings) == []


def test_the_cache_can_be_turned_off(tmp_path: Path, executor: ProcessExecutor) -> None:
    settings = RunnerSettings(data_dir=tmp_path, artifact_cache_mb=0, request_timeout=5)
    fake = FakeApi(make_archive({"main.py": "print('x')\n"}))
    for _ in range(2):
        assert attempt_against(fake, settings, executor, "main.py").run().status == "completed"
    assert fake.calls.count("artifact") == 2
    assert cached_archives(settings) == []


def test_a_grant_started_on_lease_needs_no_start_call_and_its_last_lines_go_with_the_result(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    fake = FakeApi(make_archive({"main.py": "print('one')\nprint('two')\n"}))
    result = attempt_against(fake, settings, executor, "main.py", started=True).run()
    assert result.status == "completed"
    assert fake.calls == ["artifact", "result"]
    (report,) = fake.results
    assert [(line["seq"], line["line"]) for line in report["logs"]] == [(1, "one"), (2, "two")]


def test_a_grant_not_started_on_lease_is_started_and_its_lines_go_on_their_own(
    settings: RunnerSettings, executor: ProcessExecutor
) -> None:
    """What the runner does with an API from before starting on lease."""
    fake = FakeApi(make_archive({"main.py": "print('one')\n"}))
    result = attempt_against(fake, settings, executor, "main.py").run()
    assert result.status == "completed"
    assert fake.calls[:2] == ["start", "artifact"] and fake.calls[-1] == "result"
    assert "logs" in fake.calls
    assert "logs" not in fake.results[0]
