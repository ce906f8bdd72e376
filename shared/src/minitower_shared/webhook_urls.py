"""Which webhook URLs MiniTower may POST to.

Checked when a webhook is created or changed (an IP literal in a refused range is
refused at once) and again before every send, on every address the host resolves to:
the sender then connects to the address it checked, so a DNS answer that changes
between the check and the connection (rebinding) cannot point it somewhere else.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookUrlError(ValueError):
    """The URL is malformed or points where MiniTower must not send."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    # Path and query, as sent in the request line.
    target: str


def parse_url(url: str) -> Target:
    """The parts of a well-formed http(s) URL without credentials; else WebhookUrlError."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise WebhookUrlError("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookUrlError(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlError("url must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebhookUrlError("url must not carry credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise WebhookUrlError("url has no host")
    if parts.fragment:
        raise WebhookUrlError("url must not have a #fragment")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Target(
        scheme=parts.scheme,
        host=host,
        port=port or (443 if parts.scheme == "https" else 80),
        target=target,
    )


def refusal(address: IPAddress) -> str | None:
    """Why MiniTower must not connect to ``address`` by default, or None when it may.
    An IPv4-mapped IPv6 address is judged as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # Everything else not reachable on the internet: CGNAT, documentation, 6to4 …
        ("non-global", not address.is_global),
    )
    for name, hit in checks:
        if hit:
            return f"{address} is a {name} address"
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_at_creation(url: str, *, allow_private: bool) -> Target:
    """Refuse a malformed URL, and an IP literal in a refused range unless
    ``allow_private``. A host name is resolved only when sending."""
    target = parse_url(url)
    address = literal_address(target.host)
    if address is not None and not allow_private and (why := refusal(address)) is not None:
        raise WebhookUrlError(f"url refused: {why}; MINITOWER_WEBHOOK_ALLOW_PRIVATE=true allows it")
    return target


def resolve_checked(target: Target, *, allow_private: bool) -> IPAddress:
    """The address to connect to: every address the host resolves to must be allowed
    (one refused address refuses the URL), then the first one is used."""
    literal = literal_address(target.host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise WebhookUrlError(f"cannot resolve {target.host}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise WebhookUrlError(f"{target.host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if (why := refusal(address)) is not None:
                raise WebhookUrlError(f"refused: {target.host} resolves to {why}")
    return addresses[0]
