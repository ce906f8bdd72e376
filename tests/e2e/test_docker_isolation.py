"""The `docker` profile: a runner in a container that starts each run in a container of
its own through the host's engine, and leaves none behind."""

from collections.abc import Iterator

import pytest

from tests.support.compose_stack import Stack, bring_up, tear_down

# One compose stack test at a time (under pytest-xdist): each drives a whole stack on
# timings of seconds (leases, heartbeats), which a second one beside it would crowd.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.exclusive("compose")]

WHERE = """\
import os, socket
print(socket.gethostname(), os.getuid(), sorted(os.listdir('/sys/class/net')))
"""


@pytest.fixture(scope="module")
def docker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    up = bring_up(tmp_path_factory.mktemp("e2e-docker"), profiles=["docker"], runners=1)
    try:
        yield up
    finally:
        tear_down(up)


def test_a_docker_isolated_run_has_its_own_container_and_leaves_none(
    docker_stack: Stack,
) -> None:
    stack = docker_stack
    stack.deploy("where", WHERE)
    run = stack.wait_status(stack.start_run("where", environment="docker"))
    assert run["status"] == "completed", run
    runner = stack.attempts(run["run_id"])[0]["runner_name"]
    assert stack.runner_container(runner).labels["com.docker.compose.service"] == "runner-docker"
    hostname, uid, interfaces = stack.lines(run["run_id"])[0].split(" ", 2)
    assert hostname != runner  # not the runner's container: one of its own
    assert uid == "10001"
    assert interfaces == "['lo']"  # no network
    left = stack.engine.containers.list(all=True, filters={"label": f"minitower.runner={runner}"})
    assert left == []
