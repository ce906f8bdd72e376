"""The runner's side of a run: lease, start, artifact, heartbeat, logs, result.

Calls about one attempt carry the runner token and the attempt's lease token. Any
lease that is unknown, another runner's or run's, expired, finished or reassigned
answers 410: the runner must stop the work and report nothing.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from sqlmodel import Session

from minitower_api.deps import (
    LeaseTokenDep,
    RunId,
    RunnerTokenDep,
    Services,
    ServicesDep,
    require_runner,
)
from minitower_api.errors import HttpProblem, conflict, gone, responses
from minitower_api.objects import LocalObjectStore
from minitower_shared.clock import utcnow
from minitower_shared.models import AppVersion, Run
from minitower_shared.schemas import (
    HeartbeatResult,
    LeaseGranted,
    LeaseRequest,
    LogBatch,
    LogLineIn,
    LogsAccepted,
    ResultAccepted,
    ResultReport,
    StartResult,
)
from minitower_shared.states import AttemptStatus
from minitower_shared.store import lifecycle, queue
from minitower_shared.store import runners as runner_store
from minitower_shared.store.lifecycle import Granted, LeaseKey, LiveAttempt, Refusal, Refused
from minitower_shared.tokens import LEASE_TOKEN_PREFIX, hash_token, new_token

router = APIRouter(prefix="/api/v1/runs", tags=["runner"])
log = logging.getLogger("minitower.api")


def _ttl(services: Services) -> timedelta:
    return timedelta(seconds=services.settings.lease_ttl)


def refused(verdict: Refused) -> HttpProblem:
    """A lifecycle refusal as HTTP: a lease that is gone 410, anything else 409."""
    if verdict.kind == Refusal.GONE:
        return gone(f"the lease is gone: {verdict.reason}")
    return conflict(verdict.reason)


@dataclass(frozen=True)
class _NoWork:
    """Nothing to lease now; ``due``: when the next delayed run becomes eligible."""

    due: datetime | None


def _try_lease(
    services: Services, runner_token: str, *, probe_first: bool, start_it: bool
) -> LeaseGranted | Refused | _NoWork:
    """One look for work, in one threadpool call: a waiting poll wakes with hundreds of
    others, and each hop more queues behind theirs."""
    if probe_first:
        with services.read() as session:
            runner = require_runner(session, runner_token)
            if not queue.may_lease(
                session,
                runner_id=runner.id,
                environment=runner.environment,
                team_id=runner.team_id,
                now=utcnow(),
            ):
                return _NoWork(queue.next_delayed_at(session))
    token = new_token(LEASE_TOKEN_PREFIX)
    with services.write() as session:
        now = utcnow()
        runner = require_runner(session, runner_token, lock=True)
        runner_store.mark_seen(session, runner, now)
        grant = lifecycle.lease(
            session,
            runner_id=runner.id,
            environment=runner.environment,
            lease_token_hash=hash_token(token),
            now=now,
            ttl=_ttl(services),
            team_id=runner.team_id,
            start_it=start_it,
            runner_locked=True,
        )
    if grant is None:
        with services.read() as session:
            return _NoWork(queue.next_delayed_at(session))
    if isinstance(grant, Refused):
        return grant
    if grant.passed_over:
        # A racing lease that skipped the runs this one held locked found nothing and
        # waits; nothing else would wake it before its re-check.
        services.signal.notify()
    services.metrics.runs_leased.labels(services.metrics.app_label(grant.run.app_id)).inc()
    log.info(
        "run leased",
        extra={
            "run_id": grant.run.id,
            "attempt_no": grant.attempt.attempt_no,
            "runner": runner.name,
        },
    )
    return _granted(grant, token)


def _granted(grant: Granted, token: str) -> LeaseGranted:
    run, attempt = grant.run, grant.attempt
    return LeaseGranted(
        run_id=run.id,
        run_no=run.run_no,
        app_id=run.app_id,
        app_slug=grant.app.slug,
        version_no=grant.version.version_no,
        entrypoint=grant.version.entrypoint,
        timeout_seconds=grant.version.timeout_seconds,
        input=run.input,
        import_paths=grant.version.import_paths,
        artifact_sha256=grant.version.artifact_sha256,
        attempt_id=attempt.id,
        attempt_no=attempt.attempt_no,
        lease_token=token,
        lease_expires_at=attempt.lease_expires_at,
        team_id=run.team_id,
        secrets=grant.secrets,
        started=attempt.status == AttemptStatus.RUNNING,
        server_time=utcnow(),
    )


@router.post(
    "/lease",
    response_model=LeaseGranted,
    responses={**responses(409, 429), 204: {"description": "no work (within wait_seconds)"}},
)
async def lease_run(
    request: Request,
    runner_token: RunnerTokenDep,
    services: ServicesDep,
    body: LeaseRequest | None = None,
) -> LeaseGranted | Response:
    """Claim the next queued run of the runner's environment: highest priority, then
    oldest, then lowest id. With ``wait_seconds`` (≤ 30) the call waits for work (long
    poll); give the HTTP client a longer timeout than that. With ``start`` the attempt
    is started too (no start call needed). 409 while this runner already holds a live
    lease; 429 while its token already has MINITOWER_MAX_LONG_POLLS_PER_TOKEN waiting
    calls open."""
    body = body or LeaseRequest()
    if body.wait_seconds <= 0:
        return await _lease_loop(request, runner_token, services, body)
    # Only waiting calls hold a slot: a plain lease is over in milliseconds.
    slot = services.long_polls.acquire(runner_token)
    try:
        return await _lease_loop(request, runner_token, services, body)
    finally:
        slot.release()


async def _lease_loop(
    request: Request, runner_token: str, services: Services, body: LeaseRequest
) -> LeaseGranted | Response:
    deadline = time.monotonic() + body.wait_seconds
    first = True
    while True:
        # A runner that hung up must not be handed a run it will never start: that run
        # would sit leased until its lease expired and spend one of its retries.
        if not first and await request.is_disconnected():
            return Response(status_code=204)
        woken = services.signal.arm()
        result = await run_in_threadpool(
            _try_lease, services, runner_token, probe_first=not first, start_it=body.start
        )
        first = False
        if isinstance(result, Refused):
            raise refused(result)
        if isinstance(result, LeaseGranted):
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Response(status_code=204)
        pause = min(remaining, services.settings.lease_poll_interval)
        # A delayed run (or a retry's backoff) becoming due wakes the waiter on time,
        # whatever the poll interval.
        if result.due is not None:
            pause = max(min(pause, (result.due - utcnow()).total_seconds()), 0.0)
        await services.signal.wait(woken, pause)


def lease_key(session: Session, runner_token: str, run_id: int, lease_hash: str) -> LeaseKey:
    """The attempt a runner's call names, once its runner token is known."""
    runner = require_runner(session, runner_token)
    return LeaseKey(run_id=run_id, runner_id=runner.id, token_hash=lease_hash)


