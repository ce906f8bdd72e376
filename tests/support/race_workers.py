"""Code that runs in child processes (multiprocessing, spawn context) during race tests.

It lives in a small module of its own so that a spawned child imports only this and the
shared store, not the test module and its fixtures. Every worker reports back through a
queue: ``("ok", name, payload)`` or ``("error", name, traceback)``, so that the parent can
fail the test with the child's own traceback.
"""

import time
import traceback
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from minitower_shared.clock import utcnow
from minitower_shared.db import create_db_engine, write_session
from minitower_shared.states import AttemptStatus
from minitower_shared.store import lifecycle
from minitower_shared.store.lifecycle import Granted, Refused
from minitower_shared.tokens import LEASE_TOKEN_PREFIX, hash_token, new_token
from tests.support.databases import Database, database_from_arg
from tests.support.seed import Outcome, add_runner, finish, start

WORKER_TTL_SECONDS = 60.0


def lease_worker(
    db_path: str,
    name: str,
    start_barrier: Any,
    results: Any,
    deadline: float,
) -> None:
    """Register a runner, then lease → start → finish until no queued run is left.

    ``deadline`` is a ``time.time()`` value: the worker gives up with an error after it,
    so a livelock fails the test instead of hanging it."""
    try:
        payload = _lease_until_empty(database_from_arg(db_path), name, start_barrier, deadline)
    except BaseException:
        results.put(("error", name, traceback.format_exc()))
    else:
        results.put(("ok", name, payload))


def _lease_next(engine: Engine, runner_id: int, ttl: timedelta) -> Granted | Refused | None:
    """One lease attempt in its own transaction, as a runner's lease request makes."""
    with write_session(engine) as session:
        return lifecycle.lease(
            session,
            runner_id=runner_id,
            environment="default",
            lease_token_hash=hash_token(new_token(LEASE_TOKEN_PREFIX)),
            now=utcnow(),
            ttl=ttl,
        )


def _finish_completed(engine: Engine, attempt_id: int) -> Outcome:
    """Report the attempt completed (exit 0) in its own transaction."""
    return finish(engine, attempt_id, AttemptStatus.COMPLETED, now=utcnow())


def _lease_until_empty(
    db_path: Database, name: str, start_barrier: Any, deadline: float
) -> dict[str, Any]:
    ttl = timedelta(seconds=WORKER_TTL_SECONDS)
    engine = create_db_engine(db_path, pool_size=1)
    try:
        runner_id = add_runner(engine, name)
        # Everyone starts hammering at the same moment.
        start_barrier.wait(timeout=60)
        done: list[tuple[int, int]] = []
        while True:
            if time.time() > deadline:
                raise TimeoutError(f"{name}: queue not drained before the deadline")
            grant = _lease_next(engine, runner_id, ttl)
            if grant is None:
                break
            if isinstance(grant, Refused):
                raise AssertionError(f"{name}: refused while holding no lease: {grant}")
            attempt_id = grant.attempt.id
            assert attempt_id is not None and grant.run.id is not None
            outcome = start(engine, attempt_id, ttl=ttl)
            if outcome != Outcome.OK:
                raise AssertionError(f"{name}: start of attempt {attempt_id} -> {outcome}")
            outcome = _finish_completed(engine, attempt_id)
            if outcome != Outcome.OK:
                raise AssertionError(f"{name}: finish of attempt {attempt_id} -> {outcome}")
            done.append((grant.run.id, attempt_id))
        return {"runner_id": runner_id, "done": done}
    finally:
        engine.dispose()


def draining_worker(
    db_path: str,
    name: str,
    start_barrier: Any,
    results: Any,
    deadline: float,
    hold_seconds: float,
) -> None:
    """Like ``lease_worker``, but a lease that finds nothing is not the end while runs
    are still queued (behind a concurrency limit): it polls until the queue is empty.
    Each run is held ``hold_seconds`` between start and result, so overlaps would show."""
    try:
        payload = _drain(database_from_arg(db_path), name, start_barrier, deadline, hold_seconds)
    except BaseException:
        results.put(("error", name, traceback.format_exc()))
    else:
        results.put(("ok", name, payload))


def _drain(
    db_path: Database, name: str, start_barrier: Any, deadline: float, hold_seconds: float
) -> dict[str, Any]:
    from sqlmodel import select

    from minitower_shared.db import read_session
    from minitower_shared.models import Run

    ttl = timedelta(seconds=WORKER_TTL_SECONDS)
    engine = create_db_engine(db_path, pool_size=1)
    try:
        runner_id = add_runner(engine, name)
        start_barrier.wait(timeout=60)
        done: list[int] = []
        while True:
            if time.time() > deadline:
                raise TimeoutError(f"{name}: queue not drained before the deadline")
            grant = _lease_next(engine, runner_id, ttl)
            if grant is None:
                with read_session(engine) as session:
                    waiting = session.exec(select(Run.id).where(Run.status == "queued")).first()
                if waiting is None:
                    break
                time.sleep(0.002)
                continue
            assert isinstance(grant, Granted), grant
            attempt_id = grant.attempt.id
            assert attempt_id is not None and grant.run.id is not None
            assert start(engine, attempt_id, ttl=ttl) == Outcome.OK
            time.sleep(hold_seconds)
            outcome = _finish_completed(engine, attempt_id)
            assert outcome == Outcome.OK, outcome
            done.append(grant.run.id)
        return {"runner_id": runner_id, "done": done}
    finally:
        engine.dispose()
