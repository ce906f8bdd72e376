"""One signed POST of a webhook delivery.

The body is rendered from the stored event (JSON, or Slack's incoming-webhook shape),
signed Stripe-style (``MiniTower-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``)
and sent to the address checked by ``webhook_urls.resolve_checked``: the request goes to
that IP (Host header and TLS SNI name the original host), so DNS cannot swap the target
after the check. Redirects are not followed (a 3xx is a failure), and at most
``MAX_RESPONSE_BYTES`` of the answer are read.
"""

import hashlib
import hmac
import ipaddress
import json
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from minitower_shared.clock import rfc3339, utcnow
from minitower_shared.store.webhooks import AttemptResult, Claim
from minitower_shared.webhook_urls import WebhookUrlError, parse_url, resolve_checked

MAX_RESPONSE_BYTES = 64 * 1024
SIGNATURE_HEADER = "MiniTower-Signature"
EVENT_ID_HEADER = "MiniTower-Event-Id"


def _user_agent() -> str:
    try:
        return f"MiniTower-Webhooks/{version('minitower-reaper')}"
    except PackageNotFoundError:
        return "MiniTower-Webhooks"


USER_AGENT = _user_agent()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def json_body(claim: Claim) -> dict[str, Any]:
    return {
        "id": claim.event_id,
        "type": claim.event_type,
        "created_at": rfc3339(claim.event_created_at),
        "data": claim.payload,
    }


def _slack_text(claim: Claim) -> str:
    run = claim.payload.get("run")
    if isinstance(run, dict):
        line = (
            f"MiniTower: run {run.get('id')} of *{run.get('app')}* "
            f"(version {run.get('version')}, {run.get('environment')}) is *{run.get('status')}*"
        )
        if run.get("error"):
            line += f": {run['error']}"
        return line
    schedule = claim.payload.get("schedule")
    if isinstance(schedule, dict):
        return (
            f"MiniTower: schedule {schedule.get('name') or schedule.get('id')} of "
            f"*{schedule.get('app')}* skipped {schedule.get('scheduled_for')}: "
            f"{schedule.get('reason')}"
        )
    return f"MiniTower: {claim.event_type} ({claim.event_id})"


def slack_body(claim: Claim) -> dict[str, Any]:
    """Slack's incoming-webhook message: ``text`` (the notification's fallback) and one
    mrkdwn section block; Slack caps a section's text at 3000 characters."""
    text = _slack_text(claim)[:3000]
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"{claim.event_type} · {claim.event_id}"}],
            },
        ],
    }


def render(claim: Claim) -> bytes:
    body = slack_body(claim) if claim.format == "slack" else json_body(claim)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SendOptions:
    timeout: float
    allow_private: bool


def _pinned_url(
    scheme: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, target: str
) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{host}:{port}{target}"


def send(client: httpx.Client, claim: Claim, options: SendOptions) -> AttemptResult:
    """POST the delivery once; never raises for the receiver's or the network's faults."""
    started_at: datetime = utcnow()
    started = time.perf_counter()

    def result(status_code: int | None, error: str | None) -> AttemptResult:
        return AttemptResult(
            started_at=started_at,
            duration_ms=(time.perf_counter() - started) * 1000,
            status_code=status_code,
            error=error,
        )

    try:
        target = parse_url(claim.url)
        address = resolve_checked(target, allow_private=options.allow_private)
    except WebhookUrlError as exc:
        return result(None, str(exc))
    body = render(claim)
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(claim.secret, int(time.time()), body),
        EVENT_ID_HEADER: claim.event_id,
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with client.stream(
            "POST",
            _pinned_url(target.scheme, address, target.port, target.target),
            content=body,
            headers=headers,
            extensions=extensions,
            timeout=options.timeout,
        ) as response:
            read = 0
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break
            if 200 <= response.status_code < 300:
                return result(response.status_code, None)
            if 300 <= response.status_code < 400:
                return result(response.status_code, "redirects are not followed")
            return result(response.status_code, f"the receiver answered {response.status_code}")
    except httpx.TimeoutException:
        return result(None, f"timed out after {options.timeout:g} s")
    except httpx.HTTPError as exc:
        return result(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def new_client() -> httpx.Client:
    # trust_env=False: a proxy from the environment would connect to the host by name,
    # around the address check.
    return httpx.Client(follow_redirects=False, trust_env=False)
