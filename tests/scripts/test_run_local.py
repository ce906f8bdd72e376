"""The README's quickstart command, ``scripts/run-local``: the whole local stack comes
up, runs an app, and Ctrl-C takes every process down with it."""

import os
import re
import signal
import stat
import subprocess
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import TeamClient
from tests.support.processes import free_port
from tests.support.proctree import children_of, wait_gone
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def console_report(run_id: int) -> re.Pattern[str]:
    """The runner's line for the run's report, in the console format."""
    return re.compile(
        rf"^\d\d:\d\d:\d\d\.\d{{3}} info    runner reported runner=local-\d "
        rf"run_id={run_id} attempt_no=1 status=completed ",
        re.M,
    )


def read_secret(state: Path, name: str) -> str:
    for line in (state / "secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{name} not in secrets.env")


def test_run_local_serves_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    log = (tmp_path / "run-local.log").open("wb")
    env = {
        **os.environ,
        "MINITOWER_LOCAL_STATE": str(state),
        "MINITOWER_LISTEN_ADDR": f"127.0.0.1:{port}",
        "MINITOWER_LOCAL_RUNNERS": "2",
    }
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run-local")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, what="the local API")
        with httpx.Client(base_url=url, timeout=45) as http:
            team = TeamClient.bootstrap(
                http, "acme", read_secret(state, "MINITOWER_BOOTSTRAP_TOKEN")
            )
            team.deploy(
                "hello",
                make_archive(
                    {
                        "Towerfile": HELLO_TOWERFILE,
                        "main.py": "import os\nprint(os.environ['greeting'])\n",
                    }
                ),
            )
            run_id = team.create_run("hello")["run_id"]
            run = wait_for(
                lambda: (r := team.run(run_id))["status"] in {"completed", "failed"} and r,
                timeout=60,
                what="the local runners to finish the run",
            )
            assert run["status"] == "completed", (tmp_path / "run-local.log").read_text()
            body = team.get(f"/api/v1/runs/{run_id}/logs").json()
            assert [line["line"] for line in body["logs"]] == ["hello"]
            # The banner names the console, which the same server answers at /.
            banner = (tmp_path / "run-local.log").read_text()
            assert f"Console:            {url}/" in banner
            assert httpx.get(f"{url}/signin").status_code == 200
            # The secrets key: made once in the state folder, private, the API's alone.
            key_file = state / "secrets-key"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            put = http.put(
                "/api/v1/secrets/DB_URL",
                json={"value": "local-secret-value"},
                headers=team.headers,
            )
            assert put.status_code == 201, put.text
            # One terminal for every process: the console format, for people.
            wait_for(
                lambda: console_report(run_id).search((tmp_path / "run-local.log").read_text()),
                timeout=10,
                what="the runner's console line for the run",
            )
            wait_for(
                lambda: (
                    {r["name"] for r in team.get("/api/v1/admin/runners").json()["runners"]}
                    == {"local-1", "local-2"}
                ),
                timeout=30,
                what="both local runners to register",
            )
        stack = children_of(proc.pid)
        assert len(stack) >= 5  # API, reaper, scheduler, two runners
        key = key_file.read_text().strip().encode()
        runners = [
            pid for pid in stack if b"minitower-runner" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(runners) == 2
        assert all(key not in Path(f"/proc/{pid}/environ").read_bytes() for pid in runners)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) in (0, 130)
        wait_gone(stack, timeout=10)
    finally:
        # Whatever happened above, nothing of the stack may outlive the test.
        for pid in children_of(proc.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
