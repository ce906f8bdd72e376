"""The lifecycle of a run: every change of a run's or an attempt's status happens here.

One function per runner call (:func:`lease`, :func:`start`, :func:`heartbeat`,
:func:`append_logs`, :func:`report_result`) and per operator or reaper action
(:func:`cancel`, :func:`expire`). Each takes the caller's session (the caller owns the
transaction) and returns a verdict: what happened, or :class:`Refused` saying why
nothing did. The statuses a guard accepts come from the tables in
:mod:`minitower_shared.states`, and :func:`end_run` is the one way a run becomes
terminal; it also queues the run's webhook event in the same transaction, so a
transition added later cannot forget to notify.

Written on SQLAlchemy Core: each call is a few statements, and a conditional
``UPDATE … RETURNING`` says what changed, with no ORM identity map to keep in step.
A lease is live only while its attempt is active and ``lease_expires_at`` is in the
future. Every runner call's statement checks that itself, so a runner whose lease ran
out is fenced off even before the reaper has noticed (a repeated result is answered from
what was recorded; a cancel and the reaper act on any active attempt).

On PostgreSQL, where writers run side by side, a call that changes a run and its
attempt locks the run's row first (:func:`_lock_run`), so that every such pair is
changed in one order (run, then attempt) and two calls about one run take turns, as
under SQLite's write lock; a lease holds its runner's row lock (``FOR NO KEY UPDATE``,
taken by the runner's lookup where the caller can, else by :func:`lease` itself).

Callers learn what changed from the verdicts. The statements go around the ORM session:
a ``Run`` or ``RunAttempt`` object the session already holds is not refreshed, so read
it again (``populate_existing``) after a call here.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import (
    Executable,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlmodel import Session

from minitower_shared.clock import as_utc, utcnow
from minitower_shared.db import is_postgresql
from minitower_shared.dialect import upsert_insert
from minitower_shared.log_budget import Budget, admit
from minitower_shared.models import (
    App,
    AppVersion,
    AppVersionSecrets,
    Run,
    RunAttempt,
    RunLog,
    Runner,
    active_attempt,
)
from minitower_shared.retry import jittered, nominal_delay, reason_of_failure
from minitower_shared.states import (
    ACTIVE_ATTEMPT_STATUSES,
    TERMINAL_RUN_STATUSES,
    AttemptStatus,
    RunStatus,
    attempt_sources,
    run_sources,
)
from minitower_shared.store import queue
from minitower_shared.store import webhooks as webhook_store
from minitower_shared.store.logs import stored_seqs

_RUN: Table = Run.__table__  # type: ignore[attr-defined]
_ATTEMPT: Table = RunAttempt.__table__  # type: ignore[attr-defined]
_APP: Table = App.__table__  # type: ignore[attr-defined]
_VERSION: Table = AppVersion.__table__  # type: ignore[attr-defined]
_DECLARED: Table = AppVersionSecrets.__table__  # type: ignore[attr-defined]
_LOG: Table = RunLog.__table__  # type: ignore[attr-defined]
_RUNNER: Table = Runner.__table__  # type: ignore[attr-defined]


def _values(statuses: Iterable[StrEnum]) -> list[str]:
    return sorted(s.value for s in statuses)


_ACTIVE = _values(ACTIVE_ATTEMPT_STATUSES)
# In WHERE clauses the active statuses are spelled as the partial indexes spell them
# (``active_attempt()``), so that SQLite's planner can use those indexes.


# ------------------------------------------------------------------------------ verdicts


class Refusal(StrEnum):
    """Why a call changed nothing, as the API maps it to HTTP."""

    # The lease is unknown, another runner's or run's, expired or finished: stop the
    # work and report nothing (410).
    GONE = "gone"
    # The call contradicts what the attempt has done or reported (409).
    CONFLICT = "conflict"
    # The runner already holds a live lease (409).
    BUSY = "busy"


@dataclass(frozen=True)
class Refused:
    kind: Refusal
    reason: str


@dataclass(frozen=True)
class LeaseKey:
    """What a runner's call about one attempt names: the run in the path, the runner
    its token authenticated and the hash of the lease token it was granted."""

    run_id: int
    runner_id: int
    token_hash: str


@dataclass(frozen=True)
class LeasedRun:
    id: int
    run_no: int
    app_id: int
    team_id: int
    input: dict[str, Any]
    status: RunStatus = RunStatus.LEASED


@dataclass(frozen=True)
class LeasedAttempt:
    id: int
    attempt_no: int
    runner_id: int
    lease_expires_at: datetime
    status: AttemptStatus = AttemptStatus.LEASED


@dataclass(frozen=True)
class LeasedApp:
    id: int
    slug: str


@dataclass(frozen=True)
class LeasedVersion:
    version_no: int
    entrypoint: str
    timeout_seconds: int
    import_paths: list[str]
    artifact_sha256: str


@dataclass(frozen=True)
class Granted:
    """A lease: everything the runner is told, read in one statement."""

    run: LeasedRun
    attempt: LeasedAttempt
    app: LeasedApp
    version: LeasedVersion
    # The version's declared secrets (names): the runner fetches values only when some.
    secrets: list[str] = field(default_factory=list)
    # Runs this lease locked while it picked and left queued (PostgreSQL): once it has
    # committed, waiting runners must be told to look again, as when a run is queued.
    passed_over: bool = False


@dataclass(frozen=True)
class LiveAttempt:
    id: int
    attempt_no: int
    status: AttemptStatus
    lease_expires_at: datetime

    @property
    def cancel_requested(self) -> bool:
        """A cancel moves the run and its live attempt to ``cancelling`` together."""
        return self.status == AttemptStatus.CANCELLING


@dataclass(frozen=True)
class LogsStored:
    attempt_id: int
    # Lines stored (with the truncation line, where the cap was reached).
    lines: int
    # Lines accepted but not stored: past the cap, or sent once the cap was reached.
    dropped: int = 0


@dataclass(frozen=True)
class Finished:
    """A result recorded (``first``), or the same result reported again."""

    attempt_id: int
    attempt_no: int
    attempt_status: AttemptStatus
    run_status: RunStatus
    app_id: int
    first: bool


@dataclass(frozen=True)
class CancelOutcome:
    """The run's status before and after a cancel; equal when it changed nothing."""

    before: RunStatus
    after: RunStatus

    @property
    def changed(self) -> bool:
        return self.before != self.after


