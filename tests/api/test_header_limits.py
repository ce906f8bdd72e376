"""MINITOWER_MAX_HEADER_COUNT and MINITOWER_MAX_HEADER_BYTES, checked per request
(header_limits.py): 431 with the error object, whatever the route and the token."""

from fastapi.testclient import TestClient

from tests.support.api_assertions import expect_error
from tests.support.clients import TeamClient


def test_too_many_headers_is_431_before_authentication(client: TestClient) -> None:
    headers = {f"X-Padding-{i}": "1" for i in range(101)}
    expect_error(client.get("/api/v1/me", headers=headers), 431, "header_too_large")


def test_a_hundred_headers_are_fine(client: TestClient, team: TeamClient) -> None:
    # The cap counts every header, the client's own (host, accept, ...) included.
    padding = {f"X-Padding-{i}": "1" for i in range(90)}
    response = client.get("/api/v1/me", headers={**team.headers, **padding})
    assert response.status_code == 200, response.text


def test_a_long_query_string_counts_towards_the_head(client: TestClient) -> None:
    response = client.get("/health", params={"q": "x" * 20_000})
    expect_error(response, 431, "header_too_large")


def test_a_head_just_under_the_limit_is_served(client: TestClient, team: TeamClient) -> None:
    response = client.get("/api/v1/me", headers={**team.headers, "X-Big": "x" * 15_000})
    assert response.status_code == 200, response.text
