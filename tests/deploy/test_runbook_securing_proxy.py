"""deploy/runbooks/securing.md's TLS proxy: the runbook's self-signed certificate and
its nginx configuration (deploy/proxy/minitower.nginx.conf) in front of a live
``minitowerd`` and runner, all on free ports of 127.0.0.1. Through the proxy: /ready and
an authenticated call over verified TLS, plain HTTP refused, an upload over nginx's
default 1 MiB body limit, and a log stream whose lines arrive while the run is running
(not buffered until it ends)."""

import os
import secrets
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.archives import make_archive
from tests.support.clients import TeamClient, check
from tests.support.docker_engine import docker_prerequisite_missing
from tests.support.processes import LiveApi, fast_runner_env, free_port, start_runner
from tests.support.runbooks import run_step
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.waiting import wait_for

STREAMING_APP = (
    "import time\nprint('first line', flush=True)\ntime.sleep(4)\nprint('last line', flush=True)\n"
)


def _main_config(folder: Path, conf_dir: Path) -> Path:
    """What Debian's /etc/nginx/nginx.conf gives the site file, in ``folder``."""
    lines = [
        f"pid {folder}/nginx.pid;",
        f"error_log {folder}/error.log warn;",
        "events { worker_connections 64; }",
        "http {",
        "    access_log off;",
        *(
            f"    {kind}_temp_path {folder}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        f"    include {conf_dir}/*.conf;",
        "}",
    ]
    # Workers run as the master's user here, so they can use the test's folders.
    if os.geteuid() == 0:
        lines.insert(0, "user root;")
    main = folder / "nginx.conf"
    main.write_text("\n".join(lines) + "\n")
    return main


@pytest.fixture
def api(make_live_api: Callable[[dict[str, str]], LiveApi]) -> LiveApi:
    return make_live_api({"MINITOWER_LEASE_POLL_INTERVAL": "0.1s"})


def _wait_listening(port: int, proxy: subprocess.Popen[bytes], log: Path) -> None:
    def listening() -> bool:
        assert proxy.poll() is None, f"nginx exited:\n{log.read_text(errors='replace')}"
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=20, what="nginx to listen")


def test_tls_proxy_from_the_runbook(api: LiveApi, tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        docker_prerequisite_missing(
            "nginx not found: install it with scripts/install-nginx (as root)"
        )
    tls_dir, conf_dir, proxy_dir = tmp_path / "tls", tmp_path / "conf.d", tmp_path / "nginx"
    conf_dir.mkdir()
    proxy_dir.mkdir()
    port = free_port()
    main = _main_config(proxy_dir, conf_dir)
    env = {
        "TLS_DIR": str(tls_dir),
        "TLS_HOST": "localhost",
        "NGINX_CONF_DIR": str(conf_dir),
        "NGINX_MAIN_CONF": str(main),
        "PROXY_LISTEN": f"127.0.0.1:{port}",
        "PROXY_PORT": str(port),
        "MINITOWER_UPSTREAM": api.url.removeprefix("http://"),
    }
    cert = run_step("securing", "make-self-signed-cert", env=env).stdout
    assert "subject=CN = localhost" in cert and "notAfter=" in cert
    assert (tls_dir / "minitower.key").stat().st_mode & 0o777 == 0o600
    checked = run_step("securing", "proxy-install-config", env=env)
    assert "test is successful" in checked.stderr

    log = proxy_dir / "foreground.log"
    with log.open("wb") as out:
        proxy = subprocess.Popen(
            [nginx, "-c", str(main), "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_listening(port, proxy, log)
        with api.client() as http:
            team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
        verified = run_step(
            "securing", "proxy-verify", env={**env, "MINITOWER_API_TOKEN": team.token}
        )
        lines = verified.stdout.splitlines()
        assert lines[0].startswith('{"status":"ok"'), verified.stdout
        assert '"team_slug":"acme"' in lines[1] and '"role":"admin"' in lines[1]
        assert lines[2] == "plain HTTP on the TLS port: 400"
        _through_the_proxy(
            f"https://localhost:{port}", tls_dir / "minitower.crt", team, api, tmp_path
        )
    finally:
        proxy.terminate()
        proxy.wait(10)


def _through_the_proxy(
    url: str, cacert: Path, admin: TeamClient, api: LiveApi, tmp_path: Path
) -> None:
    runner = start_runner(
        tmp_path,
        api.url,
        "worker-1",
        fast_runner_env("default", tmp_path / "venvs", REGISTRATION_TOKEN),
    )
    with httpx.Client(
        base_url=url, verify=ssl.create_default_context(cafile=str(cacert)), timeout=60
    ) as https:
        team = TeamClient(http=https, token=admin.token, team_id=admin.team_id)
        try:
            towerfile = '[app]\nname = "stream"\nscript = "main.py"\n'
            # 2 MiB that gzip cannot shrink: over nginx's default client_max_body_size.
            archive = make_archive(
                {
                    "Towerfile": towerfile,
                    "main.py": STREAMING_APP,
                    "blob.bin": secrets.token_bytes(2 << 20),
                }
            )
            assert len(archive) > 2 << 20
            team.deploy("stream", archive)
            run_id = team.create_run("stream")["run_id"]
            first_line_while = None
            with https.stream(
                "GET", f"/api/v1/runs/{run_id}/logs/stream", headers=team.headers, timeout=60
            ) as events:
                assert events.status_code == 200
                for line in events.iter_lines():
                    if "first line" in line and first_line_while is None:
                        first_line_while = team.run(run_id)["status"]
                    if "last line" in line:
                        break
            # The first line came through while the app was still sleeping.
            assert first_line_while == "running"
            wait_for(
                lambda: team.run(run_id)["status"] == "completed",
                timeout=60,
                what="the run to complete",
            )
            check(team.get(f"/api/v1/runs/{run_id}"), 200)
        finally:
            runner.stop(timeout=20)
