"""The console's sessions and forms over HTTP, without a browser: cookie attributes,
what a stale, forged, oversized or replayed cookie or form gets, open redirects, and
the sign-in limits."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.clients import check
from tests.support.inprocess_api import ClientFactory
from tests.support.rows import Rows
from tests.support.tokens import BOOTSTRAP_TOKEN

PASSWORD = "console password"


@pytest.fixture(autouse=True)
def fresh_cookies(client: TestClient) -> Iterator[None]:
    """The tier's client is shared: no cookie of one test reaches the next."""
    client.cookies.clear()
    yield
    client.cookies.clear()


def bootstrap(client: TestClient, slug: str = "acme") -> dict[str, Any]:
    body: dict[str, Any] = check(
        client.post(
            "/api/v1/bootstrap/team",
            json={"slug": slug, "name": slug.title(), "password": PASSWORD},
            headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"},
        ),
        201,
    )
    return body


def form_token(client: TestClient) -> str:
    page = client.get("/signin")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def sign_in(client: TestClient, **fields: str) -> Any:
    data = {"csrf_token": form_token(client), **fields}
    return client.post("/signin", data=data, follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match
    return match.group(1)


def test_password_sign_in_sets_a_strict_httponly_cookie_not_the_token(client: TestClient) -> None:
    bootstrap(client)
    response = sign_in(client, slug="acme", password=PASSWORD, next="/runs")
    assert response.status_code == 303 and response.headers["location"] == "/runs"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("mt_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert "mtk_" not in cookie
    page = client.get("/runs")
    assert page.status_code == 200
    assert "Acme" in page.text and "admin" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_cookie_is_secure_over_https(settings: Any, make_client: ClientFactory) -> None:
    client = make_client()
    client.base_url = client.base_url.copy_with(scheme="https")  # type: ignore[misc]
    bootstrap(client)
    response = sign_in(client, slug="acme", password=PASSWORD)
    cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("mt_console=") and "Secure" in c for c in cookies), cookies


def test_the_database_holds_only_the_session_ids_hash(client: TestClient, rows: Rows) -> None:
    bootstrap(client)
    sign_in(client, slug="acme", password=PASSWORD)
    session_id = client.cookies["mt_console"]
    sessions = [(r["session_hash"], r["owns_token"]) for r in rows.select("console_session")]
    assert len(sessions) == 1 and sessions[0][0] != session_id and len(sessions[0][0]) == 64
    assert sessions[0][1] == 1


def test_sign_in_without_the_forms_token_is_refused(client: TestClient) -> None:
    bootstrap(client)
    client.get("/signin")
    response = client.post(
        "/signin",
        data={"csrf_token": "forged", "slug": "acme", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "mt_console" not in client.cookies


def test_next_never_leaves_the_site(client: TestClient) -> None:
    bootstrap(client)
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example", "runs"):
        client.cookies.clear()
        response = sign_in(client, slug="acme", password=PASSWORD, next=target)
        assert response.headers["location"] == "/", target


def test_pages_without_a_session_redirect_to_sign_in(client: TestClient) -> None:
    for path in ("/", "/runs?status=failed", "/apps", "/tokens", "/runs/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/signin?next=/"), path
    response = client.post("/runs/1/cancel", data={}, follow_redirects=False)
    assert response.status_code == 303


def test_stale_forged_and_oversized_cookies_are_no_session(client: TestClient) -> None:
    bootstrap(client)
    for value in ("x", "a" * 43, "b" * 60_000):
        client.cookies.set("mt_console", value)
        response = client.get("/", follow_redirects=False)
        assert response.status_code in (303, 431), value


def test_expired_sessions_end(make_client: ClientFactory) -> None:
    # The cookie outlives the session (a whole second): the server's row decides.
    client = make_client(console_session_ttl=0.3)
    bootstrap(client)
    sign_in(client, slug="acme", password=PASSWORD)
    assert client.get("/", follow_redirects=False).status_code == 200
    import time

    time.sleep(0.5)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_out_revokes_the_sessions_own_token_but_not_a_pasted_one(
    client: TestClient,
) -> None:
    team = bootstrap(client)
    sign_in(client, slug="acme", password=PASSWORD)
    old = client.cookies["mt_console"]
    assert client.post("/signout", data={"csrf_token": csrf_of(client)}).status_code == 200
    client.cookies.set("mt_console", old)
    assert client.get("/", follow_redirects=False).status_code == 303
    tokens = check(
        client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {team['token']}"}), 200
    )["tokens"]
    console = [t for t in tokens if t["name"] == "console"]
    assert len(console) == 1 and console[0]["revoked_at"] is not None

    client.cookies.clear()
    sign_in(client, token=team["token"])
    client.post("/signout", data={"csrf_token": csrf_of(client)})
    check(client.get("/api/v1/me", headers={"Authorization": f"Bearer {team['token']}"}), 200)


def test_sign_out_needs_the_csrf_token(client: TestClient) -> None:
    bootstrap(client)
    sign_in(client, slug="acme", password=PASSWORD)
    assert client.post("/signout", data={}, follow_redirects=False).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200


def test_a_token_sign_in_with_a_bad_token_is_refused(client: TestClient) -> None:
    bootstrap(client)
    for token in ("mtk_nope", "x" * 199):
        response = sign_in(client, token=token)
        assert response.status_code == 401
        assert "not valid" in response.text
    assert sign_in(client, token="x" * 60_000).status_code == 400


def test_console_sign_in_shares_the_logins_rate_limit(make_client: ClientFactory) -> None:
    client = make_client(login_attempts_per_slug=2, login_attempts_per_address=100)
    bootstrap(client)
    for _ in range(2):
        assert sign_in(client, slug="acme", password="wrong").status_code == 401
    response = sign_in(client, slug="acme", password=PASSWORD)
    assert response.status_code == 429
    assert "too many failed sign-ins" in response.text
    api = client.post("/api/v1/teams/login", json={"slug": "acme", "password": PASSWORD})
    assert api.status_code == 429


def test_user_text_is_escaped(client: TestClient) -> None:
    team = bootstrap(client)
    headers = {"Authorization": f"Bearer {team['token']}"}
    check(
        client.post(
            "/api/v1/apps",
            json={"slug": "hello", "description": "<img src=x onerror=alert(1)>"},
            headers=headers,
        ),
        201,
    )
    sign_in(client, slug="acme", password=PASSWORD)
    for path in ("/apps", "/apps/hello"):
        page = client.get(path).text
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_huge_run_form_is_refused_cleanly(client: TestClient) -> None:
    team = bootstrap(client)
    headers = {"Authorization": f"Bearer {team['token']}"}
    check(client.post("/api/v1/apps", json={"slug": "hello"}, headers=headers), 201)
    sign_in(client, slug="acme", password=PASSWORD)
    csrf = csrf_of(client)
    fields = {f"param.x{n}": "v" for n in range(500)}
    response = client.post("/apps/hello/runs", data={"csrf_token": csrf, **fields})
    assert response.status_code == 400
    big = client.post("/apps/hello/runs", data={"csrf_token": csrf, "param.x": "v" * 3_000_000})
    assert 400 <= big.status_code < 500
