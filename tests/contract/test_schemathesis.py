"""schemathesis over the whole OpenAPI document the API serves, against a real
``minitowerd``: every operation, as a team admin, a team member and a runner with a
live lease, with all of schemathesis's checks. 0 server errors and 0 answers that
contradict the document.

Examples per operation are bounded (MINITOWER_CONTRACT_EXAMPLES, default 25) and
derandomised, so a run takes a minute or two on 2 cores and fails the same way twice.
"""

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from tests.support.archives import HELLO_TOWERFILE, make_archive
from tests.support.clients import RunnerClient, TeamClient, check
from tests.support.processes import LiveApi
from tests.support.secrets import KEY as SECRETS_KEY
from tests.support.tokens import BOOTSTRAP_TOKEN, REGISTRATION_TOKEN

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("MINITOWER_CONTRACT_EXAMPLES", "25"))
# An answer slower than this is a finding too (and keeps a hung stream from hanging CI).
REQUEST_TIMEOUT = 20.0
RUNNER_PATHS = ("/start", "/artifact", "/heartbeat", "/logs", "/result", "/secrets")


def _is_runner_call(method: str, path: str) -> bool:
    return path == "/api/v1/runs/lease" or (
        path.startswith("/api/v1/runs/{run_id}/")
        and path.endswith(RUNNER_PATHS)
        and not (method == "GET" and path.endswith("/logs"))
    )


# positive_data_acceptance: a request the document accepts may still be refused for
# what the document cannot know: a missing object (404), a conflict (409), a cap (429)
# and, on the runner's calls, a lease that is not (or no longer) live for that run (410).
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "410", "429"]
            }
        }
    }
)


def _setup(http: httpx.Client) -> tuple[dict[str, dict[str, str]], int]:
    """Credentials per role. The runner holds a live lease of another team's run, so its
    long poll answers 409 at once instead of waiting; the team's own runs are all
    finished, so a log stream schemathesis opens on one ends at once."""
    archive = make_archive({"Towerfile": HELLO_TOWERFILE, "main.py": "pass\n"})
    team = TeamClient.bootstrap(http, "acme", BOOTSTRAP_TOKEN)
    team.deploy("hello", archive)
    member = check(team.post("/api/v1/tokens", json={"name": "m", "role": "member"}), 201)
    finisher = RunnerClient.register(http, "finisher", REGISTRATION_TOKEN)
    team.create_run("hello")
    done = finisher.lease()
    assert done is not None
    check(finisher.start(done), 200)
    check(finisher.logs(done, [{"seq": 1, "stream": "stdout", "line": "hi"}]), 200)
    check(finisher.result(done, "completed", exit_code=0), 200)
    # Runs created through the API by schemathesis stay queued: the app is disabled.
    check(team.patch("/api/v1/apps/hello", json={"disabled": True}), 200)

    other = TeamClient.bootstrap(http, "other", BOOTSTRAP_TOKEN)
    other.deploy("hello", archive)
    other.create_run("hello")
    runner = RunnerClient.register(http, "busy", REGISTRATION_TOKEN)
    lease = runner.lease()
    assert lease is not None
    check(runner.start(lease), 200)
    roles = {
        "admin": {"Authorization": f"Bearer {team.token}"},
        "member": {"Authorization": f"Bearer {member['token']}"},
        "runner": {"Authorization": f"Bearer {runner.token}", "X-Lease-Token": lease.token},
    }
    return roles, lease.run_id


def _check_operation(
    operation: Any,
    headers: dict[str, str],
    base_url: str,
    failures: list[str],
    path_parameters: dict[str, Any] | None = None,
) -> None:
    @given(case=operation.as_strategy(path_parameters=path_parameters))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT)

    try:
        run()
    except (AssertionError, FailureGroup) as exc:
        failures.append(f"{operation.label} as {headers.get('Authorization', '')[:12]}: {exc}")


def test_the_api_keeps_its_openapi_contract(make_live_api: Callable[..., LiveApi]) -> None:
    api = make_live_api({"MINITOWER_LEASE_TTL": "600s", "MINITOWER_SECRETS_KEY": SECRETS_KEY})
    with api.client() as http:
        roles, leased_run = _setup(http)
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=CONFIG)
    failures: list[str] = []
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        path, method = operation.path, operation.method.upper()
        if _is_runner_call(method, path):
            role_names = ["runner"]
        elif path.startswith(("/api/v1/bootstrap", "/api/v1/runners/register")):
            # Operator secrets: schemathesis without them checks the refusals.
            role_names = ["member"]
        else:
            role_names = ["admin", "member"]
        for role in role_names:
            _check_operation(operation, roles[role], api.url, failures)
            operations += 1
        if _is_runner_call(method, path) and "{run_id}" in path:
            # And on the leased run itself, where the lease is live (until a result).
            _check_operation(operation, roles["runner"], api.url, failures, {"run_id": leased_run})
            operations += 1
    print(
        f"\nschemathesis: {operations} operation/role pairs in {time.monotonic() - started:.0f} s"
    )
    assert operations > 20
    assert not failures, "\n\n".join(failures)
