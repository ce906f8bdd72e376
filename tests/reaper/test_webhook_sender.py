"""One send: the connection goes to the address that was checked (the Host header and
SNI keep the name), so a name that resolves differently later cannot redirect it; the
answer is read only up to the cap."""

import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from minitower_reaper.webhook_sender import SendOptions, new_client, send, sign
from minitower_shared.store.webhooks import Claim
from tests.support.webhook_receiver import webhook_receiver


def claim(url: str, **changes: Any) -> Claim:
    values: dict[str, Any] = {
        "delivery_id": 1,
        "token": "t",
        "attempts": 0,
        "webhook_id": 1,
        "url": url,
        "secret": "s" * 20,
        "format": "json",
        "event_id": "evt_1",
        "event_type": "ping",
        "event_created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "payload": {"webhook": {"id": 1}},
    }
    return Claim(**{**values, **changes})


def test_the_request_goes_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = socket.getaddrinfo

    def counting_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(host)
        return real("127.0.0.1" if host == "hooks.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting_getaddrinfo)
    with webhook_receiver() as receiver, new_client() as client:
        port = receiver.url.split(":")[2].split("/")[0]
        result = send(
            client,
            claim(f"http://hooks.test:{port}/in?x=1"),
            SendOptions(timeout=5, allow_private=True),
        )
        (request,) = receiver.requests()
    assert result.status_code == 200 and result.error is None
    # The name is resolved once, by the check; the connection looks up only the checked IP.
    assert calls[0] == "hooks.test" and set(calls[1:]) <= {"127.0.0.1"}
    assert request.headers["Host"] == f"hooks.test:{port}"
    assert request.path == "/in?x=1"
    timestamp = int(request.headers["MiniTower-Signature"].split(",")[0][2:])
    assert request.headers["MiniTower-Signature"] == sign("s" * 20, timestamp, request.body)


def test_refused_address_is_not_contacted() -> None:
    with webhook_receiver() as receiver, new_client() as client:
        result = send(client, claim(receiver.url), SendOptions(timeout=5, allow_private=False))
        assert receiver.requests() == []
    assert result.status_code is None and "loopback" in (result.error or "")


def test_nothing_listening_is_a_recorded_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with new_client() as client:
        result = send(
            client, claim(f"http://127.0.0.1:{port}/"), SendOptions(timeout=2, allow_private=True)
        )
    assert result.status_code is None and "ConnectError" in (result.error or "")
    assert not result.succeeded