# ------------------------------------------------------------------------- statements
#
# Built once, at import, with bind parameters for what changes per call: building a
# statement (and the ORM's execute path) cost more than SQLite's work on the hot path.
# Each is run on the session's connection (:func:`_execute`); a shape that depends on a
# call's arguments (an end's extra values) is built once per shape (``functools.cache``).


def _execute(session: Session, statement: Executable, **params: Any) -> Any:
    return session.connection().execute(statement, params)


_LEASE_IS = and_(
    _ATTEMPT.c.lease_token_hash == bindparam("token_hash"),
    _ATTEMPT.c.run_id == bindparam("the_run"),
    _ATTEMPT.c.runner_id == bindparam("the_runner"),
)
_LEASE_IS_LIVE = and_(active_attempt(), _ATTEMPT.c.lease_expires_at > bindparam("now"))

_WHY_GONE = select(_ATTEMPT.c.status).where(_LEASE_IS)
_LIVE_ATTEMPT = select(
    _ATTEMPT.c.id, _ATTEMPT.c.attempt_no, _ATTEMPT.c.status, _ATTEMPT.c.lease_expires_at
).where(_LEASE_IS, _LEASE_IS_LIVE)
# PostgreSQL: the batches of one attempt take turns on its row (FOR NO KEY UPDATE), even
# through several API processes, so that each counts on the budget the one before left;
# SQLite's write lock gives the same.
_LOGGING_ATTEMPT = (
    select(_ATTEMPT.c.id, _ATTEMPT.c.log_bytes, _ATTEMPT.c.log_truncated)
    .where(_LEASE_IS, _LEASE_IS_LIVE)
    .with_for_update(key_share=True)
)
_SPEND_LOG_BUDGET = (
    update(_ATTEMPT)
    .where(_ATTEMPT.c.id == bindparam("the_attempt"))
    .values(log_bytes=bindparam("b_bytes"), log_truncated=bindparam("b_truncated"))
)
_HEARTBEAT = (
    update(_ATTEMPT)
    .where(_LEASE_IS, _LEASE_IS_LIVE)
    .values(lease_expires_at=bindparam("b_expires"))
    .returning(_ATTEMPT.c.id, _ATTEMPT.c.attempt_no, _ATTEMPT.c.status)
)
_START_ATTEMPT = (
    update(_ATTEMPT)
    .where(
        _LEASE_IS,
        _ATTEMPT.c.status.in_(_values(attempt_sources(AttemptStatus.RUNNING))),
        _ATTEMPT.c.lease_expires_at > bindparam("now"),
    )
    .values(
        status=AttemptStatus.RUNNING.value,
        started_at=bindparam("now"),
        lease_expires_at=bindparam("b_expires"),
    )
    .returning(_ATTEMPT.c.id, _ATTEMPT.c.attempt_no)
)
_START_RUN = (
    update(_RUN)
    .where(
        _RUN.c.id == bindparam("the_run"),
        _RUN.c.status.in_(_values(run_sources(RunStatus.RUNNING))),
    )
    .values(
        status=RunStatus.RUNNING.value,
        # Typed here: inside coalesce the parameter would not take the column's type.
        started_at=func.coalesce(_RUN.c.started_at, bindparam("now", type_=_RUN.c.started_at.type)),
        updated_at=bindparam("now"),
    )
    .returning(_RUN.c.id)
)
# PostgreSQL: both updates of a start in one statement, one round trip fewer (SQLite
# keeps the two). The run's update is guarded by the attempt's, as the second statement
# runs only after the first matched; the caller holds the run's row lock already, so
# the run is still locked before its attempt changes.
_STARTED = _START_ATTEMPT.cte("started")
_RUN_STARTED = _START_RUN.where(exists(select(_STARTED.c.id))).cte("run_started")
_START_BOTH = select(
    _STARTED.c.id,
    _STARTED.c.attempt_no,
    exists(select(_RUN_STARTED.c.id)).label("run_started"),
)
_RESULT_READ = (
    select(
        _ATTEMPT.c.id,
        _ATTEMPT.c.attempt_no,
        _ATTEMPT.c.status,
        _ATTEMPT.c.reported_status,
        _ATTEMPT.c.lease_expires_at,
        _RUN.c.status.label("run_status"),
        _RUN.c.app_id,
    )
    .join_from(_ATTEMPT, _RUN, _RUN.c.id == _ATTEMPT.c.run_id)
    .where(_LEASE_IS)
)
_RESULT_WRITE = (
    update(_ATTEMPT)
    .where(
        _ATTEMPT.c.id == bindparam("attempt_id"),
        _ATTEMPT.c.status == bindparam("previous"),
        _ATTEMPT.c.lease_expires_at > bindparam("now"),
    )
    .values(
        status=bindparam("b_status"),
        reported_status=bindparam("b_reported"),
        exit_code=bindparam("b_exit_code"),
        error_message=bindparam("b_error_message"),
        finished_at=bindparam("now"),
    )
    .returning(_ATTEMPT.c.id)
)
_RETRY_POLICY = select(
    _RUN.c.retry_on,
    _RUN.c.retry_count,
    _RUN.c.max_retries,
    _RUN.c.retry_delay,
    _RUN.c.retry_backoff,
    _RUN.c.retry_max_delay,
).where(_RUN.c.id == bindparam("the_run"))
_REQUEUE = (
    update(_RUN)
    .where(
        _RUN.c.id == bindparam("the_run"),
        _RUN.c.status.in_(_values(run_sources(RunStatus.QUEUED))),
        _RUN.c.retry_count == bindparam("seen_retry_count"),
    )
    .values(
        status=RunStatus.QUEUED.value,
        retry_count=_RUN.c.retry_count + 1,
        not_before=bindparam("b_not_before"),
        delayed=bindparam("b_delayed"),
        updated_at=bindparam("now"),
    )
    .returning(_RUN.c.id)
)
_EXPIRE = (
    update(_ATTEMPT)
    .where(
        _ATTEMPT.c.id == bindparam("attempt_id"),
        _ATTEMPT.c.status.in_(_values(attempt_sources(AttemptStatus.EXPIRED))),
        _ATTEMPT.c.lease_expires_at <= bindparam("now"),
    )
    .values(status=AttemptStatus.EXPIRED.value, finished_at=bindparam("now"))
    .returning(_ATTEMPT.c.run_id)
)
_STALE = (
    select(_ATTEMPT.c.id, _ATTEMPT.c.run_id)
    .where(active_attempt(), _ATTEMPT.c.lease_expires_at <= bindparam("now"))
    .order_by(_ATTEMPT.c.lease_expires_at)
    .limit(bindparam("limit"))
)
_HELD = select(_ATTEMPT.c.id, _ATTEMPT.c.lease_expires_at).where(
    _ATTEMPT.c.runner_id == bindparam("the_runner"), active_attempt()
)
# PostgreSQL: the lease's look for a held attempt releases the due delayed runs too, one
# round trip fewer (SQLite keeps the two statements). Before the inline expiry rather
# than after it changes nothing: a run that the expiry requeues with a delay is not due
# by the same ``now``. A lease refused as BUSY releases them as well, which any lease
# may do.
_HELD_RELEASING_DUE_RUNS = queue.releasing_due_runs(_HELD)
_CLAIM_RUN = (
    update(_RUN)
    .where(
        _RUN.c.id == bindparam("the_run"),
        _RUN.c.status.in_(_values(run_sources(RunStatus.LEASED))),
    )
    .values(status=RunStatus.LEASED.value, updated_at=bindparam("now"))
)
_CLAIM = _CLAIM_RUN.returning(_RUN.c.id)
_LAST_ATTEMPT_NO = select(func.max(_ATTEMPT.c.attempt_no)).where(
    _ATTEMPT.c.run_id == bindparam("the_run")
)
_NEW_ATTEMPT = (
    insert(_ATTEMPT)
    .values(
        run_id=bindparam("the_run"),
        runner_id=bindparam("the_runner"),
        attempt_no=bindparam("the_attempt_no"),
        lease_token_hash=bindparam("token_hash"),
        lease_expires_at=bindparam("expires"),
        status=AttemptStatus.LEASED.value,
        leased_at=bindparam("now"),
    )
    .returning(_ATTEMPT.c.id)
)
# PostgreSQL: the attempt's number drawn by the INSERT itself, one round trip fewer than
# _LAST_ATTEMPT_NO then _NEW_ATTEMPT (SQLite keeps those two). The run's row lock, which
# every lease of the run takes first (_CLAIM), keeps the count current.
_NEW_NUMBERED_ATTEMPT = (
    insert(_ATTEMPT)
    .values(
        run_id=bindparam("the_run"),
        runner_id=bindparam("the_runner"),
        attempt_no=select(func.coalesce(func.max(_ATTEMPT.c.attempt_no), 0) + 1)
        .where(_ATTEMPT.c.run_id == bindparam("the_run"))
        .scalar_subquery(),
        lease_token_hash=bindparam("token_hash"),
        lease_expires_at=bindparam("expires"),
        status=AttemptStatus.LEASED.value,
        leased_at=bindparam("now"),
    )
    .returning(_ATTEMPT.c.id, _ATTEMPT.c.attempt_no)
)


