"""``minitower-runner``: the runner agent as a process."""

import ctypes
import logging
import os
import signal
import sys
from contextlib import suppress
from types import FrameType
from typing import Annotated

import typer

from minitower_runner.agent import Runner
from minitower_runner.client import ApiClient, Refused, Unauthorized
from minitower_runner.credentials import Credentials, Identity, RegistrationUnavailable
from minitower_runner.isolation import IsolationRefused
from minitower_runner.process_executor import ProcessExecutor, WorkloadIdentity
from minitower_runner.settings import RunnerSettings
from minitower_runner.venvs import IndexOptions, VenvCache, find_uv
from minitower_runner.workload import Executor
from minitower_shared.config import load_settings
from minitower_shared.logging_setup import configure_logging

app = typer.Typer(add_completion=False)

_PR_SET_DUMPABLE = 4

HELP = """Lease runs from the MiniTower API and execute them, until SIGTERM or SIGINT.

Each run gets a fresh workspace and a cached venv (or its own Docker container with
MINITOWER_RUNNER_ISOLATION=docker). The runner registers at start-up with
MINITOWER_RUNNER_REGISTRATION_TOKEN under MINITOWER_RUNNER_NAME (default: the hostname)
and keeps its token in MINITOWER_DATA_DIR. On SIGTERM it stops leasing, lets the current
run finish for up to MINITOWER_DRAIN_TIMEOUT, and exits 0.

Main settings (environment variables; see the README for all of them):
MINITOWER_SERVER_URL, MINITOWER_RUNNER_NAME, MINITOWER_RUNNER_ENVIRONMENT,
MINITOWER_DATA_DIR, MINITOWER_RUNNER_ISOLATION, MINITOWER_RUNNER_IMAGE,
MINITOWER_KILL_GRACE_PERIOD, MINITOWER_DRAIN_TIMEOUT, MINITOWER_POLL_INTERVAL.
"""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"minitower-runner: {message}", err=True)
    return typer.Exit(2)


def hide_secrets() -> None:
    """Keep the runner's secrets from its workloads, which run as the same user: drop
    the registration token from the environment (a child could read it in
    /proc/<pid>/environ) and make the process non-dumpable, which closes its /proc files
    and ptrace to processes of the same uid. Process isolation still trusts the code it
    runs; see the README."""
    os.environ.pop("MINITOWER_RUNNER_REGISTRATION_TOKEN", None)
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _executor(settings: RunnerSettings, index: IndexOptions) -> Executor:
    if settings.runner_isolation == "docker":
        from minitower_runner.docker_executor import DockerExecutor, DockerUnavailable

        try:
            return DockerExecutor(settings, settings.runner_name, index)
        except DockerUnavailable as exc:
            raise _fail(f"MINITOWER_RUNNER_ISOLATION=docker, but {exc}") from exc
    python = str(settings.runner_python) if settings.runner_python else sys.executable
    venvs = VenvCache(settings.venvs_dir, python=python, uv=find_uv(), index=index)
    identity = WorkloadIdentity(
        uid=settings.runner_workload_uid,
        gid=settings.runner_workload_gid,
        trust_all_teams=settings.runner_trust_all_teams,
        data_dir=settings.data_dir,
        work_root=settings.data_dir / "work",
    )
    return ProcessExecutor(venvs, identity)


@app.command(help=HELP)
def runner(
    once: Annotated[
        bool, typer.Option("--once", help="Exit after one run (or a drain) instead of looping")
    ] = False,
) -> None:
    settings = load_settings(RunnerSettings, "minitower-runner")
    hide_secrets()
    configure_logging(
        "runner", settings.log_level, settings.log_format, fields={"runner": settings.runner_name}
    )
    # One line per HTTP call drowns the runner's own events; failures are logged anyway.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("minitower.runner")
    index = IndexOptions(
        settings.pip_index_url,
        settings.pip_extra_index_url,
        settings.pip_find_links,
        settings.pip_no_index,
    )
    executor = _executor(settings, index)
    client = ApiClient(settings.server_url, timeout=settings.request_timeout)
    registration = settings.runner_registration_token
    credentials = Credentials(
        client,
        settings.data_dir,
        Identity(settings.server_url, settings.runner_name, settings.runner_environment),
        registration.get_secret_value() if registration is not None else None,
        settings.runner_labels,
    )
    agent = Runner(settings, client, credentials, executor)

    def drain(_signum: int, _frame: FrameType | None) -> None:
        # Nothing that takes a lock here (not even logging): the handler runs on the
        # main thread, which may hold that lock.
        agent.request_drain()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    log.info(
        "runner started",
        extra={
            "environment": settings.runner_environment,
            "isolation": settings.runner_isolation,
            "server_url": settings.server_url,
        },
    )
    try:
        agent.serve(once=once)
    except RegistrationUnavailable as exc:
        raise _fail(str(exc)) from exc
    except IsolationRefused as exc:
        raise _fail(f"refusing to start in process isolation: {exc}") from exc
    except Unauthorized as exc:
        raise _fail(f"the API refused the registration token ({exc})") from exc
    except Refused as exc:
        raise _fail(f"the API refused the registration: {exc}") from exc
    finally:
        client.close()


def main() -> None:
    app()
