"""The webhooks resource: admin only, team-scoped, URLs validated (private addresses
refused unless allowed), the secret shown once."""

from typing import Any

import pytest

from tests.support.api_assertions import expect_error
from tests.support.clients import TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN

BASE = "/api/v1/webhooks"
PUBLIC_KEYS = {
    "webhook_id",
    "url",
    "events",
    "app",
    "format",
    "enabled",
    "created_at",
    "updated_at",
}
GOOD = {"url": "https://hooks.example.com/minitower", "events": ["run.failed", "run.dead"]}


@pytest.fixture
def private_ok(make_client: ClientFactory) -> TeamClient:
    """An admin of team ``acme`` on an API that allows private webhook URLs."""
    client = make_client(webhook_allow_private=True)
    return TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)


def test_create_shows_the_generated_secret_once(team: TeamClient) -> None:
    created = check(team.post(BASE, json=GOOD), 201)
    assert set(created) == PUBLIC_KEYS | {"secret"}
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 32
    assert created["events"] == ["run.dead", "run.failed"] and created["format"] == "json"
    assert created["app"] is None and created["enabled"] is True
    path = f"{BASE}/{created['webhook_id']}"
    shown = check(team.get(path), 200)
    assert set(shown) == PUBLIC_KEYS and created["secret"] not in str(shown)
    listed = check(team.get(BASE), 200)
    assert listed == {"webhooks": [shown], "next_cursor": None}
    assert created["secret"] not in str(listed)


