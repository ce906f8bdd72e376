"""The runner's HTTP client for the control plane's runner endpoints.

Exceptions::

    ApiCallFailed            a call that brought no answer the runner can use
    ├── Unavailable          no answer, a timeout, or a 5xx/429: try again later
    ├── LeaseGone            410: the lease is gone; stop the work, report nothing
    ├── Unauthorized         401 that a fresh registration did not cure
    └── Refused              any other 4xx (status, code and message kept)

Every call sends a fresh ``X-Request-ID`` (``runner-…``; a call repeated after a renewed
registration keeps it). The API logs its lines of that request under this id, so an
error's ``request_id`` (kept on the exception) finds them.
"""

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from minitower_shared.schemas import (
    ErrorResponse,
    HeartbeatResult,
    LeaseGranted,
    ResultAccepted,
    RunnerRegistered,
    RunSecrets,
    StartResult,
)
from minitower_shared.states import AttemptStatus

_Model = TypeVar("_Model", bound=BaseModel)

log = logging.getLogger("minitower.runner")

DATE_HEADER_SLACK = 2.0
# An answer's time in transit, and then some: a lease times out this much early.
TRANSIT_SLACK = 0.25


REQUEST_ID_HEADER = "X-Request-ID"


def new_request_id() -> str:
    return f"runner-{uuid.uuid4().hex[:16]}"