def _grant_read(run: Any) -> Select[Any]:
    """What a lease grant tells the runner about ``run`` (the run table, or the claim's
    returned row), its app, its version and the version's declared secrets."""
    return select(
        run.c.run_no,
        run.c.app_id,
        run.c.team_id,
        run.c.input,
        _APP.c.slug,
        _VERSION.c.version_no,
        _VERSION.c.entrypoint,
        _VERSION.c.timeout_seconds,
        _VERSION.c.import_paths,
        _VERSION.c.artifact_sha256,
        _DECLARED.c.names,
    ).select_from(
        run.join(_APP, _APP.c.id == run.c.app_id)
        .join(_VERSION, _VERSION.c.id == run.c.app_version_id)
        .outerjoin(_DECLARED, _DECLARED.c.app_version_id == run.c.app_version_id)
    )


_GRANT_READ = _grant_read(_RUN).where(_RUN.c.id == bindparam("the_run"))
# PostgreSQL: the claim and the grant's read as one statement, one round trip fewer
# (SQLite keeps _CLAIM and, once the attempt is made, _GRANT_READ). What the grant reads
# of the run the claim does not change.
_CLAIM_AND_GRANT_READ = _grant_read(
    _CLAIM_RUN.returning(
        _RUN.c.run_no, _RUN.c.app_id, _RUN.c.team_id, _RUN.c.input, _RUN.c.app_version_id
    ).cte("claimed")
)
_RUN_STATUS = select(_RUN.c.status).where(_RUN.c.id == bindparam("the_run"))
_LOCK_RUN = select(_RUN.c.id).where(_RUN.c.id == bindparam("the_run")).with_for_update()
# NO KEY: the lock an UPDATE of the runner's other columns takes (mark_seen), which still
# lets attempts be inserted that name the runner (their foreign key takes KEY SHARE).
_LOCK_RUNNER = (
    select(_RUNNER.c.id)
    .where(_RUNNER.c.id == bindparam("the_runner"))
    .with_for_update(key_share=True)
)
_LOCK_RUN_OF_ATTEMPT = (
    select(_RUN.c.id)
    .where(
        _RUN.c.id
        == select(_ATTEMPT.c.run_id)
        .where(_ATTEMPT.c.id == bindparam("attempt_id"))
        .scalar_subquery()
    )
    .with_for_update()
)
_TO_CANCELLING = (
    update(_RUN)
    .where(_RUN.c.id == bindparam("the_run"), _RUN.c.status == bindparam("before"))
    .values(status=RunStatus.CANCELLING.value, cancel_requested=True, updated_at=bindparam("now"))
    .returning(_RUN.c.id)
)
_ATTEMPT_TO_CANCELLING = (
    update(_ATTEMPT)
    .where(
        _ATTEMPT.c.run_id == bindparam("the_run"),
        _ATTEMPT.c.status.in_(_values(attempt_sources(AttemptStatus.CANCELLING))),
    )
    .values(status=AttemptStatus.CANCELLING.value)
)