def test_given_secret_app_filter_and_slack_format(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    body = {**GOOD, "app": "hello", "secret": "s" * 24, "format": "slack"}
    created = check(team.post(BASE, json=body), 201)
    assert created["secret"] == "s" * 24 and created["app"] == "hello"
    assert created["format"] == "slack"
    expect_error(team.post(BASE, json={**GOOD, "app": "nope"}), 404, "not_found")


def test_update_and_delete(team: TeamClient, deployed: dict[str, Any]) -> None:
    created = check(team.post(BASE, json=GOOD), 201)
    path = f"{BASE}/{created['webhook_id']}"
    updated = check(
        team.patch(path, json={"enabled": False, "events": ["run.completed"], "app": "hello"}), 200
    )
    assert updated["enabled"] is False and updated["events"] == ["run.completed"]
    assert updated["app"] == "hello" and "secret" not in updated
    rotated = check(team.patch(path, json={"secret": "n" * 20, "app": None}), 200)
    assert rotated["app"] is None and "secret" not in rotated
    expect_error(team.patch(path, json={"url": None}), 400, "invalid_request")
    expect_error(team.patch(path, json={"url": "ftp://x"}), 400, "invalid_request")
    assert team.delete(path).status_code == 204
    expect_error(team.get(path), 404, "not_found")
    expect_error(team.delete(path), 404, "not_found")


def test_member_is_forbidden_everywhere(team: TeamClient, member: TeamClient) -> None:
    created = check(team.post(BASE, json=GOOD), 201)
    path = f"{BASE}/{created['webhook_id']}"
    expect_error(member.post(BASE, json=GOOD), 403, "forbidden")
    expect_error(member.get(BASE), 403, "forbidden")
    expect_error(member.get(path), 403, "forbidden")
    expect_error(member.patch(path, json={"enabled": False}), 403, "forbidden")
    expect_error(member.delete(path), 403, "forbidden")
    expect_error(member.get(f"{path}/deliveries"), 403, "forbidden")
    expect_error(member.post(f"{path}/test"), 403, "forbidden")
    assert check(team.get(path), 200)["enabled"] is True


def test_another_team_gets_404(team: TeamClient, other_team: TeamClient) -> None:
    created = check(team.post(BASE, json=GOOD), 201)
    path = f"{BASE}/{created['webhook_id']}"
    expect_error(other_team.get(path), 404, "not_found")
    expect_error(
        other_team.patch(path, json={"url": "https://evil.example.com/"}), 404, "not_found"
    )
    expect_error(other_team.delete(path), 404, "not_found")
    expect_error(other_team.get(f"{path}/deliveries"), 404, "not_found")
    expect_error(other_team.post(f"{path}/test"), 404, "not_found")
    assert check(other_team.get(BASE), 200) == {"webhooks": [], "next_cursor": None}
    assert check(team.get(path), 200)["url"] == GOOD["url"]


def test_revoked_token_is_401(team: TeamClient, member: TeamClient) -> None:
    me = check(member.get("/api/v1/me"), 200)
    check(team.delete(f"/api/v1/tokens/{me['token_id']}"), 200)
    expect_error(member.get(BASE), 401, "unauthorized")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"url": "ftp://hooks.example.com/"}, "http"),
        ({"url": "javascript:alert(1)"}, "http"),
        ({"url": "https://user:pw@hooks.example.com/"}, "credentials"),
        ({"url": "https://hooks.example.com/" + "a" * 2100}, "url"),
        ({"url": "https://hooks.example.com/a b"}, "whitespace"),
        ({"url": "https:///nohost"}, "host"),
        ({"url": "https://hooks.example.com:99999/"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["run.exploded"]}, "events"),
        ({"events": ["ping"]}, "events"),
        ({"format": "xml"}, "format"),
        ({"secret": "short"}, "secret"),
        ({"app": "Not A Slug"}, "app"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_input_is_400(team: TeamClient, change: dict[str, Any], needle: str) -> None:
    error = expect_error(team.post(BASE, json={**GOOD, **change}), 400, "invalid_request")
    assert needle in str(error).lower(), error
    assert check(team.get(BASE), 200)["webhooks"] == []


def test_a_60kb_body_is_refused_cleanly(team: TeamClient) -> None:
    response = team.post(BASE, json={**GOOD, "url": "https://x.example.com/" + "a" * 60_000})
    assert response.status_code in (400, 413), response.text
    assert "error" in response.json()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",
    ],
)
def test_private_addresses_are_refused_without_the_setting(team: TeamClient, url: str) -> None:
    error = expect_error(team.post(BASE, json={**GOOD, "url": url}), 400, "invalid_request")
    assert "MINITOWER_WEBHOOK_ALLOW_PRIVATE" in error["message"], error
    created = check(team.post(BASE, json=GOOD), 201)
    expect_error(
        team.patch(f"{BASE}/{created['webhook_id']}", json={"url": url}), 400, "invalid_request"
    )


def test_private_addresses_are_allowed_with_the_setting(private_ok: TeamClient) -> None:
    created = check(private_ok.post(BASE, json={**GOOD, "url": "http://127.0.0.1:9/hook"}), 201)
    assert created["url"] == "http://127.0.0.1:9/hook"


def test_test_route_queues_a_ping_and_deliveries_page(team: TeamClient) -> None:
    created = check(team.post(BASE, json=GOOD), 201)
    path = f"{BASE}/{created['webhook_id']}"
    queued = check(team.post(f"{path}/test"), 202)
    assert queued["type"] == "ping" and queued["event_id"].startswith("evt_")
    # Queued, not sent: no attempt yet.
    assert check(team.get(f"{path}/deliveries"), 200) == {"deliveries": [], "next_cursor": None}
    expect_error(team.get(f"{path}/deliveries?cursor=x"), 400, "invalid_request")


def test_list_pages(team: TeamClient) -> None:
    ids = [check(team.post(BASE, json=GOOD), 201)["webhook_id"] for _ in range(3)]
    first = check(team.get(f"{BASE}?limit=2"), 200)
    assert [w["webhook_id"] for w in first["webhooks"]] == ids[:2]
    rest = check(team.get(f"{BASE}?limit=2&cursor={first['next_cursor']}"), 200)
    assert [w["webhook_id"] for w in rest["webhooks"]] == ids[2:]
    assert rest["next_cursor"] is None
