"""The webhook delivery loop against a receiver on 127.0.0.1: retries with growing
backoff, signatures the README recipe verifies, at least once with two loops, the
Slack shape, and private receivers refused at send time without the setting."""

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from minitower_api.main import create_app
from minitower_api.settings import ApiSettings
from minitower_shared.db import create_db_engine
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN
from tests.support.webhook_receiver import webhook_receiver
from tests.support.webhooks import delivery_loop, fast_policy, readme_verify

HOOKS = "/api/v1/webhooks"


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[TestClient]:
    allowing = settings.model_copy(update={"webhook_allow_private": True})
    with TestClient(create_app(allowing), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def db(settings: ApiSettings) -> Iterator[Engine]:
    engine = create_db_engine(settings.database, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def acme(api: TestClient, hello_archive: bytes) -> TeamClient:
    team = TeamClient.bootstrap(api, "acme", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    return team


def fail_a_run(api: TestClient, team: TeamClient) -> dict[str, Any]:
    runner = RunnerClient.register(api, "runner-1", REGISTRATION_TOKEN)
    run = team.create_run("hello")
    lease = runner.lease()
    assert lease is not None and lease.run_id == run["run_id"]
    check(runner.start(lease), 200)
    check(runner.result(lease, "failed", exit_code=3, error_message="exit code 3"), 200)
    return run


def test_retries_with_growing_backoff_until_delivered(
    api: TestClient, db: Engine, acme: TeamClient
) -> None:
    with webhook_receiver(script=[500, 500, 500]) as receiver:
        hook = check(acme.post(HOOKS, json={"url": receiver.url, "events": ["run.failed"]}), 201)
        run = fail_a_run(api, acme)
        with delivery_loop(db, fast_policy(backoff_base=0.4)):
            got = receiver.wait_for(4)
            path = f"{HOOKS}/{hook['webhook_id']}/deliveries"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                attempts = check(acme.get(path), 200)["deliveries"]
                if attempts and attempts[0]["succeeded"]:
                    break
                time.sleep(0.05)
    assert len(got) == 4
    ids = {json.loads(r.body)["id"] for r in got}
    assert len(ids) == 1, "the event id is stable across retries"
    gaps = [b.at - a.at for a, b in pairwise(got)]
    # Nominal waits 0.4, 0.8, 1.6 s, each jittered down to at most half: never shorter
    # than the one before (poll and scheduling noise aside), and growing overall.
    assert gaps[2] > gaps[0] + 0.2, gaps
    assert gaps[1] + 0.15 >= gaps[0] and gaps[2] + 0.15 >= gaps[1], gaps
    assert [a["attempt_no"] for a in attempts] == [4, 3, 2, 1]
    assert [a["status_code"] for a in attempts] == [200, 500, 500, 500]
    assert [a["succeeded"] for a in attempts] == [True, False, False, False]
    assert {a["delivery_status"] for a in attempts} == {"delivered"}
    assert all(a["duration_ms"] >= 0 for a in attempts)
    assert "500" in attempts[1]["error"]
    body = json.loads(got[-1].body)
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["type"] == "run.failed"
    assert body["data"]["run"]["id"] == run["run_id"]
    assert body["data"]["run"]["app"] == "hello"
    assert body["data"]["run"]["status"] == "failed"
    assert body["data"]["run"]["error"] == "exit code 3"
    assert body["data"]["run"]["link"] == f"/api/v1/runs/{run['run_id']}"
    assert got[-1].headers["MiniTower-Event-Id"] == body["id"]
    assert got[-1].headers["User-Agent"].startswith("MiniTower-Webhooks")


def test_signature_verifies_with_the_readme_recipe_and_replays_are_caught(
    api: TestClient, db: Engine, acme: TeamClient
) -> None:
    verify = readme_verify()
    with webhook_receiver() as receiver:
        hook = check(acme.post(HOOKS, json={"url": receiver.url, "events": ["run.failed"]}), 201)
        fail_a_run(api, acme)
        with delivery_loop(db, fast_policy()):
            (request,) = receiver.wait_for(1)
    header = request.headers["MiniTower-Signature"]
    secret = hook["secret"]
    assert verify(secret, header, request.body)
    assert not verify("whsec_wrong" + secret, header, request.body)
    assert not verify(secret, header, request.body + b" ")
    # The same request replayed six minutes later is refused.
    sent_at = int(header.split(",")[0].removeprefix("t="))
    assert not verify(secret, header, request.body, now=sent_at + 360)
    assert verify(secret, header, request.body, now=sent_at + 240)


def test_two_loops_deliver_every_event_with_no_gap(
    api: TestClient, db: Engine, settings: ApiSettings, acme: TeamClient
) -> None:
    with webhook_receiver() as receiver:
        check(acme.post(HOOKS, json={"url": receiver.url, "events": ["run.cancelled"]}), 201)
        runs = [acme.create_run("hello") for _ in range(12)]
        for run in runs:
            check(acme.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
        other = create_db_engine(settings.database, pool_size=2)
        try:
            with delivery_loop(db, fast_policy()), delivery_loop(other, fast_policy()):
                got = receiver.wait_for(12)
                time.sleep(0.3)
        finally:
            other.dispose()
        got = receiver.requests()
    bodies = [json.loads(r.body) for r in got]
    assert {b["data"]["run"]["id"] for b in bodies} == {r["run_id"] for r in runs}
    assert len({b["id"] for b in bodies}) == 12
    assert {b["type"] for b in bodies} == {"run.cancelled"}


def test_a_webhook_never_hears_of_another_teams_runs(
    api: TestClient, db: Engine, acme: TeamClient, hello_archive: bytes
) -> None:
    """globex has an app of the same slug and subscribes to every run event, filtered
    by that slug: acme's runs reach acme's receiver only."""
    globex = TeamClient.bootstrap(api, "globex", BOOTSTRAP_TOKEN)
    globex.deploy("hello", hello_archive)
    events = ["run.completed", "run.failed", "run.dead", "run.cancelled"]
    with webhook_receiver() as theirs, webhook_receiver() as ours:
        check(globex.post(HOOKS, json={"url": theirs.url, "events": events}), 201)
        filtered = {"url": theirs.url, "events": events, "app": "hello"}
        check(globex.post(HOOKS, json=filtered), 201)
        check(acme.post(HOOKS, json={"url": ours.url, "events": ["run.cancelled"]}), 201)
        acme_runs = [acme.create_run("hello") for _ in range(3)]
        for run in acme_runs:
            check(acme.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
        globex_run = globex.create_run("hello")
        check(globex.post(f"/api/v1/runs/{globex_run['run_id']}/cancel"), 200)
        with delivery_loop(db, fast_policy()):
            ours.wait_for(3)
            theirs.wait_for(2)
            time.sleep(0.3)
        heard = [json.loads(r.body)["data"]["run"]["id"] for r in theirs.requests()]
        mine = [json.loads(r.body)["data"]["run"]["id"] for r in ours.requests()]
    assert heard == [globex_run["run_id"]] * 2
    assert sorted(mine) == sorted(r["run_id"] for r in acme_runs)


def test_slack_format_shape(api: TestClient, db: Engine, acme: TeamClient) -> None:
    with webhook_receiver() as receiver:
        body = {"url": receiver.url, "events": ["run.failed"], "format": "slack"}
        check(acme.post(HOOKS, json=body), 201)
        run = fail_a_run(api, acme)
        with delivery_loop(db, fast_policy()):
            (request,) = receiver.wait_for(1)
    message = json.loads(request.body)
    assert set(message) == {"text", "blocks"}
    assert f"run {run['run_id']}" in message["text"] and "failed" in message["text"]
    section, context = message["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": message["text"]}}
    assert context["type"] == "context"
    assert [e["type"] for e in context["elements"]] == ["mrkdwn"]


def test_private_receiver_is_refused_at_send_time_without_the_setting(
    api: TestClient, db: Engine, acme: TeamClient
) -> None:
    """Created while allowed (an API with the setting), sent by a loop without it."""
    with webhook_receiver() as receiver:
        hook = check(acme.post(HOOKS, json={"url": receiver.url, "events": ["run.failed"]}), 201)
        fail_a_run(api, acme)
        path = f"{HOOKS}/{hook['webhook_id']}/deliveries"
        with delivery_loop(db, fast_policy(allow_private=False)):
            deadline = time.monotonic() + 10
            attempts: list[dict[str, Any]] = []
            while not attempts and time.monotonic() < deadline:
                attempts = check(acme.get(path), 200)["deliveries"]
                time.sleep(0.05)
        assert receiver.requests() == []
    assert attempts and attempts[0]["status_code"] is None
    assert "loopback" in attempts[0]["error"] and not attempts[0]["succeeded"]


def test_redirects_are_failures_and_old_events_give_up(
    api: TestClient, db: Engine, acme: TeamClient
) -> None:
    with webhook_receiver(script=[302]) as receiver:
        hook = check(acme.post(HOOKS, json={"url": receiver.url, "events": ["run.failed"]}), 201)
        fail_a_run(api, acme)
        path = f"{HOOKS}/{hook['webhook_id']}/deliveries"
        with delivery_loop(db, fast_policy(max_age=timedelta(0))):
            receiver.wait_for(1)
            deadline = time.monotonic() + 10
            attempts: list[dict[str, Any]] = []
            while not attempts and time.monotonic() < deadline:
                attempts = check(acme.get(path), 200)["deliveries"]
                time.sleep(0.05)
            time.sleep(0.5)
        assert len(receiver.requests()) == 1, "a failed delivery is not sent again"
    (attempt,) = attempts
    assert attempt["status_code"] == 302 and "redirect" in attempt["error"]
    assert attempt["delivery_status"] == "failed"