class ApiCallFailed(Exception):
    """The control plane did not give the runner an answer it can use. ``request_id`` is
    the id the call was sent with: the API's log lines of that call carry it."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def failure_ids(exc: BaseException | None) -> dict[str, str]:
    """``request_id`` of a failed call, for its log line (nothing for other errors)."""
    request_id = getattr(exc, "request_id", None)
    return {"request_id": request_id} if request_id else {}


class Unavailable(ApiCallFailed):
    """No answer (connection refused, timeout) or a server-side error: transient."""


class LeaseGone(ApiCallFailed):
    """410: the lease expired, was reassigned or finished elsewhere."""


class Unauthorized(ApiCallFailed):
    """401: the token (or the registration token) is not accepted."""


class Refused(ApiCallFailed):
    def __init__(
        self, status: int, code: str, message: str, *, request_id: str | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}", request_id=request_id)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class LeaseClock:
    """When a lease expires on the runner's monotonic clock, counted from when the answer
    arrived (a long poll's answer was written long after its request was sent), so that a
    runner whose wall clock is off still stops in time.

    The server's own time comes from the answer's ``server_time`` (milliseconds), less
    ``TRANSIT_SLACK`` for the answer's way here. An API from before that field gives only
    the ``Date`` header, which has whole seconds, is truncated, and which uvicorn
    refreshes once a second: it can be up to two seconds behind the server's clock and
    make the lease look that much longer, so those two seconds are taken off.
    """

    deadline: float

    @classmethod
    def from_answer(
        cls,
        expires: datetime,
        response: httpx.Response,
        received_at: float,
        server_time: datetime | None = None,
    ) -> "LeaseClock":
        server_now, slack = server_time, TRANSIT_SLACK
        if server_now is None:
            date = response.headers.get("date")
            if date:
                try:
                    server_now = parsedate_to_datetime(date)
                except (TypeError, ValueError):
                    server_now = None
            slack = DATE_HEADER_SLACK
        if server_now is None:
            server_now, slack = datetime.now(UTC), 0.0
        remaining = (expires - server_now).total_seconds() - slack
        return cls(deadline=received_at + remaining)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _log_call(method: str, path: str, status: int, started: float, request_id: str) -> None:
    """Every call at debug level (httpx's own lines are silenced): the request_id finds
    the API's lines of the call."""
    log.debug(
        "api call",
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "request_id": request_id,
        },
    )


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = ErrorResponse.model_validate_json(response.content).error
    except ValueError:
        return "unknown", response.text[:200]
    return error.code, error.message


class ApiClient:
    """One runner's calls, from several threads. On a 401, ``renew_token`` is called
    with the token that was refused, to register again (the API hands the same runner a
    new token), and the call is repeated once with the new token. ``on_answer`` is called
    as soon as an answer's headers arrive."""

    def __init__(
        self,
        server_url: str,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=server_url,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            event_hooks={"response": [self._answered]},
        )
        self._timeout = timeout
        self.token: str | None = None
        self.renew_token: Callable[[str | None], None] | None = None
        self.on_answer: Callable[[], None] | None = None
        # Leases ask for the attempt to be started too, until an API older than the
        # field refuses it.
        self._start_on_lease = True

    def _answered(self, _response: httpx.Response) -> None:
        if self.on_answer is not None:
            self.on_answer()

    def close(self) -> None:
        self._http.close()

    # --- plumbing --------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: str | None = None,
        lease_token: str | None = None,
        json: Any = None,
        timeout: float | None = None,
        request_id: str,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {auth or self.token}", REQUEST_ID_HEADER: request_id}
        if lease_token is not None:
            headers["X-Lease-Token"] = lease_token
        started = time.monotonic()
        try:
            response = self._http.request(
                method, path, headers=headers, json=json, timeout=timeout or self._timeout
            )
        except httpx.TransportError as exc:
            raise Unavailable(
                f"{method} {path}: {type(exc).__name__}: {exc}", request_id=request_id
            ) from exc
        _log_call(method, path, response.status_code, started, request_id)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A runner-token call: one fresh registration on 401, then the answer checked."""
        used = self.token
        request_id = new_request_id()
        response = self._send(method, path, request_id=request_id, **kwargs)
        if response.status_code == 401 and self.renew_token is not None:
            self.renew_token(used)
            response = self._send(method, path, request_id=request_id, **kwargs)
        self._check(method, path, response, request_id)
        return response

    @staticmethod
    def _check(method: str, path: str, response: httpx.Response, request_id: str) -> None:
        status = response.status_code
        if status < 300:
            return
        code, message = _error_of(response)
        if status >= 500 or status == 429:
            raise Unavailable(f"{method} {path}: {status} {code}: {message}", request_id=request_id)
        if status == 410:
            raise LeaseGone(message, request_id=request_id)
        if status == 401:
            raise Unauthorized(f"{method} {path}: {message}", request_id=request_id)
        raise Refused(status, code, message, request_id=request_id)

    @staticmethod
    def _parse(model: type[_Model], response: httpx.Response) -> _Model:
        try:
            return model.model_validate_json(response.content)
        except ValueError as exc:
            raise Unavailable(
                f"unexpected answer from the API: {exc}",
                request_id=response.request.headers.get(REQUEST_ID_HEADER),
            ) from exc

    # --- endpoints -------------------------------------------------------------------

    def register(
        self, registration_token: str, name: str, environment: str, labels: dict[str, str]
    ) -> RunnerRegistered:
        path = "/api/v1/runners/register"
        request_id = new_request_id()
        response = self._send(
            "POST",
            path,
            auth=registration_token,
            json={"name": name, "environment": environment, "labels": labels},
            request_id=request_id,
        )
        self._check("POST", path, response, request_id)
        return self._parse(RunnerRegistered, response)

    def lease(self, wait_seconds: float) -> tuple[LeaseGranted, LeaseClock] | None:
        body: dict[str, Any] = {"wait_seconds": wait_seconds}
        if self._start_on_lease:
            body["start"] = True
        try:
            response = self._call(
                "POST",
                "/api/v1/runs/lease",
                json=body,
                # The server holds a long poll for up to wait_seconds: wait longer than that.
                timeout=self._timeout + wait_seconds,
            )
        except Refused as exc:
            if exc.status != 422 or not self._start_on_lease:
                raise
            log.warning("the API does not start attempts on lease (an older release)")
            self._start_on_lease = False
            return self.lease(wait_seconds)
        if response.status_code == 204:
            return None
        grant = self._parse(LeaseGranted, response)
        return grant, LeaseClock.from_answer(
            grant.lease_expires_at, response, time.monotonic(), grant.server_time
        )

    def start(self, run_id: int, lease_token: str) -> tuple[StartResult, LeaseClock]:
        response = self._call("POST", f"/api/v1/runs/{run_id}/start", lease_token=lease_token)
        started = self._parse(StartResult, response)
        return started, LeaseClock.from_answer(
            started.lease_expires_at, response, time.monotonic(), started.server_time
        )

    def heartbeat(
        self, run_id: int, lease_token: str, *, timeout: float | None = None
    ) -> tuple[HeartbeatResult, LeaseClock]:
        response = self._call(
            "POST", f"/api/v1/runs/{run_id}/heartbeat", lease_token=lease_token, timeout=timeout
        )
        beat = self._parse(HeartbeatResult, response)
        return beat, LeaseClock.from_answer(
            beat.lease_expires_at, response, time.monotonic(), beat.server_time
        )

    def download_artifact(self, run_id: int, lease_token: str, dest: Path) -> tuple[str, str]:
        """Stream the artifact to ``dest``; return (sha256 of the bytes, the header's)."""
        path = f"/api/v1/runs/{run_id}/artifact"
        request_id = new_request_id()
        for renewed in (False, True):
            used = self.token
            headers = {
                "Authorization": f"Bearer {used}",
                "X-Lease-Token": lease_token,
                REQUEST_ID_HEADER: request_id,
            }
            started = time.monotonic()
            try:
                with self._http.stream("GET", path, headers=headers) as response:
                    _log_call("GET", path, response.status_code, started, request_id)
                    if response.status_code == 401 and not renewed and self.renew_token:
                        self.renew_token(used)
                        continue
                    if response.status_code >= 300:
                        response.read()
                        self._check("GET", path, response, request_id)
                    digest = hashlib.sha256()
                    with dest.open("wb") as out:
                        for chunk in response.iter_bytes(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                    return digest.hexdigest(), response.headers.get("x-artifact-sha256", "")
            except httpx.TransportError as exc:
                raise Unavailable(
                    f"GET {path}: {type(exc).__name__}: {exc}", request_id=request_id
                ) from exc
        raise Unauthorized(f"GET {path}: the runner token is not accepted", request_id=request_id)

    def fetch_secrets(self, run_id: int, lease_token: str) -> RunSecrets:
        response = self._call("GET", f"/api/v1/runs/{run_id}/secrets", lease_token=lease_token)
        try:
            return RunSecrets.model_validate_json(response.content)
        except ValueError:
            # Not _parse: a validation error quotes its input, and this input is secrets.
            raise Unavailable(
                "unexpected answer from the API to GET secrets",
                request_id=response.request.headers.get(REQUEST_ID_HEADER),
            ) from None

    def send_logs(self, run_id: int, lease_token: str, lines: list[dict[str, Any]]) -> None:
        self._call(
            "POST", f"/api/v1/runs/{run_id}/logs", lease_token=lease_token, json={"logs": lines}
        )

    def report_result(
        self,
        run_id: int,
        lease_token: str,
        status: AttemptStatus,
        exit_code: int | None,
        error_message: str | None,
        logs: list[dict[str, Any]],
    ) -> ResultAccepted:
        body: dict[str, Any] = {"status": status}
        if logs:
            body["logs"] = logs
        if exit_code is not None:
            body["exit_code"] = exit_code
        if error_message is not None:
            body["error_message"] = error_message[:10_000]
        response = self._call(
            "POST", f"/api/v1/runs/{run_id}/result", lease_token=lease_token, json=body
        )
        return self._parse(ResultAccepted, response)
