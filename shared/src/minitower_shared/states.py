"""The run and attempt state machines, written down once.

The store performs each transition as a conditional UPDATE on the expected status; the
tables below are the specification those UPDATEs are tested against (every status change
in a randomised history must be an edge listed here).
"""

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"


class AttemptStatus(StrEnum):
    LEASED = "leased"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class RunnerStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class TokenRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD}
)
# A run with a live attempt: the attempt's lease decides whether it is still owned.
LEASED_RUN_STATUSES = frozenset({RunStatus.LEASED, RunStatus.RUNNING, RunStatus.CANCELLING})
ACTIVE_ATTEMPT_STATUSES = frozenset(
    {AttemptStatus.LEASED, AttemptStatus.RUNNING, AttemptStatus.CANCELLING}
)

# Allowed run transitions, for documentation, tests and the store's WHERE clauses.
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.LEASED, RunStatus.CANCELLED}),
    RunStatus.LEASED: frozenset(
        {RunStatus.RUNNING, RunStatus.CANCELLING, RunStatus.QUEUED, RunStatus.DEAD}
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELLING,
            RunStatus.QUEUED,
            RunStatus.DEAD,
        }
    ),
    RunStatus.CANCELLING: frozenset({RunStatus.COMPLETED, RunStatus.CANCELLED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.DEAD: frozenset(),
}

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.LEASED: frozenset(
        {AttemptStatus.RUNNING, AttemptStatus.CANCELLING, AttemptStatus.EXPIRED}
    ),
    AttemptStatus.RUNNING: frozenset(
        {
            AttemptStatus.COMPLETED,
            AttemptStatus.FAILED,
            AttemptStatus.CANCELLING,
            AttemptStatus.EXPIRED,
        }
    ),
    AttemptStatus.CANCELLING: frozenset(
        {AttemptStatus.COMPLETED, AttemptStatus.CANCELLED, AttemptStatus.EXPIRED}
    ),
    AttemptStatus.COMPLETED: frozenset(),
    AttemptStatus.FAILED: frozenset(),
    AttemptStatus.CANCELLED: frozenset(),
    AttemptStatus.EXPIRED: frozenset(),
}


def run_sources(target: RunStatus) -> frozenset[RunStatus]:
    """The run statuses from which ``target`` may be reached."""
    return frozenset(src for src, dests in RUN_TRANSITIONS.items() if target in dests)


def attempt_sources(target: AttemptStatus) -> frozenset[AttemptStatus]:
    """The attempt statuses from which ``target`` may be reached."""
    return frozenset(src for src, dests in ATTEMPT_TRANSITIONS.items() if target in dests)
