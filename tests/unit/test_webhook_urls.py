"""Webhook URL checks: the shape, and the address ranges refused by default, IPv4-mapped
IPv6 included; every resolved address is checked, not only the first."""

import ipaddress
import socket
from typing import Any

import pytest

from minitower_shared.store.webhooks import backoff_delay
from minitower_shared.webhook_urls import (
    WebhookUrlError,
    check_at_creation,
    parse_url,
    refusal,
    resolve_checked,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.251",
        "100.64.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_refused_ranges(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_parse_keeps_path_query_and_default_ports() -> None:
    target = parse_url("https://Hooks.Example.com/a/b?x=1")
    assert (target.scheme, target.host, target.port, target.target) == (
        "https",
        "hooks.example.com",
        443,
        "/a/b?x=1",
    )
    assert parse_url("http://[2606:4700::1]:8080").target == "/"


@pytest.mark.parametrize(
    "url",
    [
        "https://user@hooks.example.com/",
        "https://:pw@hooks.example.com/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "https://hooks.example.com/#frag",
        "https://hooks.example.com/\x00",
        "http://[::1",
        "https://" + "a" * 3000 + ".com/",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookUrlError):
        check_at_creation(url, allow_private=True)


def test_host_names_are_checked_only_when_sending() -> None:
    check_at_creation("http://localhost/hook", allow_private=False)
    with pytest.raises(WebhookUrlError, match="loopback"):
        resolve_checked(parse_url("http://localhost/hook"), allow_private=False)


def test_one_refused_address_among_many_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answering a public and a private address (a rebinding setup) is refused."""

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(WebhookUrlError, match="private"):
        resolve_checked(parse_url("https://rebind.example.com/"), allow_private=False)
    address = resolve_checked(parse_url("https://rebind.example.com/"), allow_private=True)
    assert str(address) == "93.184.216.34"


def test_unresolvable_hosts_are_an_error_not_a_crash() -> None:
    with pytest.raises(WebhookUrlError, match="resolve"):
        resolve_checked(parse_url("http://nonexistent.invalid/"), allow_private=False)


def test_backoff_grows_is_jittered_and_capped() -> None:
    low = [backoff_delay(n, base=10, cap=3600, rand=0.0) for n in range(1, 12)]
    high = [backoff_delay(n, base=10, cap=3600, rand=0.999) for n in range(1, 12)]
    assert low[:4] == [5.0, 10.0, 20.0, 40.0]
    # Below the cap, the shortest wait after attempt n+1 is never below the longest after
    # attempt n (10 * 2**7 = 1280 s is the last uncapped one).
    assert all(nxt >= prev for prev, nxt in zip(high[:7], low[1:8], strict=True))
    assert max(high) <= 3600 and backoff_delay(200, base=10, cap=3600, rand=0.5) <= 3600
