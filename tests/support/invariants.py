"""Whole-history invariants of runs and attempts, checked over one consistent snapshot.

``history_problems`` reads every run and attempt of a database file in one read
transaction and returns a sentence per broken invariant, so that a failing test shows
every inconsistency at once instead of the first one. ``ForwardOnly`` checks, sample
after sample while a race is on, that runs and attempts only move along the state
machines.
"""

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import col, select

from minitower_shared.db import read_session
from minitower_shared.models import Run, RunAttempt
from minitower_shared.states import (
    ACTIVE_ATTEMPT_STATUSES,
    ATTEMPT_TRANSITIONS,
    LEASED_RUN_STATUSES,
    RUN_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    AttemptStatus,
    RunStatus,
)

# The attempt status that goes with each run status while the run is owned or finished.
_LIVE_PAIR = {s: AttemptStatus(s.value) for s in LEASED_RUN_STATUSES}
_FINAL_ATTEMPT = {
    RunStatus.COMPLETED: {AttemptStatus.COMPLETED},
    RunStatus.FAILED: {AttemptStatus.FAILED},
    # Cancelled by the runner's confirmation, or by the lease running out while cancelling.
    RunStatus.CANCELLED: {AttemptStatus.CANCELLED, AttemptStatus.EXPIRED},
    RunStatus.DEAD: {AttemptStatus.EXPIRED},
}


def snapshot(engine: Engine) -> tuple[list[Run], list[RunAttempt]]:
    with read_session(engine) as session:
        runs = list(session.exec(select(Run).order_by(col(Run.id))))
        attempts = list(
            session.exec(
                select(RunAttempt).order_by(col(RunAttempt.run_id), col(RunAttempt.attempt_no))
            )
        )
    return runs, attempts


def history_problems(engine: Engine) -> list[str]:
    runs, attempts = snapshot(engine)
    by_run: dict[int, list[RunAttempt]] = defaultdict(list)
    active_by_runner: dict[int, list[int]] = defaultdict(list)
    for attempt in attempts:
        by_run[attempt.run_id].append(attempt)
        if attempt.status in ACTIVE_ATTEMPT_STATUSES:
            assert attempt.id is not None
            active_by_runner[attempt.runner_id].append(attempt.id)
    problems = [
        f"runner {runner_id} has {len(ids)} active attempts {ids}"
        for runner_id, ids in active_by_runner.items()
        if len(ids) > 1
    ]
    for run in runs:
        assert run.id is not None
        problems += [f"run {run.id}: {p}" for p in _run_problems(run, by_run.get(run.id, []))]
    known = {run.id for run in runs}
    problems += [f"attempts of unknown run {run_id}" for run_id in by_run if run_id not in known]
    return problems


