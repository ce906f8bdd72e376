"""What an executor is given (a RunSpec) and hands back (a Workload), and the workload's
environment variables, which both executors build the same way."""

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Emits one line of the workload's output: (stream, line).
Emit = Callable[[str, str], None]

# Passed through from the runner's own environment; everything else (the runner token,
# the registration token, any other secret the runner was started with) stays out.
_PASSED_THROUGH = re.compile(
    r"^(PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|SSL_CERT_FILE|SSL_CERT_DIR|"
    r"REQUESTS_CA_BUNDLE|(?i:https?_proxy|no_proxy))$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnsupportedEntrypoint(ValueError):
    pass


@dataclass(frozen=True)
class RunSpec:
    run_id: int
    run_no: int
    attempt_no: int
    app_slug: str
    version_no: int
    entrypoint: str
    input: dict[str, Any]
    import_paths: list[str]
    # The extracted archive: the workload's working directory.
    app_dir: Path
    # The run's team: venvs are cached per team, so one team's never serves another's.
    team_id: int = 0
    # The run's declared secrets (name → value): into the workload's environment only,
    # never into a repr, a log line, a file or a command line.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


class Workload(Protocol):
    def wait(self, timeout: float | None) -> int | None:
        """The exit code once the workload has exited, None if ``timeout`` passed first."""

    def terminate(self) -> None:
        """Ask the whole workload to stop (SIGTERM)."""

    def kill(self) -> None:
        """Stop the whole workload now (SIGKILL)."""

    def finish(self, timeout: float) -> None:
        """After exit: make sure nothing of it lives on and its output is all emitted."""


class Prepared(Protocol):
    def start(self, emit: Emit, on_exit: Callable[[], None]) -> Workload:
        """Start the entrypoint; ``on_exit`` is called from another thread at its exit."""


class Executor(Protocol):
    def prepare(self, spec: RunSpec, emit: Emit, should_stop: Callable[[], bool]) -> Prepared:
        """Get the environment ready (venv, image); raise with a clear message if not.
        A long preparation checks ``should_stop`` and gives up when it answers True."""

    def remove_leftovers(self) -> None:
        """Remove what a previous runner process with this name left running."""

    def bind(self, *, shared: bool) -> None:
        """Told once registered whether the runner is shared (may serve several teams);
        raises IsolationRefused when it cannot keep their workloads apart."""


def interpreter_for(entrypoint: str) -> str:
    if entrypoint.endswith(".py"):
        return "python"
    if entrypoint.endswith(".sh"):
        return "sh"
    raise UnsupportedEntrypoint(
        f"entrypoint {entrypoint!r} is neither a .py nor a .sh file; the runner cannot run it"
    )


def input_variables(values: Mapping[str, Any]) -> dict[str, str]:
    """One variable per input key: strings as they are, anything else as JSON. Keys that
    cannot be variable names are only in MINITOWER_INPUT."""
    variables: dict[str, str] = {}
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if _ENV_NAME.match(key) and "\0" not in text:
            variables[key] = text
    return variables


def workload_environment(
    spec: RunSpec,
    *,
    home: str,
    python_path: list[str],
    path_prefix: list[str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Input variables first, then secrets (over input), then what the runtime needs
    (which neither can override: secret names cannot start with MINITOWER_)."""
    source = os.environ if base is None else base
    inherited = {k: v for k, v in source.items() if _PASSED_THROUGH.match(k)}
    env = {**inherited, **input_variables(spec.input), **spec.secrets}
    system_path = inherited.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        {
            "PATH": os.pathsep.join([*path_prefix, system_path]),
            "HOME": home,
            "PYTHONUNBUFFERED": "1",
            "MINITOWER_INPUT": json.dumps(spec.input),
            "MINITOWER_RUN_ID": str(spec.run_id),
            "MINITOWER_RUN_NO": str(spec.run_no),
            "MINITOWER_ATTEMPT_NO": str(spec.attempt_no),
            "MINITOWER_APP": spec.app_slug,
            "MINITOWER_VERSION_NO": str(spec.version_no),
        }
    )
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    else:
        env.pop("PYTHONPATH", None)
    return env
