"""Reading a run's logs: one page at a time, or followed live over Server-Sent Events."""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from minitower_api.deps import CallerDep, RunId, Services, ServicesDep
from minitower_api.errors import not_found, responses
from minitower_api.longpoll import QueueSignal
from minitower_api.routers.runs import require_run
from minitower_api.stream_slots import StreamSlot
from minitower_api.views import log_public
from minitower_shared.models import RunLog
from minitower_shared.schemas import MAX_INT64, LogPage, LogStreamEnd
from minitower_shared.states import TERMINAL_RUN_STATUSES
from minitower_shared.store import logs as log_store
from minitower_shared.store import runs as run_store
from minitower_shared.store import teams as team_store

router = APIRouter(prefix="/api/v1/runs/{run_id}/logs", tags=["logs"])

KEEPALIVE_SECONDS = 15.0
_FOLLOW_BATCH = 1000


@router.get("", response_model=LogPage, responses=responses())
def read_logs(
    run_id: RunId,
    caller: CallerDep,
    services: ServicesDep,
    after_seq: Annotated[
        int, Query(ge=-1, le=MAX_INT64, description="Return lines with seq > after_seq")
    ] = -1,
    attempt: Annotated[
        int | None, Query(ge=1, le=MAX_INT64, description="Attempt number; default the latest")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogPage:
    """One attempt's lines after ``after_seq``, in order; pass ``next_seq`` back as
    ``after_seq`` to continue."""
    with services.read() as session:
        require_run(session, caller.team_id, run_id)
        record = run_store.get_attempt(session, run_id, attempt)
        if record is None:
            if attempt is not None:
                raise not_found(f"run {run_id} has no attempt {attempt}")
            return LogPage(logs=[], next_seq=after_seq)
        assert record.id is not None
        lines = log_store.list_attempt_logs(session, record.id, after_seq=after_seq, limit=limit)
    next_seq = lines[-1].seq if lines else after_seq
    return LogPage(logs=[log_public(line, record.attempt_no) for line in lines], next_seq=next_seq)


def _sse(event: str, data: object, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


_EVENT_ID = re.compile(r"([0-9]{1,19}):(-1|[0-9]{1,19})")


def _parse_last_event_id(value: str | None) -> tuple[int, int]:
    """An id this stream sent (``attempt_no:seq``); anything else starts from the top."""
    match = _EVENT_ID.fullmatch(value or "")
    if match is None:
        return 0, -1
    attempt, seq = int(match[1]), int(match[2])
    if attempt > MAX_INT64 or seq > MAX_INT64:
        return 0, -1
    return attempt, seq


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        **responses(429),
        200: {
            "content": {"text/event-stream": {}},
            "description": "`log` events (data: a log line; id: attempt_no:seq), comment "
            "keep-alives, and one final event: `end` (data: {status}) when the run is "
            "terminal, or `error` (data: the error object, code `unauthorized`) when the "
            "token was revoked while the stream was open",
        },
    },
)
async def follow_logs(
    run_id: RunId,
    caller: CallerDep,
    services: ServicesDep,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event id (attempt_no:seq)")
    ] = None,
) -> StreamingResponse:
    """Follow the run's log lines of every attempt live, until the run is terminal. A
    token may have MINITOWER_MAX_FOLLOWERS_PER_TOKEN streams open at once (429 beyond);
    a stream ends within MINITOWER_FOLLOW_RECHECK_INTERVAL of its token's revocation."""

    def check_run() -> None:
        with services.read() as session:
            require_run(session, caller.team_id, run_id)

    await run_in_threadpool(check_run)
    assert caller.token.id is not None
    slot = services.followers.acquire(caller.token.id)
    follower = _Follower(services, caller.team_id, caller.token.id, run_id)
    return StreamingResponse(
        follower.stream(_parse_last_event_id(last_event_id), slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Also when the client left before the stream began, so its body never ran.
        background=BackgroundTask(slot.release),
    )


class _Follower:
    def __init__(self, services: Services, team_id: int, token_id: int, run_id: int) -> None:
        self.services = services
        self.team_id = team_id
        self.token_id = token_id
        self.run_id = run_id

    def poll(self, attempt_no: int, seq: int) -> tuple[bool, list[tuple[RunLog, int]], str | None]:
        """Whether the token is still good, the lines after the position, the run's status."""
        with self.services.read() as session:
            if not team_store.token_is_active(session, self.token_id):
                return False, [], None
            view = run_store.get_run_view(session, self.team_id, self.run_id)
            status = view.run.status if view is not None else None
            rows = log_store.list_run_logs_after(
                session, self.run_id, after_attempt=attempt_no, after_seq=seq, limit=_FOLLOW_BATCH
            )
        return True, rows, status

    async def stream(self, position: tuple[int, int], slot: StreamSlot) -> AsyncIterator[str]:
        watch = self.services.follow_watch
        watch.add(self.run_id, self.token_id)
        try:
            async for event in self._events(position):
                yield event
        finally:
            watch.discard(self.run_id, self.token_id)
            slot.release()

    async def _events(self, position: tuple[int, int]) -> AsyncIterator[str]:
        attempt_no, seq = position
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while True:
            # Armed before the read: a write landing during it still wakes us.
            woken = self.services.run_signals.arm(self.run_id)
            token_ok, rows, status = await run_in_threadpool(self.poll, attempt_no, seq)
            if not token_ok:
                error = {"code": "unauthorized", "message": "the token was revoked"}
                yield _sse("error", {"error": error})
                return
            for log, number in rows:
                attempt_no, seq = number, log.seq
                yield _sse(
                    "log", log_public(log, number).model_dump(mode="json"), f"{attempt_no}:{seq}"
                )
                last_sent = loop.time()
            if len(rows) == _FOLLOW_BATCH:
                continue
            # Lines are stored before the result, so once the run is terminal (read in the
            # same transaction as the lines) there is nothing more to come.
            if status is None or status in TERMINAL_RUN_STATUSES:
                yield _sse("end", LogStreamEnd(status=status).model_dump(mode="json"))
                return
            # Idle until a writer or the follow watch (follow_watch.py) wakes the run: an
            # idle follower reads nothing, it only sends a keep-alive now and then.
            while not woken.is_set():
                until_keepalive = KEEPALIVE_SECONDS - (loop.time() - last_sent)
                if until_keepalive <= 0:
                    yield ": keep-alive\n\n"
                    last_sent = loop.time()
                    continue
                await QueueSignal.wait(woken, until_keepalive)
