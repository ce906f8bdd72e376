"""/metrics in full and /ready's reaper field: series by app and environment, the
reaper's totals and age from reaper_pass, the optional metrics token."""

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from minitower_api.deps import Services
from minitower_api.settings import ApiSettings
from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.store import reaper_passes as pass_store
from minitower_shared.store.reaper_passes import PassWork
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.databases import Database
from tests.support.inprocess_api import ClientFactory
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

METRICS_TOKEN = "metrics-token-0123456789"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def record_pass(database: Database, *, name: str, ago: float, work: PassWork | None = None) -> None:
    engine = create_db_engine(database, pool_size=1)
    try:
        with write_session(engine) as session:
            pass_store.record_pass(
                session,
                name=name,
                at=utcnow() - timedelta(seconds=ago),
                duration_ms=3.0,
                work=work or PassWork(),
            )
    finally:
        engine.dispose()


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


# --- /ready -----------------------------------------------------------------------------


def test_ready_reports_a_recent_pass_as_ok(client: TestClient, database: Database) -> None:
    record_pass(database, name="host:1", ago=1)
    assert check(client.get("/ready"), 200) == {
        "status": "ok",
        "reaper": "ok",
        "scheduler": "no tick recorded",
    }


def test_ready_reports_a_stalled_reaper_but_stays_ready_by_default(
    client: TestClient, database: Database
) -> None:
    record_pass(database, name="host:1", ago=95)
    body = check(client.get("/ready"), 200)
    assert body["status"] == "ok"
    assert body["reaper"] in ("stalled: last pass 95 s ago", "stalled: last pass 96 s ago")


def test_the_freshest_of_several_reapers_counts(client: TestClient, database: Database) -> None:
    record_pass(database, name="old:1", ago=3600)
    record_pass(database, name="new:2", ago=2)
    assert check(client.get("/ready"), 200)["reaper"] == "ok"


def test_stall_window_is_a_setting(make_client: ClientFactory, database: Database) -> None:
    client = make_client(reaper_stall_after=300.0)
    record_pass(database, name="host:1", ago=95)
    assert check(client.get("/ready"), 200)["reaper"] == "ok"


def test_requires_reaper_makes_a_stalled_reaper_not_ready(
    make_client: ClientFactory, database: Database
) -> None:
    client = make_client(ready_requires_reaper=True)
    record_pass(database, name="host:1", ago=120)
    body = check(client.get("/ready"), 503)
    assert body["status"] == "reaper stalled"
    assert body["reaper"].startswith("stalled: last pass 12")
    record_pass(database, name="host:1", ago=0)
    assert check(client.get("/ready"), 200) == {
        "status": "ok",
        "reaper": "ok",
        "scheduler": "no tick recorded",
    }


def test_requires_reaper_waits_one_stall_window_for_a_first_pass(
    make_client: ClientFactory,
) -> None:
    client = make_client(ready_requires_reaper=True, reaper_stall_after=60.0)
    # Just started: the reaper may not have made its first pass yet.
    assert check(client.get("/ready"), 200) == {
        "status": "ok",
        "reaper": "no pass recorded",
        "scheduler": "no tick recorded",
    }
    services_of(client).started = time.monotonic() - 61
    body = check(client.get("/ready"), 503)
    assert body == {
        "status": "no reaper",
        "reaper": "no pass recorded",
        "scheduler": "no tick recorded",
    }


def test_openapi_documents_the_reaper_field(client: TestClient) -> None:
    document = check(client.get("/openapi.json"), 200)
    fields = document["components"]["schemas"]["HealthStatus"]["properties"]
    assert "reaper" in fields
    assert "401" in document["paths"]["/metrics"]["get"]["responses"]


# --- /metrics ---------------------------------------------------------------------------


def test_run_counters_are_labelled_by_app(make_client: ClientFactory, hello_archive: bytes) -> None:
    client = make_client()
    acme = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    acme.deploy("hello", hello_archive)
    acme.deploy("other", hello_archive)
    runner = RunnerClient.register(client, "runner-1", REGISTRATION_TOKEN)
    acme.create_run("hello")
    acme.create_run("other")
    lease = runner.lease()
    assert lease is not None
    check(runner.start(lease), 200)
    check(runner.result(lease, "failed", exit_code=3), 200)

    samples = samples_of(check_text(client.get("/metrics")))
    assert value(samples, "minitower_runs_created_total", app="acme/hello") == 1
    assert value(samples, "minitower_runs_created_total", app="acme/other") == 1
    assert value(samples, "minitower_runs_leased_total", app="acme/hello") == 1
    assert value(samples, "minitower_runs_finished_total", app="acme/hello", status="failed") == 1
    assert value(samples, "minitower_runs_leased_total", app="acme/other") is None


def test_queue_depth_and_oldest_age_per_environment(
    make_client: ClientFactory, hello_archive: bytes
) -> None:
    client = make_client()
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    RunnerClient.register(client, "gpu-runner", REGISTRATION_TOKEN, environment="gpu")
    team.create_run("hello")
    time.sleep(0.3)
    team.create_run("hello")
    samples = samples_of(check_text(client.get("/metrics")))
    assert value(samples, "minitower_queue_depth", environment="default") == 2
    oldest = value(samples, "minitower_queue_oldest_age_seconds", environment="default")
    assert oldest is not None and 0.3 <= oldest < 30
    # An environment with a runner but no work: an empty queue, not a missing series.
    assert value(samples, "minitower_queue_depth", environment="gpu") == 0
    assert value(samples, "minitower_queue_oldest_age_seconds", environment="gpu") == 0
    assert value(samples, "minitower_runners_online", environment="gpu") == 1
    assert value(samples, "minitower_runners_online", environment="default") == 0