def live_attempt(session: Session, key: LeaseKey, now: datetime) -> LiveAttempt:
    """The guard of the runner's calls that change nothing: 410 unless the lease is live."""
    attempt = lifecycle.live_attempt(session, key, now)
    if isinstance(attempt, Refused):
        raise refused(attempt)
    return attempt


@router.post("/{run_id}/start", response_model=StartResult, responses=responses(410))
def start_run(
    run_id: RunId, runner_token: RunnerTokenDep, lease: LeaseTokenDep, services: ServicesDep
) -> StartResult:
    """``leased → running``; extends the lease. Safe to repeat. ``cancel_requested``
    true means: do not run the work, report ``cancelled``."""
    with services.write() as session:
        key = lease_key(session, runner_token, run_id, lease)
        attempt = lifecycle.start(session, key, now=utcnow(), ttl=_ttl(services))
    if isinstance(attempt, Refused):
        raise refused(attempt)
    return StartResult(
        attempt_no=attempt.attempt_no,
        status=attempt.status,
        lease_expires_at=attempt.lease_expires_at,
        cancel_requested=attempt.cancel_requested,
        server_time=utcnow(),
    )


@router.get(
    "/{run_id}/artifact",
    response_class=FileResponse,
    responses={
        **responses(410),
        200: {
            "content": {"application/gzip": {}},
            "description": "the version's .tar.gz; headers X-Artifact-SHA256, and as the "
            "reference's runner reads them X-Entrypoint, X-Timeout-Seconds and X-Import-Paths "
            "(a JSON list, present when the version has import paths)",
        },
    },
)
def download_artifact(
    run_id: RunId, runner_token: RunnerTokenDep, lease: LeaseTokenDep, services: ServicesDep
) -> Response:
    """The archive of the run's version; verify it against ``X-Artifact-SHA256``."""
    with services.read() as session:
        live_attempt(session, lease_key(session, runner_token, run_id, lease), utcnow())
        run = session.get(Run, run_id)
        assert run is not None
        version = session.get(AppVersion, run.app_version_id)
        assert version is not None
    filename = f"run-{run_id}.tar.gz"
    objects = services.objects
    if isinstance(objects, LocalObjectStore):
        return FileResponse(
            objects.path(version.artifact_object_key),
            media_type="application/gzip",
            filename=filename,
            headers=_artifact_headers(version),
        )
    # Streamed a chunk at a time from the database; the size is known up front, so the
    # runner gets a Content-Length as from a file.
    size = objects.size(version.artifact_object_key)
    if size is None:
        raise LookupError(f"the object of version {version.id} is missing")
    return StreamingResponse(
        objects.chunks(version.artifact_object_key),
        media_type="application/gzip",
        headers={
            **_artifact_headers(version),
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def _artifact_headers(version: AppVersion) -> dict[str, str]:
    headers = {
        "X-Artifact-SHA256": version.artifact_sha256,
        # Header values are latin-1: an entrypoint or import path beyond it is escaped
        # as JSON would (the reference's runner reads X-Import-Paths as JSON).
        "X-Entrypoint": version.entrypoint.encode("latin-1", "backslashreplace").decode("latin-1"),
        "X-Timeout-Seconds": str(version.timeout_seconds),
    }
    if version.import_paths:
        headers["X-Import-Paths"] = json.dumps(version.import_paths)
    return headers


@router.post("/{run_id}/heartbeat", response_model=HeartbeatResult, responses=responses(410))
def heartbeat(
    run_id: RunId, runner_token: RunnerTokenDep, lease: LeaseTokenDep, services: ServicesDep
) -> HeartbeatResult:
    """Extend the lease. An expired lease is never revived: 410."""
    with services.write() as session:
        now = utcnow()
        runner = require_runner(session, runner_token)
        key = LeaseKey(run_id=run_id, runner_id=runner.id, token_hash=lease)
        attempt = lifecycle.heartbeat(session, key, now=now, ttl=_ttl(services))
        if isinstance(attempt, Refused):
            raise refused(attempt)
        runner_store.mark_seen(session, runner, now)
    return HeartbeatResult(
        lease_expires_at=attempt.lease_expires_at,
        cancel_requested=attempt.cancel_requested,
        server_time=utcnow(),
    )


@router.post("/{run_id}/logs", response_model=LogsAccepted, responses=responses(410, 413))
def append_logs(
    run_id: RunId,
    body: LogBatch,
    runner_token: RunnerTokenDep,
    lease: LeaseTokenDep,
    services: ServicesDep,
) -> LogsAccepted:
    """Store a batch of log lines. A ``seq`` already stored is ignored, so a batch may be
    resent safely. Past MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT bytes of an attempt's lines,
    one truncation line is stored in place of the first line over it, and later lines
    are accepted but dropped (counted in ``dropped``)."""
    lines = _log_rows(body.logs)
    with services.write() as session:
        key = lease_key(session, runner_token, run_id, lease)
        stored = lifecycle.append_logs(
            session, key, lines, now=utcnow(), max_bytes=services.settings.max_log_bytes_per_attempt
        )
    if isinstance(stored, Refused):
        raise refused(stored)
    if stored.lines:
        services.run_signals.notify(run_id)
    return LogsAccepted(accepted=len(lines), dropped=stored.dropped)


def _log_rows(lines: list[LogLineIn]) -> list[dict[str, object]]:
    received = utcnow()
    return [
        {
            "seq": line.seq,
            "stream": line.stream,
            "line": line.line,
            "logged_at": line.logged_at or received,
        }
        for line in lines
    ]


def _store_lines(
    services: Services,
    session: Session,
    key: LeaseKey,
    lines: list[dict[str, object]],
    now: datetime,
) -> bool:
    """A result's lines, stored as the logs call stores them; False when the attempt has
    ended (a repeated result) or none fit."""
    max_bytes = services.settings.max_log_bytes_per_attempt
    stored = lifecycle.append_logs(session, key, lines, now=now, max_bytes=max_bytes)
    return not isinstance(stored, Refused) and stored.lines > 0


@router.post("/{run_id}/result", response_model=ResultAccepted, responses=responses(409, 410))
def report_result(
    run_id: RunId,
    body: ResultReport,
    runner_token: RunnerTokenDep,
    lease: LeaseTokenDep,
    services: ServicesDep,
) -> ResultAccepted:
    """Finish the attempt and the run. The same status again answers 200; another one
    409. A ``completed`` result while the run is being cancelled still completes it:
    the work really finished. ``cancelled`` is for a run whose cancel the runner saw
    (``cancel_requested``); otherwise it is 409. ``logs``, the attempt's last lines, are
    stored first, in the same transaction, as POST logs would store them."""
    lines = _log_rows(body.logs)
    with services.write() as session:
        # The run's row lock comes with the runner's lookup: one round trip fewer.
        runner = require_runner(session, runner_token, lock_run=run_id)
        key = LeaseKey(run_id=run_id, runner_id=runner.id, token_hash=lease)
        now = utcnow()
        stored = _store_lines(services, session, key, lines, now) if lines else False
        finished = lifecycle.report_result(
            session,
            key,
            reported=AttemptStatus(body.status),
            exit_code=body.exit_code,
            error_message=body.error_message,
            now=now,
            run_locked=True,
        )
    if stored:
        services.run_signals.notify(run_id)
    # Lines of a live lease are kept even when the result is refused, as a logs call's.
    if isinstance(finished, Refused):
        raise refused(finished)
    services.run_signals.notify(run_id)
    # A retry queued at once, or a concurrency slot freed: waiting runners look again.
    services.signal.notify()
    if finished.first:
        app_label = services.metrics.app_label(finished.app_id)
        services.metrics.runs_finished.labels(app_label, finished.run_status).inc()
        log.info(
            "run finished",
            extra={
                "run_id": run_id,
                "attempt_no": finished.attempt_no,
                "runner": runner.name,
                "status": finished.run_status,
            },
        )
    return ResultAccepted(
        run_id=run_id,
        attempt_no=finished.attempt_no,
        status=finished.attempt_status,
        run_status=finished.run_status,
    )