@cache
def _end_run_statement(expected: frozenset[RunStatus], columns: tuple[str, ...]) -> Executable:
    """``expected → :b_status`` with ``columns`` set from ``b_<column>`` parameters."""
    return (
        update(_RUN)
        .where(_RUN.c.id == bindparam("the_run"), _RUN.c.status.in_(_values(expected)))
        .values(
            status=bindparam("b_status"),
            finished_at=bindparam("now"),
            updated_at=bindparam("now"),
            **{column: bindparam(f"b_{column}") for column in columns},
        )
        .returning(_RUN.c.team_id, _RUN.c.app_id)
    )


# ------------------------------------------------------------------------------- guards


def _lock_run(
    session: Session, *, run_id: int | None = None, attempt_id: int | None = None
) -> None:
    """PostgreSQL: lock the run (named, or the attempt's) before its attempt changes.
    Nothing to do on SQLite, whose write lock the transaction already holds."""
    if not is_postgresql(session):
        return
    if run_id is not None:
        _execute(session, _LOCK_RUN, the_run=run_id)
    else:
        _execute(session, _LOCK_RUN_OF_ATTEMPT, attempt_id=attempt_id)


_GONE_UNKNOWN = "no live lease with this token for this runner and run"


def _lease_params(key: LeaseKey) -> dict[str, Any]:
    return {"token_hash": key.token_hash, "the_run": key.run_id, "the_runner": key.runner_id}


