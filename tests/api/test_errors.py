"""The error contract: one shape everywhere, 400 (never 422) for anything malformed, 413
over the body limits, and never a 5xx for bad input."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from minitower_shared.schemas import MAX_JSON_DEPTH
from tests.support.api_assertions import JSON, expect_client_error, expect_error
from tests.support.archives import make_archive
from tests.support.clients import Lease, RunnerClient, TeamClient, check
from tests.support.inprocess_api import ClientFactory, Sandbox
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

BIG = str(2**70)
INT64_OVERFLOW = str(2**63)


def test_unknown_route_is_404_with_the_error_shape(client: TestClient) -> None:
    error = expect_error(client.get("/api/v1/nope"), 404, "not_found")
    assert error["message"] == "no such route"
    expect_error(client.get("/nope"), 404, "not_found")
    # "/" is the web console's: without a session, its sign-in page.
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/signin?next=/"


def test_wrong_method_is_405_with_the_error_shape(client: TestClient) -> None:
    expect_error(client.delete("/api/v1/apps"), 405, "invalid_request")
    expect_error(client.put("/health"), 405, "invalid_request")


MALFORMED_JSON = [
    b'{"slug": ',
    b"{'slug': 'hello'}",
    b"not json at all",
    b'{"slug": "hello",}',
    b"\xff\xfe\x00garbage",
    b'{"slug": "\\ud800"}',
]


def _json_endpoints(sandbox: Sandbox) -> list[tuple[str, dict[str, str]]]:
    bootstrap = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
    register = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}
    team, runner, lease = sandbox.team, sandbox.runner, sandbox.lease
    fenced = {**runner.headers, "X-Lease-Token": lease.token}
    return [
        ("/api/v1/bootstrap/team", bootstrap),
        ("/api/v1/runners/register", register),
        ("/api/v1/tokens", team.headers),
        ("/api/v1/apps", team.headers),
        ("/api/v1/apps/hello/runs", team.headers),
        ("/api/v1/runs/lease", runner.headers),
        (f"/api/v1/runs/{lease.run_id}/logs", fenced),
        (f"/api/v1/runs/{lease.run_id}/result", fenced),
    ]


@pytest.mark.parametrize("payload", MALFORMED_JSON)
def test_malformed_json_is_400_invalid_request(sandbox: Sandbox, payload: bytes) -> None:
    client, team = sandbox.client, sandbox.team
    for path, auth in _json_endpoints(sandbox):
        response = client.post(path, content=payload, headers={**auth, **JSON})
        error = expect_error(response, 400, "invalid_request")
        assert error["message"]
    expect_error(
        client.patch("/api/v1/apps/hello", content=payload, headers={**team.headers, **JSON}),
        400,
        "invalid_request",
    )
    assert sandbox.run(sandbox.lease.run_id)["status"] == "running"


def test_no_body_where_every_key_is_optional_takes_the_defaults(
    client: TestClient, team: TeamClient, runner: RunnerClient, deployed: dict[str, Any]
) -> None:
    for headers in ({}, JSON):
        run = check(
            client.post("/api/v1/apps/hello/runs", headers={**team.headers, **headers}), 201
        )
        assert run["input"] == {"greeting": "hello", "count": 1}
        token = check(client.post("/api/v1/tokens", headers={**team.headers, **headers}), 201)
        assert token["role"] == "member"
    assert client.post("/api/v1/runs/lease", headers={**runner.headers, **JSON}).status_code == 200
    # Where a key is required, no body is a validation error.
    response = client.post("/api/v1/apps", headers={**team.headers, **JSON})
    expect_error(response, 400, "invalid_request")


def test_malformed_json_message_says_so(client: TestClient, team: TeamClient) -> None:
    response = client.post("/api/v1/apps", content=b'{"slug": ', headers={**team.headers, **JSON})
    error = expect_error(response, 400, "invalid_request")
    assert "JSON" in error["message"]


@pytest.mark.parametrize("payload", [b"[]", b'"hello"', b"42", b"true"])
def test_json_that_is_not_an_object_is_400(sandbox: Sandbox, payload: bytes) -> None:
    for path, auth in _json_endpoints(sandbox):
        response = sandbox.client.post(path, content=payload, headers={**auth, **JSON})
        expect_error(response, 400, "invalid_request")


def test_json_sent_as_another_content_type_is_400(client: TestClient, team: TeamClient) -> None:
    response = client.post(
        "/api/v1/apps",
        content=b'{"slug": "hello"}',
        headers={**team.headers, "Content-Type": "text/plain"},
    )
    expect_error(response, 400, "invalid_request")


def test_validation_errors_carry_details(client: TestClient, team: TeamClient) -> None:
    error = expect_error(
        team.post("/api/v1/apps", json={"slug": "X", "extra": 1}), 400, "invalid_request"
    )
    assert error["details"]
    for detail in error["details"]:
        assert isinstance(detail["loc"], list) and detail["message"]
    assert {tuple(d["loc"]) for d in error["details"]} >= {("body", "slug"), ("body", "extra")}


# --- body limits --------------------------------------------------------------------------


@pytest.fixture
def small_limits(make_client: ClientFactory, hello_archive: bytes) -> TeamClient:
    client = make_client(max_request_bytes=1024)
    team = TeamClient.bootstrap(client, "limits", BOOTSTRAP_TOKEN)
    team.deploy("hello", hello_archive)
    return team


def test_a_json_body_over_the_request_limit_is_413(small_limits: TeamClient) -> None:
    body = {"slug": "big-app", "description": "x" * 2000}
    expect_error(small_limits.post("/api/v1/apps", json=body), 413, "payload_too_large")
    run_body = {"input": {"blob": "x" * 2000}}
    expect_error(
        small_limits.post("/api/v1/apps/hello/runs", json=run_body), 413, "payload_too_large"
    )
    expect_error(small_limits.get("/api/v1/apps/big-app"), 404, "not_found")
    assert check(small_limits.get("/api/v1/runs"), 200)["runs"] == []


def test_a_chunked_body_over_the_request_limit_is_413(small_limits: TeamClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"slug": "big-app", "description": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    response = small_limits.post(
        "/api/v1/apps", content=chunks(), headers={**JSON, "Transfer-Encoding": "chunked"}
    )
    expect_error(response, 413, "payload_too_large")
    expect_error(small_limits.get("/api/v1/apps/big-app"), 404, "not_found")


def test_a_chunked_body_under_the_limit_is_read(small_limits: TeamClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"slug": "small-app",'
        yield b' "description": "fits"}'

    response = small_limits.post(
        "/api/v1/apps", content=chunks(), headers={**JSON, "Transfer-Encoding": "chunked"}
    )
    assert check(response, 201)["description"] == "fits"


def test_uploads_use_the_artifact_limit_not_the_request_limit(small_limits: TeamClient) -> None:
    archive = make_archive({"main.py": "", "data.txt": "".join(str(i) for i in range(5000))})
    assert len(archive) > 1024
    assert (
        check(small_limits.upload("hello", archive, entrypoint="main.py"), 201)["version_no"] == 2
    )


# --- never a 5xx ---------------------------------------------------------------------------


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


TEAM_GETS = [
    f"/api/v1/runs/{BIG}",
    f"/api/v1/runs/{INT64_OVERFLOW}",
    "/api/v1/runs/-1",
    "/api/v1/runs/0",
    f"/api/v1/runs/{BIG}/attempts",
    f"/api/v1/runs/{BIG}/logs",
    f"/api/v1/runs/{BIG}/logs/stream",
    f"/api/v1/runs?cursor={BIG}",
    "/api/v1/runs?cursor=%C2%B2",
    "/api/v1/runs?cursor=%D9%A1",
    f"/api/v1/runs?offset={BIG}",
    f"/api/v1/runs?limit={BIG}",
    f"/api/v1/apps?cursor={BIG}",
    "/api/v1/apps?cursor=%C2%B2",
    f"/api/v1/tokens?cursor={BIG}",
    f"/api/v1/admin/runners?cursor={BIG}",
    f"/api/v1/apps/hello/versions/{BIG}",
    f"/api/v1/apps/hello/versions?cursor={BIG}",
    "/api/v1/apps/hello/versions?cursor=%C2%B2",
    f"/api/v1/apps/hello/runs?cursor={BIG}",
    "/api/v1/runs/1/logs?after_seq=" + BIG,
    "/api/v1/runs/1/logs?attempt=" + BIG,
    "/api/v1/runs/1/logs?limit=" + BIG,
    "/api/v1/apps/" + "a" * 5000,
    "/api/v1/apps/%00",
    "/api/v1/apps/%ff",
    "/api/v1/runs?status=%00",
    "/api/v1/runs?app=%ff",
]


@pytest.mark.parametrize("path", TEAM_GETS)
def test_absurd_team_reads_are_4xx(sandbox: Sandbox, path: str) -> None:
    expect_client_error(sandbox.team.get(path))


@pytest.mark.parametrize(
    "last_event_id",
    [f"{BIG}:{BIG}", f"1:{BIG}", f"{BIG}:1", "²:1", "1:²", "1:-" + BIG, "1:-2", "\x00"],
)
def test_absurd_last_event_ids_never_break_the_stream(sandbox: Sandbox, last_event_id: str) -> None:
    team = sandbox.team
    response = team.http.get(
        f"/api/v1/runs/{sandbox.completed['run_id']}/logs/stream",
        headers={**team.headers, "Last-Event-ID": last_event_id.encode()},
    )
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert "event: end" in response.text


TEAM_POSTS: list[tuple[str, Any]] = [
    ("/api/v1/apps/hello/runs", {"version_no": 2**70}),
    ("/api/v1/apps/hello/runs", {"version_no": 2**63}),
    ("/api/v1/apps/hello/runs", {"priority": 2**70}),
    ("/api/v1/apps/hello/runs", {"max_retries": 2**70}),
    ("/api/v1/apps/hello/runs", {"input": {"count": 2**70}}),
    ("/api/v1/apps/hello/runs", {"environment": "\x00"}),
    ("/api/v1/apps", {"slug": "hello", "description": "\x00" * 10}),
    ("/api/v1/apps", {"slug": "x" * 10_000}),
    ("/api/v1/tokens", {"name": "\x00"}),
    (f"/api/v1/runs/{BIG}/cancel", {}),
]


@pytest.mark.parametrize(("path", "body"), TEAM_POSTS)
def test_absurd_team_writes_are_never_5xx(
    team: TeamClient, deployed: dict[str, Any], path: str, body: Any
) -> None:
    response = team.post(path, json=body)
    assert response.status_code < 500, response.text


RAW_RUN_BODIES = [
    b'{"input": {"a": NaN}}',
    b'{"input": {"a": Infinity}}',
    b'{"input": {"a": -Infinity}}',
    b'{"input": {"count": NaN}}',
    b'{"priority": NaN}',
    b'{"max_retries": Infinity}',
    b'{"input": {"a": ' + _deep(300).encode() + b"}}",
    b'{"input": {"a": ' + _deep(900).encode() + b"}}",
    b'{"input": {"a": ' + _deep(100_000).encode() + b"}}",
    b'{"input": {"a": "\\ud800"}}',
    b'{"input": {"\\udc00": 1}}',
    b'{"input": {"a": 1e999}}',
]


@pytest.mark.parametrize("payload", RAW_RUN_BODIES)
def test_run_input_that_is_not_plain_json_is_400(sandbox: Sandbox, payload: bytes) -> None:
    team = sandbox.team
    before = check(team.get("/api/v1/runs"), 200)
    response = team.post("/api/v1/apps/hello/runs", content=payload, headers=JSON)
    expect_error(response, 400, "invalid_request")
    assert check(team.get("/api/v1/runs"), 200) == before


def _nested_input(depth: int) -> dict[str, Any]:
    """A run input ``depth`` containers deep, itself included."""
    inner: Any = 1
    for level in range(depth - 1):
        inner = [inner] if level % 2 else {"k": inner}
    return {"tree": inner}


def test_input_nesting_up_to_the_limit_is_fine(team: TeamClient, deployed: dict[str, Any]) -> None:
    deepest = _nested_input(MAX_JSON_DEPTH)
    assert team.create_run("hello", input=deepest)["input"]["tree"] == deepest["tree"]
    error = expect_error(
        team.post("/api/v1/apps/hello/runs", json={"input": _nested_input(MAX_JSON_DEPTH + 1)}),
        400,
        "invalid_request",
    )
    assert "nested" in error["message"]


RUNNER_CALLS: list[tuple[str, str, Any]] = [
    ("POST", "logs", {"logs": [{"seq": 2**70, "stream": "stdout", "line": "x"}]}),
    ("POST", "logs", {"logs": [{"seq": 2**63, "stream": "stdout", "line": "x"}]}),
    (
        "POST",
        "logs",
        {
            "logs": [
                {
                    "seq": 1,
                    "stream": "stdout",
                    "line": "x",
                    "logged_at": "0001-01-01T00:00:00+14:00",
                }
            ]
        },
    ),
    (
        "POST",
        "logs",
        {
            "logs": [
                {
                    "seq": 1,
                    "stream": "stdout",
                    "line": "x",
                    "logged_at": "9999-12-31T23:59:59-14:00",
                }
            ]
        },
    ),
    ("POST", "logs", {"logs": [{"seq": 1, "stream": "stdout", "line": "x", "logged_at": 10**20}]}),
    ("POST", "result", {"status": "completed", "exit_code": 2**70}),
    ("POST", "result", {"status": "completed", "exit_code": -(2**70)}),
    ("POST", "result", {"status": "failed", "error_message": "\x00"}),
]


@pytest.mark.parametrize(("method", "action", "body"), RUNNER_CALLS)
def test_absurd_runner_reports_are_4xx(
    team: TeamClient,
    runner: RunnerClient,
    running: tuple[dict[str, Any], Lease],
    method: str,
    action: str,
    body: Any,
) -> None:
    _, lease = running
    response = runner.call(lease, method, action, body)
    if response.status_code == 200:
        # Accepted as it is: then it must read back without a 5xx either.
        assert team.get(f"/api/v1/runs/{lease.run_id}").status_code == 200
        assert team.get(f"/api/v1/runs/{lease.run_id}/logs").status_code == 200
        return
    expect_client_error(response)
    # The lease survives a refused call.
    check(runner.heartbeat(lease), 200)


@pytest.mark.parametrize("run_id", [BIG, INT64_OVERFLOW, "-" + BIG, "0", "-1", "abc"])
def test_absurd_run_ids_on_runner_calls_are_4xx(sandbox: Sandbox, run_id: str) -> None:
    runner, lease = sandbox.runner, sandbox.lease
    for method, action in (("POST", "start"), ("POST", "heartbeat"), ("GET", "artifact")):
        response = runner.http.request(
            method,
            f"/api/v1/runs/{run_id}/{action}",
            headers={**runner.headers, "X-Lease-Token": lease.token},
        )
        expect_client_error(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + "x" * 8_000},
        {"Authorization": "Bearer \u00e9\u00e8".encode("latin-1")},
        {"Authorization": "Bearer\ttab"},
        {"Authorization": "bearer mtk_lowercase_scheme"},
    ],
    ids=["long", "latin-1", "tab", "lowercase"],
)
def test_odd_authorization_headers_are_401(
    client: TestClient, headers: dict[str, str | bytes]
) -> None:
    expect_error(client.get("/api/v1/me", headers=headers), 401, "unauthorized")


def test_an_authorization_header_over_the_head_limit_is_431(client: TestClient) -> None:
    # MINITOWER_MAX_HEADER_BYTES (16 KiB by default) caps the whole head.
    headers = {"Authorization": "Bearer " + "x" * 100_000}
    expect_error(client.get("/api/v1/me", headers=headers), 431, "header_too_large")


@pytest.mark.parametrize(
    ("form", "archive"),
    [
        ({"entrypoint": "main.py", "timeout_seconds": BIG}, None),
        ({"entrypoint": "\x00"}, None),
        ({"entrypoint": "main.py", "params_schema": "\x00"}, None),
        ({"entrypoint": "main.py", "params_schema": '{"$ref": "http://127.0.0.1:1/x"}'}, None),
        ({"entrypoint": "x" * 100_000}, None),
        ({}, b"\x1f\x8b" + b"\x00" * 100),
        ({}, make_archive({"Towerfile": b"\xff\xfe not utf-8", "main.py": ""})),
        (
            {},
            make_archive(
                {
                    "Towerfile": '[app]\nname = "x"\nscript = "main.py"\n[app.timeout]\nseconds = '
                    + BIG,
                    "main.py": "",
                }
            ),
        ),
    ],
)
def test_absurd_uploads_are_never_5xx(
    team: TeamClient, deployed: dict[str, Any], form: dict[str, str], archive: bytes | None
) -> None:
    response = team.upload("hello", archive or make_archive({"main.py": ""}), **form)
    assert response.status_code < 500, response.text


def test_a_broken_multipart_body_is_400(team: TeamClient, deployed: dict[str, Any]) -> None:
    response = team.post(
        "/api/v1/apps/hello/versions",
        content=b'--xyz\r\nContent-Disposition: form-data; name="artifact"\r\n\r\nabc',
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    expect_client_error(response)
    response = team.post(
        "/api/v1/apps/hello/versions",
        content=b"whatever",
        headers={"Content-Type": "multipart/form-data"},
    )
    expect_client_error(response)
