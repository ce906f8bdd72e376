"""Reading a run's logs: GET pages and the Server-Sent Events stream."""

import json
import threading
import time
from typing import Any

import pytest

from tests.support.api_assertions import assert_timestamps, expect_error, finish
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.inprocess_api import Sandbox, ShortTtl


def lines(*seqs: int, prefix: str = "line") -> list[dict[str, Any]]:
    return [
        {"seq": seq, "stream": "stderr" if seq % 2 else "stdout", "line": f"{prefix} {seq}"}
        for seq in seqs
    ]


def read(team: TeamClient, run_id: int, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = check(team.get(f"/api/v1/runs/{run_id}/logs", params=params), 200)
    return result


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events as {event, data, id}; comment lines (keep-alives) are skipped."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for raw in block.splitlines():
            if not raw or raw.startswith(":"):
                continue
            name, _, value = raw.partition(": ")
            fields[name] = value
        if fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


@pytest.fixture
def finished_run(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> dict[str, Any]:
    """A completed run whose only attempt logged seq 1‥5."""
    run, lease = running
    check(runner.logs(lease, lines(1, 2, 3, 4, 5)), 200)
    check(runner.result(lease, "completed", exit_code=0), 200)
    return run


# --- GET /logs -----------------------------------------------------------------------------


def test_logs_in_seq_order_with_next_seq(team: TeamClient, finished_run: dict[str, Any]) -> None:
    page = read(team, finished_run["run_id"])
    assert set(page) == {"logs", "next_seq"}
    assert [line["seq"] for line in page["logs"]] == [1, 2, 3, 4, 5]
    assert page["next_seq"] == 5
    first = page["logs"][0]
    assert set(first) == {"seq", "attempt_no", "stream", "line", "logged_at"}
    assert first == {**first, "seq": 1, "attempt_no": 1, "stream": "stderr", "line": "line 1"}
    assert_timestamps(first, "logged_at")


def test_after_seq_pages_through_the_lines(team: TeamClient, finished_run: dict[str, Any]) -> None:
    run_id = finished_run["run_id"]
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        page = read(team, run_id, after_seq=after, limit=2)
        pages += 1
        if not page["logs"]:
            assert page["next_seq"] == after
            break
        seen += [line["seq"] for line in page["logs"]]
        assert page["next_seq"] == page["logs"][-1]["seq"]
        after = page["next_seq"]
    assert seen == [1, 2, 3, 4, 5]
    assert pages == 4
    assert [line["seq"] for line in read(team, run_id, after_seq=3)["logs"]] == [4, 5]


def test_logs_arrive_out_of_order_and_are_read_in_order(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    check(runner.logs(lease, lines(3, 1)), 200)
    check(runner.logs(lease, lines(2)), 200)
    assert [line["seq"] for line in read(team, run["run_id"])["logs"]] == [1, 2, 3]


def test_a_run_without_attempts_has_no_logs(team: TeamClient, deployed: dict[str, Any]) -> None:
    run = team.create_run("hello")
    page = read(team, run["run_id"])
    assert page["logs"] == []
    expect_error(
        team.get(f"/api/v1/runs/{run['run_id']}/logs", params={"attempt": 1}), 404, "not_found"
    )


def test_attempt_selects_one_attempts_lines(short_ttl: ShortTtl) -> None:
    team, runner = short_ttl.team, short_ttl.runner
    run = team.create_run("hello", max_retries=1)
    first = runner.lease()
    assert first is not None
    check(runner.start(first), 200)
    check(runner.logs(first, lines(1, 2, prefix="first")), 200)
    time.sleep(short_ttl.ttl + 0.25)
    second = runner.lease()
    assert second is not None and second.body["attempt_no"] == 2
    check(runner.start(second), 200)
    check(runner.logs(second, lines(1, prefix="second")), 200)
    check(runner.result(second, "completed"), 200)

    run_id = run["run_id"]
    latest = read(team, run_id)
    assert [(line["attempt_no"], line["line"]) for line in latest["logs"]] == [(2, "second 1")]
    one = read(team, run_id, attempt=1)
    assert [(line["attempt_no"], line["line"]) for line in one["logs"]] == [
        (1, "first 1"),
        (1, "first 2"),
    ]
    assert read(team, run_id, attempt=2) == latest
    assert [line["line"] for line in read(team, run_id, attempt=1, after_seq=1)["logs"]] == [
        "first 2"
    ]
    expect_error(team.get(f"/api/v1/runs/{run_id}/logs", params={"attempt": 3}), 404, "not_found")

    # The stream follows every attempt in order.
    stream = team.get(f"/api/v1/runs/{run_id}/logs/stream")
    events = parse_sse(stream.text)
    assert [(e["event"], e.get("id")) for e in events] == [
        ("log", "1:1"),
        ("log", "1:2"),
        ("log", "2:1"),
        ("end", None),
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"after_seq": -2},
        {"after_seq": "x"},
        {"attempt": 0},
        {"attempt": "latest"},
        {"limit": 0},
        {"limit": 10_001},
    ],
)
def test_invalid_log_params_are_400(sandbox: Sandbox, params: dict[str, Any]) -> None:
    response = sandbox.team.get(f"/api/v1/runs/{sandbox.completed['run_id']}/logs", params=params)
    expect_error(response, 400, "invalid_request")


def test_another_teams_logs_are_404(
    team: TeamClient, other_team: TeamClient, finished_run: dict[str, Any]
) -> None:
    run_id = finished_run["run_id"]
    expect_error(other_team.get(f"/api/v1/runs/{run_id}/logs"), 404, "not_found")
    expect_error(other_team.get(f"/api/v1/runs/{run_id}/logs/stream"), 404, "not_found")
    expect_error(team.get("/api/v1/runs/999999/logs"), 404, "not_found")
    expect_error(team.get("/api/v1/runs/999999/logs/stream"), 404, "not_found")


def test_logs_need_a_team_token(
    team: TeamClient, runner: RunnerClient, finished_run: dict[str, Any]
) -> None:
    for suffix in ("", "/stream"):
        path = f"/api/v1/runs/{finished_run['run_id']}/logs{suffix}"
        expect_error(team.http.get(path), 401, "unauthorized")
        expect_error(team.http.get(path, headers=runner.headers), 401, "unauthorized")


# --- GET /logs/stream ---------------------------------------------------------------------


def test_stream_of_a_finished_run_sends_every_line_then_end(
    team: TeamClient, finished_run: dict[str, Any]
) -> None:
    response = team.get(f"/api/v1/runs/{finished_run['run_id']}/logs/stream")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert "event: log\n" in response.text
    events = parse_sse(response.text)
    assert [e["event"] for e in events] == ["log"] * 5 + ["end"]
    assert [e["id"] for e in events[:-1]] == ["1:1", "1:2", "1:3", "1:4", "1:5"]
    assert [e["data"]["line"] for e in events[:-1]] == [f"line {n}" for n in range(1, 6)]
    assert events[0]["data"]["attempt_no"] == 1
    assert events[0]["data"]["stream"] == "stderr"
    assert events[-1]["data"] == {"status": "completed"}


def test_stream_resumes_after_last_event_id(team: TeamClient, finished_run: dict[str, Any]) -> None:
    response = team.http.get(
        f"/api/v1/runs/{finished_run['run_id']}/logs/stream",
        headers={**team.headers, "Last-Event-ID": "1:3"},
    )
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [e.get("id") for e in events] == ["1:4", "1:5", None]


def test_stream_of_a_cancelled_queued_run_ends_at_once(
    team: TeamClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    check(team.post(f"/api/v1/runs/{run['run_id']}/cancel"), 200)
    events = parse_sse(team.get(f"/api/v1/runs/{run['run_id']}/logs/stream").text)
    assert events == [{"event": "end", "data": {"status": "cancelled"}}]


@pytest.mark.parametrize("last_event_id", ["garbage", "", "1:", ":3", "-1:-1"])
def test_stream_ignores_a_malformed_last_event_id(
    team: TeamClient, finished_run: dict[str, Any], last_event_id: str
) -> None:
    response = team.http.get(
        f"/api/v1/runs/{finished_run['run_id']}/logs/stream",
        headers={**team.headers, "Last-Event-ID": last_event_id},
    )
    assert response.status_code == 200
    assert [e["event"] for e in parse_sse(response.text)] == ["log"] * 5 + ["end"]


def test_stream_follows_a_live_run_until_it_ends(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    check(runner.logs(lease, lines(1)), 200)
    received: dict[str, Any] = {}

    def follow() -> None:
        response = team.get(f"/api/v1/runs/{run['run_id']}/logs/stream")
        received["status"] = response.status_code
        received["events"] = parse_sse(response.text)

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.4)
    assert follower.is_alive(), "the stream ended while the run was still running"
    check(runner.logs(lease, lines(2, 3)), 200)
    time.sleep(0.4)
    check(runner.result(lease, "completed", exit_code=0), 200)
    follower.join(timeout=10)
    assert not follower.is_alive(), "the stream did not end after the run finished"
    assert received["status"] == 200
    events = received["events"]
    assert [e["event"] for e in events] == ["log", "log", "log", "end"]
    assert [e["data"]["seq"] for e in events[:-1]] == [1, 2, 3]
    assert events[-1]["data"] == {"status": "completed"}


def test_stream_of_a_run_without_lines_ends_with_its_status(
    team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    run = team.create_run("hello")
    lease = runner.lease()
    assert lease is not None
    finish(runner, lease, "failed", exit_code=2)
    events = parse_sse(team.get(f"/api/v1/runs/{run['run_id']}/logs/stream").text)
    assert events == [{"event": "end", "data": {"status": "failed"}}]


def test_log_times_come_back_in_utc(
    team: TeamClient, runner: RunnerClient, running: tuple[dict[str, Any], Lease]
) -> None:
    run, lease = running
    sent = {
        1: "2026-01-02T05:04:05.678+02:00",
        2: "2026-01-02T03:04:05.678",
        3: "0001-01-01T00:00:00Z",
        4: "9999-12-31T23:59:59.999Z",
    }
    batch = [
        {"seq": seq, "stream": "stdout", "line": str(seq), "logged_at": logged_at}
        for seq, logged_at in sent.items()
    ]
    check(runner.logs(lease, batch), 200)
    logs = read(team, run["run_id"])["logs"]
    assert [line["logged_at"] for line in logs] == [
        "2026-01-02T03:04:05.678Z",
        "2026-01-02T03:04:05.678Z",  # no offset: taken as UTC
        "0001-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
    ]