def test_reaper_series_before_any_pass(client: TestClient) -> None:
    text = check_text(client.get("/metrics"))
    samples = samples_of(text)
    # Counters start at 0, so rate() works from the first scrape; no age is invented.
    for name in (
        "minitower_leases_expired_total",
        "minitower_runs_retried_total",
        "minitower_runs_buried_total",
        "minitower_reaper_passes_total",
    ):
        assert value(samples, name) == 0, name
    assert "# TYPE minitower_reaper_last_pass_age_seconds gauge" in text
    assert value(samples, "minitower_reaper_last_pass_age_seconds") is None


def test_reaper_totals_sum_over_reapers(client: TestClient, database: Database) -> None:
    record_pass(
        database,
        name="a:1",
        ago=30,
        work=PassWork(leases_expired=3, runs_retried=2, runs_buried=1, runners_marked_offline=1),
    )
    record_pass(database, name="a:1", ago=20, work=PassWork(leases_expired=1, runs_cancelled=1))
    record_pass(database, name="b:2", ago=10, work=PassWork(leases_expired=2, runs_retried=2))
    samples = samples_of(check_text(client.get("/metrics")))
    assert value(samples, "minitower_reaper_passes_total") == 3
    assert value(samples, "minitower_leases_expired_total") == 6
    assert value(samples, "minitower_runs_retried_total") == 4
    assert value(samples, "minitower_runs_buried_total") == 1
    assert value(samples, "minitower_runs_cancelled_by_reaper_total") == 1
    assert value(samples, "minitower_runners_marked_offline_total") == 1
    age = value(samples, "minitower_reaper_last_pass_age_seconds")
    assert age is not None and 10 <= age < 40
    assert value(samples, "minitower_reaper_last_pass_duration_seconds") == pytest.approx(0.003)


def test_build_info(client: TestClient) -> None:
    samples = samples_of(check_text(client.get("/metrics")))
    versions = [
        dict(labels)["version"] for name, labels in samples if name == "minitower_build_info"
    ]
    assert len(versions) == 1 and versions[0]


# --- the metrics token ------------------------------------------------------------------


def test_metrics_are_open_without_a_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": METRICS_TOKEN}],
)
def test_a_metrics_token_is_required_once_set(
    make_client: ClientFactory, headers: dict[str, str]
) -> None:
    client = make_client(metrics_token=SecretStr(METRICS_TOKEN))
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_metrics_token_opens_metrics(make_client: ClientFactory) -> None:
    client = make_client(metrics_token=SecretStr(METRICS_TOKEN))
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert "minitower_build_info" in check_text(response)
    # Only /metrics is behind it: probes stay open.
    assert client.get("/ready").status_code == 200
    assert client.get("/health").status_code == 200


def test_a_short_metrics_token_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="MINITOWER_METRICS_TOKEN must be at least 16"):
        ApiSettings(metrics_token="short")  # type: ignore[arg-type]


def test_an_empty_metrics_token_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose passes MINITOWER_METRICS_TOKEN=${MINITOWER_METRICS_TOKEN:-}: empty is unset.
    monkeypatch.setenv("MINITOWER_METRICS_TOKEN", "")
    assert ApiSettings().metrics_token is None


def test_storage_full_series_exist_before_any_refusal(make_client: ClientFactory) -> None:
    found = samples_of(check_text(make_client().get("/metrics")))
    for volume in ("database", "objects"):
        assert found[("minitower_storage_full_total", frozenset({("volume", volume)}))] == 0


def check_text(response: Any) -> str:
    assert response.status_code == 200, response.text
    text: str = response.text
    return text


def test_webhook_series_from_the_outbox(client: TestClient, database: Database) -> None:
    """Deliveries by status, attempts by outcome and the oldest pending delivery's age,
    read from the tables (0 before any webhook)."""
    samples = samples_of(check_text(client.get("/metrics")))
    for status in ("pending", "delivered", "failed"):
        assert value(samples, "minitower_webhook_deliveries", status=status) == 0
    assert value(samples, "minitower_webhook_attempts_total", outcome="failure") == 0
    assert value(samples, "minitower_webhook_outbox_oldest_pending_age_seconds") == 0
    team = TeamClient.bootstrap(client, "acme", BOOTSTRAP_TOKEN)
    body = {"url": "https://hooks.example.com/x", "events": ["run.failed"]}
    hooks = [check(team.post("/api/v1/webhooks", json=body), 201) for _ in range(2)]
    for hook in hooks:
        check(team.post(f"/api/v1/webhooks/{hook['webhook_id']}/test"), 202)
    time.sleep(0.2)
    samples = samples_of(check_text(client.get("/metrics")))
    assert value(samples, "minitower_webhook_deliveries", status="pending") == 2
    age = value(samples, "minitower_webhook_outbox_oldest_pending_age_seconds")
    assert age is not None and 0.2 <= age < 30
