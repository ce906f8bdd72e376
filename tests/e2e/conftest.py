"""End-to-end tests of the containerised kit: the real ``compose.yaml`` brought up with
testcontainers' ``DockerCompose``, reached only through the API port it publishes on
127.0.0.1.

Each module gets a stack (a compose project) of its own, with an override file naming
the project and an env file with the secrets and faster timings (6 s leases, a reaper
pass every second), so a lost runner's run comes back within seconds. The images must
exist already: ``deploy/offline/build-images.sh`` builds them (CI runs it first).
"""

from collections.abc import Iterator

import pytest

from tests.support.compose_stack import Stack, bring_up, tear_down


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    up = bring_up(tmp_path_factory.mktemp("e2e"))
    try:
        yield up
    finally:
        tear_down(up)
