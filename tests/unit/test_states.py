"""The run and attempt state machines as tables: what the contract allows, and nothing else."""

from collections import deque
from enum import StrEnum
from typing import TypeVar

import pytest

from minitower_shared.states import (
    ACTIVE_ATTEMPT_STATUSES,
    ATTEMPT_TRANSITIONS,
    LEASED_RUN_STATUSES,
    RUN_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    AttemptStatus,
    RunStatus,
    attempt_sources,
    run_sources,
)

R = RunStatus
A = AttemptStatus
S = TypeVar("S", bound=StrEnum)

# The contract's "Run state machine", edge by edge.
CONTRACT_RUN_EDGES = {
    (R.QUEUED, R.LEASED),
    (R.LEASED, R.RUNNING),
    (R.RUNNING, R.COMPLETED),
    (R.RUNNING, R.FAILED),
    (R.QUEUED, R.CANCELLED),
    (R.LEASED, R.CANCELLING),
    (R.RUNNING, R.CANCELLING),
    (R.CANCELLING, R.CANCELLED),
    # A ``completed`` result that races a cancel: the work really finished.
    (R.CANCELLING, R.COMPLETED),
    # Lease expiry: retry or bury.
    (R.LEASED, R.QUEUED),
    (R.RUNNING, R.QUEUED),
    (R.LEASED, R.DEAD),
    (R.RUNNING, R.DEAD),
}
CONTRACT_ATTEMPT_EDGES = {
    (A.LEASED, A.RUNNING),
    (A.RUNNING, A.COMPLETED),
    (A.RUNNING, A.FAILED),
    (A.LEASED, A.CANCELLING),
    (A.RUNNING, A.CANCELLING),
    (A.CANCELLING, A.COMPLETED),
    (A.CANCELLING, A.CANCELLED),
    (A.LEASED, A.EXPIRED),
    (A.RUNNING, A.EXPIRED),
    (A.CANCELLING, A.EXPIRED),
}


def edges(table: dict[S, frozenset[S]]) -> set[tuple[S, S]]:
    return {(src, dst) for src, dests in table.items() for dst in dests}


def reachable(table: dict[S, frozenset[S]], start: S) -> set[S]:
    seen, todo = {start}, deque([start])
    while todo:
        for nxt in table[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_tables_cover_every_status() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptStatus)


def test_run_table_is_exactly_the_contract() -> None:
    assert edges(RUN_TRANSITIONS) == CONTRACT_RUN_EDGES


def test_attempt_table_is_exactly_the_contract() -> None:
    assert edges(ATTEMPT_TRANSITIONS) == CONTRACT_ATTEMPT_EDGES


def test_no_self_loops() -> None:
    assert not any(src == dst for src, dst in edges(RUN_TRANSITIONS))
    assert not any(src == dst for src, dst in edges(ATTEMPT_TRANSITIONS))


@pytest.mark.parametrize("status", sorted(TERMINAL_RUN_STATUSES))
def test_terminal_runs_have_no_exits(status: RunStatus) -> None:
    assert RUN_TRANSITIONS[status] == frozenset()


def test_terminal_run_statuses_are_exactly_the_sinks() -> None:
    sinks = {s for s, dests in RUN_TRANSITIONS.items() if not dests}
    assert sinks == TERMINAL_RUN_STATUSES == {R.COMPLETED, R.FAILED, R.CANCELLED, R.DEAD}


def test_finished_attempts_have_no_exits() -> None:
    sinks = {s for s, dests in ATTEMPT_TRANSITIONS.items() if not dests}
    assert sinks == set(AttemptStatus) - ACTIVE_ATTEMPT_STATUSES
    assert sinks == {A.COMPLETED, A.FAILED, A.CANCELLED, A.EXPIRED}


def test_every_run_status_is_reachable_from_queued() -> None:
    assert reachable(RUN_TRANSITIONS, R.QUEUED) == set(RunStatus)


def test_every_attempt_status_is_reachable_from_leased() -> None:
    assert reachable(ATTEMPT_TRANSITIONS, A.LEASED) == set(AttemptStatus)


def test_every_non_terminal_run_can_still_finish() -> None:
    for status in set(RunStatus) - TERMINAL_RUN_STATUSES:
        assert reachable(RUN_TRANSITIONS, status) & TERMINAL_RUN_STATUSES, status


def test_only_queued_is_a_source_of_leased() -> None:
    # The lease is the only way in: nothing is re-leased without going back to the queue.
    assert run_sources(R.LEASED) == {R.QUEUED}
    assert attempt_sources(A.LEASED) == frozenset()


def test_run_sources() -> None:
    assert run_sources(R.QUEUED) == {R.LEASED, R.RUNNING}
    assert run_sources(R.RUNNING) == {R.LEASED}
    assert run_sources(R.CANCELLING) == {R.LEASED, R.RUNNING}
    # Only through a requested cancel: a runner cannot cancel a run on its own.
    assert run_sources(R.CANCELLED) == {R.QUEUED, R.CANCELLING}
    assert run_sources(R.COMPLETED) == {R.RUNNING, R.CANCELLING}
    assert run_sources(R.FAILED) == {R.RUNNING}
    assert run_sources(R.DEAD) == {R.LEASED, R.RUNNING}


def test_attempt_sources() -> None:
    assert attempt_sources(A.RUNNING) == {A.LEASED}
    assert attempt_sources(A.CANCELLING) == {A.LEASED, A.RUNNING}
    assert attempt_sources(A.COMPLETED) == {A.RUNNING, A.CANCELLING}
    assert attempt_sources(A.FAILED) == {A.RUNNING}
    assert attempt_sources(A.CANCELLED) == {A.CANCELLING}
    # Any active attempt may expire, and only an active one.
    assert attempt_sources(A.EXPIRED) == ACTIVE_ATTEMPT_STATUSES


def test_sources_are_the_inverse_of_the_tables() -> None:
    for target in RunStatus:
        assert run_sources(target) == {s for s in RunStatus if target in RUN_TRANSITIONS[s]}
    for attempt_target in AttemptStatus:
        assert attempt_sources(attempt_target) == {
            s for s in AttemptStatus if attempt_target in ATTEMPT_TRANSITIONS[s]
        }


def test_live_run_statuses_pair_with_active_attempt_statuses() -> None:
    # The live run statuses pair one-to-one with the active attempt statuses.
    assert {s.value for s in LEASED_RUN_STATUSES} == {s.value for s in ACTIVE_ATTEMPT_STATUSES}
    assert TERMINAL_RUN_STATUSES.isdisjoint(LEASED_RUN_STATUSES)


def test_statuses_are_their_wire_strings() -> None:
    assert [s.value for s in RunStatus] == [
        "queued",
        "leased",
        "running",
        "cancelling",
        "completed",
        "failed",
        "cancelled",
        "dead",
    ]
    assert RunStatus("cancelling") == "cancelling"
    with pytest.raises(ValueError):
        RunStatus("expired")
