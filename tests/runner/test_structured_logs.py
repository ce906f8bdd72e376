"""The live processes' logs: JSON lines on stdout, and a run followed across the runner's
and the API's lines by its ids (``run_id``, ``attempt_no``, the runner's request ids)."""

import pytest

from tests.support.runner_stack import Stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.mark.own_api(log_level="info")
def test_a_run_can_be_followed_through_the_runner_s_and_the_api_s_lines(stack: Stack) -> None:
    answer = stack.http.get("/health", headers={"X-Request-ID": "operator-1"})
    assert answer.headers["x-request-id"] == "operator-1"
    stack.deploy("hello", {"main.py": "print('hi')\n"})
    runner = stack.runner("runner-log", MINITOWER_LOG_LEVEL="debug")
    run_id = stack.start_run("hello")
    assert stack.wait_status(run_id)["status"] == "completed"

    # Every line of the API's output is one JSON object of service api.
    api = stack.api
    wait_for(
        lambda: api.events("request", request_id="operator-1"), timeout=10, what="the access line"
    )
    assert api.log().strip() and len(api.events()) == len(api.log().splitlines()), api.log()
    assert {line["service"] for line in api.events()} == {"api"}
    (mine,) = api.events("request", request_id="operator-1")
    assert (mine["method"], mine["path"], mine["status"]) == ("GET", "/health", 200)
    assert mine["level"] == "info" and mine["ts"].endswith("Z")

    # The runner's lines of the attempt carry the run and the attempt.
    reported = wait_for(
        lambda: runner.events("reported", run_id=run_id, attempt_no=1),
        timeout=10,
        what="the runner's report line",
    )
    assert reported[0]["service"] == "runner" and reported[0]["runner"] == "runner-log"
    assert reported[0]["status"] == "completed"
    assert set(reported[0]["phases_ms"]) >= {"start", "download", "execute", "report"}
    (leased,) = runner.events("leased", run_id=run_id)
    assert leased["attempt_no"] == 1

    # The lease call is found in the API's log by the id the runner sent: its access line
    # and the route's own line for the lease.
    (granted,) = api.events("run leased", run_id=run_id)
    request_id = granted["request_id"]
    assert request_id.startswith("runner-")
    assert (granted["attempt_no"], granted["runner"]) == (1, "runner-log")
    (call,) = runner.events("api call", request_id=request_id)
    assert (call["method"], call["path"], call["status"]) == ("POST", "/api/v1/runs/lease", 200)
    (access,) = api.events("request", request_id=request_id)
    assert (access["method"], access["path"], access["status"]) == (
        "POST",
        "/api/v1/runs/lease",
        200,
    )
    # Each call of the runner had an id of its own.
    calls = runner.events("api call")
    assert len({c["request_id"] for c in calls}) == len(calls)
    # The lease starts the attempt, and the last lines go with the result.
    paths = {c["path"].rsplit("/", 1)[1] for c in calls}
    assert paths >= {"register", "lease", "artifact", "result"}