def _why_gone(session: Session, key: LeaseKey) -> Refused:
    """The reason a lease guard matched nothing: read only on that (rare) path."""
    status = _execute(session, _WHY_GONE, **_lease_params(key)).scalar()
    if status is None:
        return Refused(Refusal.GONE, _GONE_UNKNOWN)
    if status not in _ACTIVE:
        return Refused(Refusal.GONE, f"the attempt has ended ({status})")
    return Refused(Refusal.GONE, "the lease expired")


def live_attempt(session: Session, key: LeaseKey, now: datetime) -> LiveAttempt | Refused:
    """The attempt ``key`` names if its lease is live: the guard of the runner's calls
    that change nothing (the artifact, the secrets)."""
    row = _execute(session, _LIVE_ATTEMPT, now=now, **_lease_params(key)).first()
    if row is None:
        return _why_gone(session, key)
    return LiveAttempt(
        id=row.id,
        attempt_no=row.attempt_no,
        status=AttemptStatus(row.status),
        lease_expires_at=as_utc(row.lease_expires_at),
    )


# ---------------------------------------------------------------------- ending a run


def end_run(
    session: Session,
    run_id: int,
    *,
    expected: Collection[RunStatus],
    status: RunStatus,
    now: datetime,
    **values: Any,
) -> bool:
    """``expected → status`` (terminal) for the run, with ``values`` (error_message,
    exit_code, …), and the run's webhook event queued; False, changing nothing, when the
    run was not in ``expected``."""
    if status not in TERMINAL_RUN_STATUSES:
        raise ValueError(f"{status.value} is not a terminal run status")
    if not set(expected) <= run_sources(status):
        raise ValueError(f"{_values(expected)} → {status.value} is not in RUN_TRANSITIONS")
    statement = _end_run_statement(frozenset(expected), tuple(sorted(values)))
    row = _execute(
        session,
        statement,
        the_run=run_id,
        now=now,
        b_status=status.value,
        **{f"b_{column}": value for column, value in values.items()},
    ).first()
    if row is None:
        return False
    webhook_store.append_run_event(
        session, run_id=run_id, team_id=row.team_id, app_id=row.app_id, status=status, now=now
    )
    return True


def _requeue_for_retry(session: Session, run_id: int, *, reason: str, now: datetime) -> bool:
    """Put a live run back in the queue when its policy retries ``reason`` and retries
    are left, not before its backoff delay. The run keeps its original queued_at, so a
    retry goes back to where it stood in the queue: retries are picked in a
    deterministic order."""
    policy = _execute(session, _RETRY_POLICY, the_run=run_id).one()
    if reason not in policy.retry_on or policy.retry_count >= policy.max_retries:
        return False
    delay = jittered(
        nominal_delay(
            retry_delay=policy.retry_delay,
            retry_backoff=policy.retry_backoff,
            retry_max_delay=policy.retry_max_delay,
            retry_no=policy.retry_count + 1,
        )
    )
    # Conditional on the retry count read above: the write lock (on PostgreSQL, the
    # run's row lock its callers hold) makes it current, and
    # the condition keeps the step from ever being applied twice.
    requeued = _execute(
        session,
        _REQUEUE,
        the_run=run_id,
        seen_retry_count=policy.retry_count,
        b_not_before=now + timedelta(seconds=delay) if delay > 0 else None,
        b_delayed=delay > 0,
        now=now,
    ).first()
    return requeued is not None


# ----------------------------------------------------------------------------- expiry


