"""Operator endpoints: /health, /ready, /metrics, and the OpenAPI document."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.inprocess_api import ClientFactory
from tests.support.postgres import PostgresCluster
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

# Every route of docs/api-v1.md.
CONTRACT_ROUTES = {
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("post", "/api/v1/bootstrap/team"),
    ("post", "/api/v1/runners/register"),
    ("get", "/api/v1/me"),
    ("post", "/api/v1/tokens"),
    ("get", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{token_id}"),
    ("post", "/api/v1/apps"),
    ("get", "/api/v1/apps"),
    ("get", "/api/v1/apps/{app}"),
    ("patch", "/api/v1/apps/{app}"),
    ("post", "/api/v1/apps/{app}/versions"),
    ("get", "/api/v1/apps/{app}/versions"),
    ("get", "/api/v1/apps/{app}/versions/{version_no}"),
    ("post", "/api/v1/apps/{app}/runs"),
    ("get", "/api/v1/apps/{app}/runs"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/runs/{run_id}"),
    ("get", "/api/v1/runs/{run_id}/attempts"),
    ("post", "/api/v1/runs/{run_id}/cancel"),
    ("get", "/api/v1/runs/{run_id}/logs"),
    ("get", "/api/v1/runs/{run_id}/logs/stream"),
    ("get", "/api/v1/admin/runners"),
    ("post", "/api/v1/runs/lease"),
    ("post", "/api/v1/runs/{run_id}/start"),
    ("get", "/api/v1/runs/{run_id}/artifact"),
    ("post", "/api/v1/runs/{run_id}/heartbeat"),
    ("post", "/api/v1/runs/{run_id}/logs"),
    ("post", "/api/v1/runs/{run_id}/result"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{webhook_id}"),
    ("patch", "/api/v1/webhooks/{webhook_id}"),
    ("delete", "/api/v1/webhooks/{webhook_id}"),
    ("get", "/api/v1/webhooks/{webhook_id}/deliveries"),
    ("post", "/api/v1/webhooks/{webhook_id}/test"),
}


def test_health(client: TestClient) -> None:
    assert check(client.get("/health"), 200) == {"status": "ok"}


def test_ready_after_migrations(client: TestClient) -> None:
    assert check(client.get("/ready"), 200) == {
        "status": "ok",
        "reaper": "no pass recorded",
        "scheduler": "no tick recorded",
    }


def test_not_ready_on_a_database_that_was_never_migrated(
    make_client: ClientFactory, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> None:
    if postgres_cluster is None:
        client = make_client(db_path=tmp_path / "fresh" / "never-migrated.db")
    else:
        url = postgres_cluster.url(postgres_cluster.create_database())
        client = make_client(database_url=SecretStr(url))
    body = check(client.get("/ready"), 503)
    assert "migrations pending" in body["status"]
    # Liveness does not depend on the database.
    assert check(client.get("/health"), 200) == {"status": "ok"}


def test_not_ready_when_the_database_cannot_be_opened(
    make_client: ClientFactory, tmp_path: Path, postgres_cluster: PostgresCluster | None
) -> None:
    if postgres_cluster is None:
        folder = tmp_path / "a-folder"
        folder.mkdir()
        client = make_client(db_path=folder)
    else:
        client = make_client(database_url=SecretStr(postgres_cluster.url("no_such_database")))
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["status"].startswith("database unavailable")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics(make_client: ClientFactory, hello_archive: bytes) -> None:
    # A process of its own, so that its counters hold only this test's requests.
    client = make_client()
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    runner = RunnerClient.register(client, "runner-1", REGISTRATION_TOKEN)
    team.deploy("hello", hello_archive)
    run = team.create_run("hello")
    lease = runner.lease()
    assert lease is not None
    check(runner.start(lease), 200)
    team.create_run("hello")
    team.create_run("hello", environment="gpu")
    check(team.get(f"/api/v1/runs/{run['run_id']}"), 200)
    check(team.get(f"/api/v1/runs/{run['run_id']}"), 200)
    client.get("/no/such/route/12345")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    get_run = _value(
        samples,
        "minitower_http_requests_total",
        method="GET",
        route="/api/v1/runs/{run_id}",
        status="200",
    )
    assert get_run == 2
    assert (
        _value(
            samples,
            "minitower_http_requests_total",
            method="POST",
            route="/api/v1/apps/{app}/runs",
            status="201",
        )
        == 3
    )
    # Raw paths never become labels.
    routes = {dict(labels).get("route") for name, labels in samples if "route" in dict(labels)}
    assert not any(route and str(run["run_id"]) in route.split("/") for route in routes)
    assert "/no/such/route/12345" not in routes
    assert (
        _value(
            samples,
            "minitower_http_requests_total",
            method="GET",
            route="unmatched",
            status="404",
        )
        == 1
    )
    assert (
        _value(
            samples,
            "minitower_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/runs/{run_id}",
        )
        == 2
    )

    assert _value(samples, "minitower_runs", status="running") == 1
    assert _value(samples, "minitower_runs", status="queued") == 2
    for status in ("leased", "cancelling", "completed", "failed", "cancelled", "dead"):
        assert _value(samples, "minitower_runs", status=status) == 0
    assert _value(samples, "minitower_queue_depth", environment="default") == 1
    assert _value(samples, "minitower_queue_depth", environment="gpu") == 1
    assert _value(samples, "minitower_runners_online", environment="default") == 1
    assert _value(samples, "minitower_runners_online", environment="gpu") == 0

    check(runner.result(lease, "completed", exit_code=0), 200)
    after = _samples(client.get("/metrics").text)
    assert _value(after, "minitower_runs", status="completed") == 1
    assert _value(after, "minitower_runs", status="running") == 0
    assert _value(after, "minitower_runs_finished_total", app="acme/hello", status="completed") == 1


def test_metrics_on_an_empty_database(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = _samples(response.text)
    assert _value(samples, "minitower_runs", status="queued") == 0
    # No environment yet: the families are there, without samples.
    assert "# TYPE minitower_runners_online gauge" in response.text
    assert not any(name == "minitower_runners_online" for name, _labels in samples)


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = check(client.get("/openapi.json"), 200)
    return document


def test_openapi_lists_every_route_of_the_contract(openapi: dict[str, Any]) -> None:
    documented = {
        (method, path)
        for path, operations in openapi["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented >= CONTRACT_ROUTES, sorted(CONTRACT_ROUTES - documented)


def test_openapi_has_no_422_responses(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation.get("responses", {}), (method, path)
    schemas = openapi.get("components", {}).get("schemas", {})
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert '"422"' not in str(openapi).replace("'", '"')


def test_openapi_documents_the_error_responses(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    error_ref = "#/components/schemas/ErrorResponse"

    def responses(method: str, path: str) -> dict[str, Any]:
        result: dict[str, Any] = paths[path][method]["responses"]
        return result

    for method, path in CONTRACT_ROUTES:
        if path.startswith("/api/"):
            documented = responses(method, path)
            assert "400" in documented, (method, path)
            assert "401" in documented, (method, path)
            content = documented["400"]["content"]["application/json"]["schema"]
            assert content["$ref"] == error_ref
    assert "409" in responses("post", "/api/v1/apps")
    assert "409" in responses("post", "/api/v1/apps/{app}/runs")
    assert "413" in responses("post", "/api/v1/apps/{app}/versions")
    assert "403" in responses("get", "/api/v1/admin/runners")
    assert "403" in responses("post", "/api/v1/webhooks")
    assert "202" in responses("post", "/api/v1/webhooks/{webhook_id}/test")
    assert "204" in responses("post", "/api/v1/runs/lease")
    assert "409" in responses("post", "/api/v1/runs/lease")
    for action in ("start", "heartbeat", "logs", "result"):
        assert "410" in responses("post", f"/api/v1/runs/{{run_id}}/{action}")
    assert "409" in responses("post", "/api/v1/runs/{run_id}/result")
    assert "503" in responses("get", "/ready")


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "openapi.json" in response.text
