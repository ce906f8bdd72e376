"""What can go wrong, and the exit code each outcome leaves with.

Every failure reaches the user as one line on stderr (``minitower: error: ...``) and an
exit code of 3 or more; 0, 1 and 2 are kept for the outcome of a run being waited for::

    CliError                 one line, exit code >= 3
    ├── RequestRefused       the API answered with an error status (exit 3)
    ├── ConnectionFailed     the API could not be reached or stopped answering (exit 3)
    ├── UsageError           bad options, input, Towerfile, project or configuration (exit 4)
    └── WaitTimedOut         --wait-timeout passed before the run ended (exit 5)
"""

from __future__ import annotations

from minitower_shared.states import RunStatus

EXIT_COMPLETED = 0
EXIT_FAILED = 1  # the run failed, or is dead (its lease expired with no retries left)
EXIT_CANCELLED = 2
EXIT_API = 3
EXIT_USAGE = 4
EXIT_WAIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130

RUN_EXIT_CODES = {
    RunStatus.COMPLETED: EXIT_COMPLETED,
    RunStatus.FAILED: EXIT_FAILED,
    RunStatus.DEAD: EXIT_FAILED,
    RunStatus.CANCELLED: EXIT_CANCELLED,
}


class CliError(Exception):
    """A failure to report as one line; ``exit_code`` is what the process exits with."""

    exit_code = EXIT_API

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestRefused(CliError):
    """The API answered with an error status."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ConnectionFailed(CliError):
    """No answer from the API: refused, unreachable, timed out or cut off."""


class UsageError(CliError):
    """The command line, its input or the local files are not usable."""

    exit_code = EXIT_USAGE


class WaitTimedOut(CliError):
    exit_code = EXIT_WAIT_TIMEOUT