def expire(session: Session, attempt_id: int, now: datetime) -> RunStatus | None:
    """Expire one attempt whose lease has passed and move its run on: a cancel it never
    confirmed ends cancelled, else it is retried as ``lost`` or buried ``dead``.

    Returns the run's new status, or None when the attempt was not expirable (already
    finished, already expired, or its lease was extended in the meantime)."""
    _lock_run(session, attempt_id=attempt_id)
    run_id = _execute(session, _EXPIRE, attempt_id=attempt_id, now=now).scalar()
    if run_id is None:
        return None
    if end_run(
        session,
        run_id,
        expected={RunStatus.CANCELLING},
        status=RunStatus.CANCELLED,
        now=now,
        error_message="cancelled; the runner stopped answering before it confirmed",
    ):
        return RunStatus.CANCELLED
    if _requeue_for_retry(session, run_id, reason="lost", now=now):
        return RunStatus.QUEUED
    if end_run(
        session,
        run_id,
        expected={RunStatus.LEASED, RunStatus.RUNNING},
        status=RunStatus.DEAD,
        now=now,
        error_message="lease expired and no retries are left",
    ):
        return RunStatus.DEAD
    raise RuntimeError(f"run {run_id} had an active attempt but was not in a leased state")


def expire_stale(
    session: Session, now: datetime, *, limit: int = 500
) -> list[tuple[int, RunStatus]]:
    """Expire up to ``limit`` attempts whose lease has passed; returns (run_id, new status)."""
    rows = _execute(session, _STALE, now=now, limit=limit).all()
    outcomes = []
    for attempt_id, run_id in rows:
        status = expire(session, attempt_id, now)
        if status is not None:
            outcomes.append((run_id, status))
    return outcomes


# ------------------------------------------------------------------------------ lease


def lease(
    session: Session,
    *,
    runner_id: int,
    environment: str,
    lease_token_hash: str,
    now: datetime,
    ttl: timedelta,
    team_id: int | None = None,
    start_it: bool = False,
    runner_locked: bool = False,
) -> Granted | Refused | None:
    """Claim the next queued run of ``environment`` for the runner; None when there is
    none. ``team_id`` is the runner's binding (None: a shared runner). The pick order is
    :func:`queue.pick_next_run`'s. A runner's own lease that ran out is expired here
    rather than waiting for the reaper. ``start_it`` also starts the attempt (as
    :func:`start`), in the same transaction. ``runner_locked``: this transaction read
    the runner with ``find_runner_by_token(…, lock=True)`` already."""
    # PostgreSQL: one lease per runner at a time, so that the check below stays true
    # until the attempt is inserted (the unique index would refuse a second one). The
    # runner's row is the lock: the caller's lookup of the runner can take it with no
    # statement of its own.
    on_postgresql = is_postgresql(session)
    if not runner_locked and on_postgresql:
        _execute(session, _LOCK_RUNNER, the_runner=runner_id)
    if on_postgresql:
        held = _execute(session, _HELD_RELEASING_DUE_RUNS, the_runner=runner_id, due_by=now).first()
    else:
        held = _execute(session, _HELD, the_runner=runner_id).first()
    if held is not None:
        if as_utc(held.lease_expires_at) > now:
            return Refused(Refusal.BUSY, "this runner already holds a live lease; finish it first")
        expire(session, held.id, now)

    if not on_postgresql:
        queue.release_due_runs(session, now)
    pick = queue.pick_next_run(session, environment, team_id)
    if pick is None:
        return None
    picked = pick.run_id
    if pick.under_lock:
        # PostgreSQL: the run whose slot this lease takes may have ended after ``now``
        # was read (its end committed while this lease waited or counted). A lease
        # time before that end would show two runs at once in the history, so the
        # lease is timed by the clock read after the count.
        now = max(now, utcnow())
    if on_postgresql:
        told = _execute(session, _CLAIM_AND_GRANT_READ, the_run=picked, now=now).first()
        if told is None:
            return None
    elif _execute(session, _CLAIM, the_run=picked, now=now).first() is None:
        return None
    expires = now + ttl
    attempt = {
        "the_run": picked,
        "the_runner": runner_id,
        "token_hash": lease_token_hash,
        "expires": expires,
        "now": now,
    }
    if on_postgresql:
        attempt_id, attempt_no = _execute(session, _NEW_NUMBERED_ATTEMPT, **attempt).one()
    else:
        last_no = _execute(session, _LAST_ATTEMPT_NO, the_run=picked).scalar()
        attempt_no = (last_no or 0) + 1
        attempt_id = _execute(
            session, _NEW_ATTEMPT, the_attempt_no=attempt_no, **attempt
        ).scalar_one()
    status = AttemptStatus.LEASED
    if start_it:
        key = LeaseKey(run_id=picked, runner_id=runner_id, token_hash=lease_token_hash)
        # _CLAIM's update holds the run's row lock already.
        started = start(session, key, now=now, ttl=ttl, run_locked=True)
        if isinstance(started, Refused):
            raise RuntimeError(f"run {picked}: an attempt leased just now did not start")
        status = started.status
    if not on_postgresql:
        told = _execute(session, _GRANT_READ, the_run=picked).one()
    return Granted(
        run=LeasedRun(
            id=picked,
            run_no=told.run_no,
            app_id=told.app_id,
            team_id=told.team_id,
            input=told.input,
            status=RunStatus(status),
        ),
        attempt=LeasedAttempt(
            id=attempt_id,
            attempt_no=attempt_no,
            runner_id=runner_id,
            lease_expires_at=expires,
            status=status,
        ),
        app=LeasedApp(id=told.app_id, slug=told.slug),
        version=LeasedVersion(
            version_no=told.version_no,
            entrypoint=told.entrypoint,
            timeout_seconds=told.timeout_seconds,
            import_paths=list(told.import_paths or []),
            artifact_sha256=told.artifact_sha256,
        ),
        secrets=list(told.names or []),
        passed_over=pick.passed_over,
    )


