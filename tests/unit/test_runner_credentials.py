"""The saved runner token and registering again on a 401."""

import json
import stat
import threading
from pathlib import Path

import httpx

from minitower_runner.client import ApiClient
from minitower_runner.credentials import TOKEN_FILE, Credentials, Identity, load_token


def registrar(count: list[int], lock: threading.Lock) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        with lock:
            count[0] += 1
            number = count[0]
        body = json.loads(request.content)
        return httpx.Response(
            201,
            json={
                "runner_id": 1,
                "name": body["name"],
                "environment": body["environment"],
                "token": f"mtr_{number}",
            },
        )

    return httpx.MockTransport(handle)


def credentials(tmp_path: Path, count: list[int]) -> tuple[ApiClient, Credentials]:
    client = ApiClient("http://api", timeout=5, transport=registrar(count, threading.Lock()))
    identity = Identity("http://api", "r1", "default")
    return client, Credentials(client, tmp_path, identity, "registration-token-0123", {})


def test_first_start_registers_and_saves_0600_then_reuses(tmp_path: Path) -> None:
    count = [0]
    client, creds = credentials(tmp_path, count)
    creds.ensure()
    assert client.token == "mtr_1" and count == [1]
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    again, creds2 = credentials(tmp_path, count)
    creds2.ensure()
    assert again.token == "mtr_1" and count == [1]


def test_a_token_for_another_server_or_name_is_not_used(tmp_path: Path) -> None:
    count = [0]
    _, creds = credentials(tmp_path, count)
    creds.ensure()
    assert load_token(tmp_path, Identity("http://other", "r1", "default")) is None
    assert load_token(tmp_path, Identity("http://api", "r2", "default")) is None
    (tmp_path / TOKEN_FILE).write_text("not json")
    assert load_token(tmp_path, Identity("http://api", "r1", "default")) is None


def test_concurrent_401s_register_once(tmp_path: Path) -> None:
    """Heartbeat, log and main threads may all hit the 401 of one revoked token: every
    registration revokes the token before it, so only one may happen."""
    count = [0]
    client, creds = credentials(tmp_path, count)
    creds.ensure()
    refused = client.token
    barrier = threading.Barrier(6)

    def renew() -> None:
        barrier.wait()
        creds.renew(refused)

    threads = [threading.Thread(target=renew) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert count == [2]
    assert client.token == "mtr_2"
    assert load_token(tmp_path, Identity("http://api", "r1", "default")) == "mtr_2"
