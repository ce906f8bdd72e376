"""The CLI's HTTP client through ``httpx.MockTransport``: one clear error per failure,
pagination, the SSE parser, and following a run's logs across dropped connections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from minitower_cli.client import ApiClient
from minitower_cli.errors import ConnectionFailed, RequestRefused, WaitTimedOut
from minitower_cli.follow import LogPrinter, follow_run, report_outcome
from minitower_cli.output import Output
from minitower_cli.sse import ServerEvent, parse_events
from minitower_shared.schemas import Me, RunPublic

URL = "http://127.0.0.1:9"
ME = {"team_id": 1, "team_slug": "acme", "token_id": 2, "role": "admin"}


def run_json(**fields: Any) -> dict[str, Any]:
    """A run as the API answers it, with ``fields`` in place of the defaults."""
    return {
        "run_id": 7,
        "app_id": 1,
        "app_slug": "hello",
        "run_no": 1,
        "version_no": 1,
        "environment": "default",
        "status": "queued",
        "input": {},
        "priority": 0,
        "max_retries": 0,
        "retry_count": 0,
        "cancel_requested": False,
        "queued_at": "2026-01-01T00:00:00.000Z",
        "started_at": None,
        "finished_at": None,
        "exit_code": None,
        "error_message": None,
        **fields,
    }


def client(handler: Any, token: str | None = "mtk_x", source: str = "--token") -> ApiClient:
    return ApiClient(URL, token, token_source=source, transport=httpx.MockTransport(handler))


def error_body(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def raised(api: ApiClient, path: str = "/api/v1/me") -> str:
    with pytest.raises((RequestRefused, ConnectionFailed)) as caught:
        api.get(Me, path)
    return caught.value.message


def test_token_and_user_agent_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ME)

    assert client(handler).get(Me, "/api/v1/me") == Me.model_validate(ME)
    assert seen[0].headers["Authorization"] == "Bearer mtk_x"
    assert seen[0].headers["User-Agent"].startswith("minitower-cli/")


def test_api_errors_are_one_sentence() -> None:
    api = client(lambda r: error_body(404, "not_found", "app 'nope' not found"))
    assert raised(api) == "app 'nope' not found (404 not_found)"


def test_unauthorized_names_where_the_token_came_from() -> None:
    api = client(
        lambda r: error_body(401, "unauthorized", "invalid or revoked team token"),
        source="MINITOWER_API_TOKEN",
    )
    assert raised(api) == (
        "the API refused the token (from MINITOWER_API_TOKEN): invalid or revoked team token "
        "(401 unauthorized)"
    )
    anonymous = client(lambda r: error_body(401, "unauthorized", "missing bearer token"), None)
    assert "run `minitower login --server URL --token TOKEN`" in raised(anonymous)


def test_a_server_that_is_not_the_api() -> None:
    api = client(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    message = raised(api)
    assert message.startswith(f"the server at {URL} answered HTTP 502 Bad Gateway to GET")
    assert "is --server the MiniTower API?" in message
    not_json = client(lambda r: httpx.Response(200, text="<html></html>"))
    assert "that is not JSON" in raised(not_json)


def test_an_answer_that_is_not_the_schema() -> None:
    api = client(lambda r: httpx.Response(200, json={**ME, "team_id": "one"}))
    message = raised(api)
    assert "not the API's Me (team_id: " in message
    assert "is --server the MiniTower API, of this CLI's version?" in message


def test_transport_failures() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    assert raised(client(refused)) == (
        f"cannot reach the API at {URL} (connection refused): is it running? "
        "(set the server with --server, MINITOWER_SERVER_URL or `minitower login`)"
    )

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    assert raised(client(slow)) == f"the API at {URL} did not answer in time (timed out)"


class Thing(BaseModel):
    id: int


class Things(BaseModel):
    things: list[Thing]
    next_cursor: str | None


def test_list_all_follows_cursors_up_to_the_limit() -> None:
    calls: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append(params)
        start = int(params.get("cursor", "0"))
        size = int(params["limit"])
        items = [{"id": i} for i in range(start, min(start + size, 450))]
        following = str(start + size) if start + size < 450 else None
        return httpx.Response(200, json={"things": items, "next_cursor": following})

    api = client(handler)

    def unpack(page: Things) -> tuple[list[Thing], str | None]:
        return page.things, page.next_cursor

    assert [x.id for x in api.list_all("/t", Things, unpack, limit=10_000)] == list(range(450))
    assert [c["limit"] for c in calls] == ["200", "200", "200"]
    calls.clear()
    listed = api.list_all("/t", Things, unpack, limit=250, params={"app": "a", "x": None})
    assert len(listed) == 250
    assert calls == [{"app": "a", "limit": "200"}, {"app": "a", "limit": "50", "cursor": "200"}]


def test_sse_parser() -> None:
    lines = [
        ": keep-alive",
        "",
        "id: 1:1",
        "event: log",
        'data: {"a": 1}',
        "",
        "event: multi",
        "data: one",
        "data:two",
        "",
        "retry: 10",
        "data: plain",
        "",
        "id: 2:5",
        "event: cut",
        "data: never dispatched",
    ]
    assert list(parse_events(lines)) == [
        ServerEvent("log", '{"a": 1}', "1:1"),
        ServerEvent("multi", "one\ntwo", "1:1"),
        ServerEvent("message", "plain", "1:1"),
    ]


# --- following a run ---------------------------------------------------------------------


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def log(attempt: int, seq: int, stream: str, line: str) -> bytes:
    entry = {
        "seq": seq,
        "attempt_no": attempt,
        "stream": stream,
        "line": line,
        "logged_at": "2026-01-01T00:00:00.000Z",
    }
    return sse("log", entry, f"{attempt}:{seq}")


class Broken(httpx.SyncByteStream):
    """A stream that sends ``chunks`` and then loses the connection."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset")