# --------------------------------------------------------------- start, heartbeat, logs


def start(
    session: Session,
    key: LeaseKey,
    *,
    now: datetime,
    ttl: timedelta,
    run_locked: bool = False,
) -> LiveAttempt | Refused:
    """``leased → running`` for the attempt and its run, extending the lease; repeating
    it is harmless. An attempt already ``cancelling`` stays so: the runner learns of the
    cancel from the answer and reports ``cancelled``. ``run_locked``: this transaction
    holds the run's row lock already (it updated the run)."""
    expires = now + ttl
    if not run_locked:
        _lock_run(session, run_id=key.run_id)
    on_postgresql = is_postgresql(session)
    started = _execute(
        session,
        _START_BOTH if on_postgresql else _START_ATTEMPT,
        now=now,
        b_expires=expires,
        **_lease_params(key),
    ).first()
    if started is None:
        # Started already (or being cancelled): answer with the attempt as it stands.
        return live_attempt(session, key, now)
    if on_postgresql:
        run_started = started.run_started
    else:
        run_started = _execute(session, _START_RUN, the_run=key.run_id, now=now).first() is not None
    if not run_started:
        raise RuntimeError(f"run {key.run_id} was not leased while its attempt was")
    return LiveAttempt(
        id=started.id,
        attempt_no=started.attempt_no,
        status=AttemptStatus.RUNNING,
        lease_expires_at=expires,
    )


def heartbeat(
    session: Session, key: LeaseKey, *, now: datetime, ttl: timedelta
) -> LiveAttempt | Refused:
    """Extend a live lease. An expired lease is never revived."""
    expires = now + ttl
    row = _execute(session, _HEARTBEAT, now=now, b_expires=expires, **_lease_params(key)).first()
    if row is None:
        return _why_gone(session, key)
    return LiveAttempt(
        id=row.id,
        attempt_no=row.attempt_no,
        status=AttemptStatus(row.status),
        lease_expires_at=expires,
    )


@cache
def _insert_logs_statement(dialect: str) -> Executable:
    """``INSERT … ON CONFLICT (attempt_id, seq) DO NOTHING`` in the dialect's words."""
    return upsert_insert(dialect, _LOG).on_conflict_do_nothing(index_elements=["attempt_id", "seq"])


def append_logs(
    session: Session, key: LeaseKey, lines: list[dict[str, Any]], *, now: datetime, max_bytes: int
) -> LogsStored | Refused:
    """Store log lines while the lease is live, within the attempt's log budget
    (:mod:`minitower_shared.log_budget`, ``max_bytes``): a ``seq`` the attempt already
    has is ignored, so batches may be resent safely; past the cap, one truncation line
    and then nothing. The budget is read and spent in this transaction, on the attempt's
    locked row."""
    row = _execute(session, _LOGGING_ATTEMPT, now=now, **_lease_params(key)).first()
    if row is None:
        return _why_gone(session, key)
    budget = Budget(stored_bytes=row.log_bytes, truncated=row.log_truncated)
    stored = () if budget.truncated else stored_seqs(session, row.id, [x["seq"] for x in lines])
    admitted = admit(budget, stored, lines, max_bytes)
    if admitted.lines:
        statement = _insert_logs_statement(session.get_bind().dialect.name)
        rows = [{**line, "attempt_id": row.id} for line in admitted.lines]
        session.connection().execute(statement, rows)
        _execute(
            session,
            _SPEND_LOG_BUDGET,
            the_attempt=row.id,
            b_bytes=admitted.after.stored_bytes,
            b_truncated=admitted.after.truncated,
        )
    return LogsStored(attempt_id=row.id, lines=len(admitted.lines), dropped=admitted.dropped)


# ----------------------------------------------------------------------------- result

# A runner's result on an attempt being cancelled: only work that really finished counts
# as completed; anything else ends the run cancelled.
_RESULT_WHEN_CANCELLING = {
    AttemptStatus.COMPLETED: AttemptStatus.COMPLETED,
    AttemptStatus.FAILED: AttemptStatus.CANCELLED,
    AttemptStatus.CANCELLED: AttemptStatus.CANCELLED,
}