def _run_problems(run: Run, attempts: list[RunAttempt]) -> list[str]:
    problems = []
    status = RunStatus(run.status)
    numbers = [a.attempt_no for a in attempts]
    if numbers != list(range(1, len(attempts) + 1)):
        problems.append(f"attempt numbers {numbers} are not 1..n")
    active = [a for a in attempts if a.status in ACTIVE_ATTEMPT_STATUSES]
    if len(active) > 1:
        problems.append(f"{len(active)} active attempts")
    if active and active[-1] is not attempts[-1]:
        problems.append("an active attempt that is not the latest")
    # Only a retry ends an attempt without ending its run: after lease expiry, or after
    # a failure when the run's policy retries failures (or timeouts).
    retriable = {AttemptStatus.EXPIRED}
    if {"failed", "timeout"} & set(run.retry_on):
        retriable.add(AttemptStatus.FAILED)
    earlier = [a.status for a in attempts[:-1]]
    if any(s not in retriable for s in earlier):
        problems.append(f"an earlier attempt that was not retried: {earlier}")
    last = attempts[-1] if attempts else None
    # The attempts that ended and were retried: every one while queued, else the earlier.
    retried = len(attempts) if status == RunStatus.QUEUED else len(earlier)
    if run.retry_count > run.max_retries:
        problems.append(f"retry_count {run.retry_count} > max_retries {run.max_retries}")

    if status == RunStatus.QUEUED:
        if active:
            problems.append("queued with an active attempt")
        if run.retry_count != retried or any(a.status not in retriable for a in attempts):
            problems.append(
                f"queued with retry_count {run.retry_count}, attempts "
                f"{[a.status for a in attempts]}"
            )
    elif status in LEASED_RUN_STATUSES:
        if last is None or last.status != _LIVE_PAIR[status]:
            problems.append(f"{status} but latest attempt {last and last.status}")
        if run.retry_count != retried:
            problems.append(f"{status} with retry_count {run.retry_count}, {retried} retried")
    elif status in TERMINAL_RUN_STATUSES:
        if run.finished_at is None:
            problems.append(f"{status} without finished_at")
        if active:
            problems.append(f"{status} with an active attempt")
        if last is None:
            if status != RunStatus.CANCELLED:
                problems.append(f"{status} without any attempt")
        else:
            if last.status not in _FINAL_ATTEMPT[status]:
                problems.append(f"{status} but latest attempt {last.status}")
            # Every attempt before the last one was a retry.
            if run.retry_count != retried:
                problems.append(f"{status} with retry_count {run.retry_count}, {retried} retried")
    else:
        problems.append(f"unknown status {status}")
    return problems


def _reachable(transitions: dict[Any, frozenset[Any]]) -> dict[Any, frozenset[Any]]:
    """Every status reachable from each status in one or more steps."""
    closure = {}
    for origin in transitions:
        seen: set[Any] = set()
        todo = list(transitions[origin])
        while todo:
            status = todo.pop()
            if status not in seen:
                seen.add(status)
                todo.extend(transitions[status])
        closure[origin] = frozenset(seen)
    return closure


_RUN_REACHABLE = _reachable(RUN_TRANSITIONS)
_ATTEMPT_REACHABLE = _reachable(ATTEMPT_TRANSITIONS)
_RUN_ROWS = text("SELECT id, status, retry_count FROM run")
_ATTEMPT_ROWS = text("SELECT id, run_id, status FROM run_attempt")


class ForwardOnly:
    """A ``Watch`` probe: every change it sees between two samples is a path of the
    state machines (a terminal run or attempt never changes again), a run's retry count
    never goes down, and no attempt disappears or moves to another run. Sampling misses
    steps in between, hence paths rather than single edges."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs: dict[int, tuple[RunStatus, int]] = {}
        self.attempts: dict[int, tuple[int, AttemptStatus]] = {}
        self.changes = 0

    def __call__(self) -> list[str]:
        with read_session(self.engine) as session:
            runs = {
                row.id: (RunStatus(row.status), row.retry_count)
                for row in session.execute(_RUN_ROWS)
            }
            attempts = {
                row.id: (row.run_id, AttemptStatus(row.status))
                for row in session.execute(_ATTEMPT_ROWS)
            }
        problems = []
        for run_id, (status, retries) in self.runs.items():
            if run_id not in runs:
                problems.append(f"run {run_id} disappeared")
                continue
            now, now_retries = runs[run_id]
            if now != status:
                self.changes += 1
                if now not in _RUN_REACHABLE[status]:
                    problems.append(f"run {run_id}: {status} -> {now}")
            if now_retries < retries:
                problems.append(f"run {run_id}: retry_count {retries} -> {now_retries}")
        for attempt_id, (run_id, status) in self.attempts.items():
            if attempt_id not in attempts:
                problems.append(f"attempt {attempt_id} disappeared")
                continue
            now_run, now = attempts[attempt_id]
            if now_run != run_id:
                problems.append(f"attempt {attempt_id} moved from run {run_id} to {now_run}")
            if now != status:
                self.changes += 1
                if now not in _ATTEMPT_REACHABLE[status]:
                    problems.append(f"attempt {attempt_id}: {status} -> {now}")
        self.runs, self.attempts = runs, attempts
        return problems
