"""The reaper_pass store: one UPSERT per pass, and the summary /ready and /metrics read."""

from datetime import timedelta

from sqlalchemy import Engine

from minitower_shared.clock import utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.store import reaper_passes as pass_store
from minitower_shared.store.reaper_passes import PassWork

T0 = utcnow()


def record(engine: Engine, name: str, seconds: float, work: PassWork, duration_ms: float) -> None:
    with write_session(engine) as session:
        pass_store.record_pass(
            session,
            name=name,
            at=T0 + timedelta(seconds=seconds),
            duration_ms=duration_ms,
            work=work,
        )


def summary(engine: Engine) -> pass_store.ReaperSummary:
    with read_session(engine) as session:
        return pass_store.summary(session)


def test_summary_of_no_passes(engine: Engine) -> None:
    assert summary(engine) == pass_store.ReaperSummary(
        last_pass_at=None,
        last_pass_duration_ms=None,
        reapers=0,
        passes=0,
        leases_expired=0,
        runs_retried=0,
        runs_buried=0,
        runs_cancelled=0,
        runners_marked_offline=0,
    )


def test_upsert_adds_to_the_totals_and_moves_the_last_pass(engine: Engine) -> None:
    record(engine, "a", 0, PassWork(leases_expired=2, runs_retried=1, runs_buried=1), 5.0)
    record(engine, "a", 5, PassWork(leases_expired=1, runs_cancelled=1), 7.5)
    record(engine, "b", 3, PassWork(runners_marked_offline=4), 1.0)
    got = summary(engine)
    assert got.last_pass_at == T0 + timedelta(seconds=5)
    # The duration is the freshest pass's, not a sum.
    assert got.last_pass_duration_ms == 7.5
    assert (got.reapers, got.passes) == (2, 3)
    assert (got.leases_expired, got.runs_retried, got.runs_buried) == (3, 1, 1)
    assert (got.runs_cancelled, got.runners_marked_offline) == (1, 4)


def test_an_older_pass_of_another_reaper_does_not_hide_the_newest(engine: Engine) -> None:
    record(engine, "new", 10, PassWork(), 1.0)
    record(engine, "old", 1, PassWork(), 2.0)
    got = summary(engine)
    assert got.last_pass_at == T0 + timedelta(seconds=10)
    assert got.last_pass_duration_ms == 1.0