def report_result(
    session: Session,
    key: LeaseKey,
    *,
    reported: AttemptStatus,
    exit_code: int | None,
    error_message: str | None,
    now: datetime,
    run_locked: bool = False,
) -> Finished | Refused:
    """Record the runner's result and end the run (or queue its retry).

    The same result again is accepted (the runner may retry after a lost answer); a
    different one is a CONFLICT; an expired or foreign lease is GONE. ``run_locked``:
    this transaction holds the run's row lock already (``find_runner_by_token``'s
    ``lock_run``)."""
    if not run_locked:
        _lock_run(session, run_id=key.run_id)
    attempt = _execute(session, _RESULT_READ, **_lease_params(key)).first()
    if attempt is None:
        return Refused(Refusal.GONE, _GONE_UNKNOWN)
    if attempt.reported_status is not None:
        if attempt.reported_status != reported.value:
            return Refused(
                Refusal.CONFLICT,
                f"this attempt already reported {attempt.reported_status!r}, "
                f"not {reported.value!r}",
            )
        return Finished(
            attempt_id=attempt.id,
            attempt_no=attempt.attempt_no,
            attempt_status=AttemptStatus(attempt.status),
            run_status=RunStatus(attempt.run_status),
            app_id=attempt.app_id,
            first=False,
        )
    if attempt.status not in _ACTIVE or as_utc(attempt.lease_expires_at) <= now:
        return _why_gone(session, key)
    previous = AttemptStatus(attempt.status)
    final = _RESULT_WHEN_CANCELLING[reported] if previous == AttemptStatus.CANCELLING else reported
    if previous not in attempt_sources(final):
        if previous == AttemptStatus.LEASED:
            return Refused(Refusal.CONFLICT, "the attempt has not started; call start first")
        # Only a requested cancel ends a run cancelled: a runner giving up on its own fails it.
        return Refused(Refusal.CONFLICT, "the run was not cancelled: report completed or failed")
    recorded = _execute(
        session,
        _RESULT_WRITE,
        attempt_id=attempt.id,
        previous=previous.value,
        now=now,
        b_status=final.value,
        b_reported=reported.value,
        b_exit_code=exit_code,
        b_error_message=error_message,
    ).first()
    if recorded is None:
        return _why_gone(session, key)
    run_status = RunStatus(final.value)
    if (
        final == AttemptStatus.FAILED
        and previous == AttemptStatus.RUNNING
        and _requeue_for_retry(
            session, key.run_id, reason=reason_of_failure(error_message), now=now
        )
    ):
        run_status = RunStatus.QUEUED
    else:
        # The run stands where its attempt stood: cancelling with a cancelling attempt.
        paired = RunStatus(previous.value)
        if not end_run(
            session,
            key.run_id,
            expected={paired},
            status=run_status,
            now=now,
            exit_code=exit_code,
            error_message=error_message,
        ):
            raise RuntimeError(f"run {key.run_id} was not {paired.value} with its attempt")
    return Finished(
        attempt_id=attempt.id,
        attempt_no=attempt.attempt_no,
        attempt_status=final,
        run_status=run_status,
        app_id=attempt.app_id,
        first=True,
    )


# ----------------------------------------------------------------------------- cancel


def cancel(session: Session, run_id: int, now: datetime) -> CancelOutcome | None:
    """Idempotent; None when there is no such run. A queued run is cancelled at once; a
    leased or running one (and its attempt) moves to ``cancelling`` and its runner is told
    on its next call. Cancelling or terminal runs are left as they are."""
    # Each step is conditional on the status just read; under SQLite's write lock the
    # first pass always settles it, elsewhere a writer in between sends us round again.
    for _ in range(3):
        status = _execute(session, _RUN_STATUS, the_run=run_id).scalar()
        if status is None:
            return None
        before = RunStatus(status)
        if before == RunStatus.QUEUED:
            if end_run(
                session,
                run_id,
                expected={RunStatus.QUEUED},
                status=RunStatus.CANCELLED,
                now=now,
                cancel_requested=True,
                error_message="cancelled before it was leased",
            ):
                return CancelOutcome(before, RunStatus.CANCELLED)
            continue
        if before not in run_sources(RunStatus.CANCELLING):
            return CancelOutcome(before, before)
        moved = _execute(session, _TO_CANCELLING, the_run=run_id, before=before.value, now=now)
        if moved.first() is not None:
            _execute(session, _ATTEMPT_TO_CANCELLING, the_run=run_id)
            return CancelOutcome(before, RunStatus.CANCELLING)
    raise RuntimeError(f"run {run_id} kept changing status while it was being cancelled")