def test_follow_resumes_after_a_dropped_connection(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("minitower_cli.follow.time.sleep", lambda _s: None)
    resumed_from: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        resumed_from.append(request.headers.get("Last-Event-ID"))
        if len(resumed_from) == 1:
            first = [log(1, 1, "stdout", "one"), log(1, 2, "stderr", "oops")]
            return httpx.Response(200, stream=Broken(first))
        if len(resumed_from) == 2:
            return httpx.Response(503, json={"error": {"code": "internal", "message": "busy"}})
        rest = [log(2, 1, "stdout", "again"), b": keep-alive\n\n", sse("end", {"status": "failed"})]
        return httpx.Response(200, content=b"".join(rest))

    output = Output()
    status = follow_run(client(handler), 7, LogPrinter(output), output)
    assert status == "failed"
    assert resumed_from == [None, "1:2", "1:2"]
    captured = capsys.readouterr()
    assert captured.out == "one\nagain\n"
    assert "oops\n" in captured.err
    assert "connection reset" in captured.err and "reconnecting" in captured.err
    assert "── attempt 2 ──" in captured.err


def test_follow_gives_up_after_repeated_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("minitower_cli.follow.time.sleep", lambda _s: None)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    output = Output()
    with pytest.raises(ConnectionFailed, match="gave up following run 7"):
        follow_run(client(handler), 7, LogPrinter(output), output)


def test_follow_stops_at_the_wait_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=run_json(status="running"))

    output = Output()
    with pytest.raises(WaitTimedOut, match=r"stopped waiting after 0\.1s: run 7 is still running"):
        follow_run(client(handler), 7, LogPrinter(output), output, timeout=0.1)


def test_unknown_run_is_an_api_error() -> None:
    output = Output()
    api = client(lambda r: error_body(404, "not_found", "run 7 not found"))
    with pytest.raises(RequestRefused, match="run 7 not found"):
        follow_run(api, 7, LogPrinter(output), output)


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    body = log(1, 1, "stdout", "hi") + sse("end", {"status": "completed"})
    output = Output()
    follow_run(
        client(lambda r: httpx.Response(200, content=body)),
        7,
        LogPrinter(output, json_lines=True),
        output,
    )
    line = json.loads(capsys.readouterr().out)
    assert (line["line"], line["stream"], line["attempt_no"]) == ("hi", "stdout", 1)


@pytest.mark.parametrize(
    ("status", "code", "text"),
    [
        ("completed", 0, "run 3 completed"),
        ("failed", 1, "run 3 failed (exit code 4)"),
        ("dead", 1, "run 3 dead: its lease expired with no retries left"),
        ("cancelled", 2, "run 3 cancelled"),
    ],
)
def test_outcomes_and_exit_codes(
    status: str, code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_json(
        run_id=3,
        status=status,
        exit_code=4 if status == "failed" else None,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01.5Z",
        error_message=None,
    )
    assert report_outcome(Output(), RunPublic.model_validate(run)) == code
    assert text in capsys.readouterr().err
