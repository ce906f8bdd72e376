"""Request ids (``X-Request-ID``) and the access log: every answer carries the id, every
log line of the request names it, one ``request`` line per request."""

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_api.access import request_id_of
from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.logging_setup import configure_logging
from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient
from tests.support.tokens import REGISTRATION_TOKEN

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def api_log() -> Iterator[io.StringIO]:
    """The API's JSON log lines of the test (the root logger put back after)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("api", "info", "json", stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def lines_of(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
def failing_client(settings: ApiSettings) -> Iterator[TestClient]:
    """The API with one more route, which fails as a bug would."""
    app = create_app(settings)

    @app.get("/boom/{what}")
    def boom(what: str) -> None:
        raise RuntimeError(f"bug: {what}")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("sent", ["abc-1", "runner-0123456789abcdef", "A.b_c:d-9", "x", "a" * 128])
def test_a_valid_request_id_is_echoed(client: TestClient, sent: str) -> None:
    response = client.get("/health", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent", [b"", b"a" * 129, b"two words", b"a/b", b"semi;colon", b"\xe9t\xe9", b"{json}"]
)
def test_an_invalid_or_too_long_request_id_is_replaced(client: TestClient, sent: bytes) -> None:
    response = client.get("/health", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["x-request-id"])


def test_a_trailing_newline_is_not_part_of_a_valid_id() -> None:
    assert GENERATED.fullmatch(request_id_of("abc\n"))
    assert request_id_of("abc") == "abc"


def test_a_request_without_one_gets_a_fresh_id(client: TestClient) -> None:
    first = client.get("/health").headers["x-request-id"]
    second = client.get("/health").headers["x-request-id"]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second)
    assert first != second


def test_error_answers_carry_the_id_too(client: TestClient, team: TeamClient) -> None:
    sent = {"X-Request-ID": "err-1"}
    answers = [
        client.get("/no/such/route", headers=sent),  # 404, no route
        client.get("/api/v1/me", headers=sent),  # 401
        client.delete("/health", headers=sent),  # 405
        client.post("/api/v1/apps", headers={**team.headers, **sent}, content=b"{"),  # 400
        client.get("/api/v1/runs/999999", headers={**team.headers, **sent}),  # 404 of a route
    ]
    assert [a.status_code for a in answers] == [404, 401, 405, 400, 404]
    assert [a.headers.get("x-request-id") for a in answers] == ["err-1"] * len(answers)
    assert all("error" in a.json() for a in answers)


def test_each_request_is_one_access_line_with_its_route_template(
    client: TestClient, team: TeamClient, api_log: io.StringIO
) -> None:
    client.get("/api/v1/runs/999999", headers={**team.headers, "X-Request-ID": "look-1"})
    client.get("/no/such/route", headers={"X-Request-ID": "look-2"})
    requests = [line for line in lines_of(api_log) if line["event"] == "request"]
    assert len(requests) == 2
    for line in requests:
        assert isinstance(line.pop("duration_ms"), float)
        assert line.pop("ts").endswith("Z")
    assert requests == [
        {
            "level": "info",
            "service": "api",
            "event": "request",
            "logger": "minitower.api.access",
            "request_id": "look-1",
            "method": "GET",
            "path": "/api/v1/runs/{run_id}",
            "status": 404,
            "client": "testclient",
        },
        {
            "level": "info",
            "service": "api",
            "event": "request",
            "logger": "minitower.api.access",
            "request_id": "look-2",
            "method": "GET",
            "path": "/no/such/route",
            "status": 404,
            "client": "testclient",
        },
    ]


def test_an_unhandled_error_is_a_500_with_the_id_logged_once_with_it(
    failing_client: TestClient, api_log: io.StringIO
) -> None:
    response = failing_client.get("/boom/now", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert response.headers["x-request-id"] == "crash-1"
    lines = lines_of(api_log)
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, lines
    (error,) = errors
    assert (error["event"], error["request_id"]) == ("unhandled error", "crash-1")
    assert (error["method"], error["path"]) == ("GET", "/boom/now")
    assert "RuntimeError: bug: now" in error["exc"]
    (access,) = [line for line in lines if line["event"] == "request"]
    assert (access["request_id"], access["status"], access["path"]) == (
        "crash-1",
        500,
        "/boom/{what}",
    )


def test_every_line_of_a_request_carries_its_id(
    client: TestClient, team: TeamClient, api_log: io.StringIO
) -> None:
    """A route's own line (a run leased, logged in the worker thread of a sync route) as
    well as the access line."""
    team.deploy("hello", make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": "print(1)\n"}))
    run_id = team.create_run("hello")["run_id"]
    runner = RunnerClient.register(client, "runner-log", REGISTRATION_TOKEN)
    response = client.post(
        "/api/v1/runs/lease",
        json={"wait_seconds": 0},
        headers={**runner.headers, "X-Request-ID": "lease-1"},
    )
    assert response.status_code == 200
    lines = [line for line in lines_of(api_log) if line.get("request_id") == "lease-1"]
    assert [line["event"] for line in lines] == ["run leased", "request"]
    leased = lines[0]
    assert (leased["run_id"], leased["attempt_no"], leased["runner"]) == (run_id, 1, "runner-log")


def test_openapi_documents_the_request_id(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "X-Request-ID" in document["info"]["description"]
    components = document["components"]
    assert components["headers"]["RequestId"]["schema"]["maxLength"] == 128
    assert components["parameters"]["RequestId"]["name"] == "X-Request-ID"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert {"$ref": "#/components/parameters/RequestId"} in operation["parameters"]
            for status, answer in operation["responses"].items():
                header = answer.get("headers", {}).get("X-Request-ID")
                assert header == {"$ref": "#/components/headers/RequestId"}, (path, method, status)
