"""The HTTP server's own limits, below the application.

uvicorn with h11, deliberately: h11 caps the size of a request's head
(``h11_max_incomplete_event_size``), httptools does not (a 64 MiB header was accepted),
and h11 is pure Python, so the protocol class below can add what uvicorn lacks:

- a deadline for each request's head (from the connection's opening, or from the first
  byte of a later request on a kept-alive connection), so slow or silent sockets are
  closed with a 408 instead of being held for ever;
- a stall deadline for a request in progress: a client that sends no body bytes, or
  reads nothing of the answer, for that long is disconnected;
- a cap on open connections: a connection over it is answered 503 (with Retry-After)
  once its head arrives. Unlike uvicorn's ``limit_concurrency``, long polls and SSE
  followers do not count twice (as a connection and as a task), and the answer is the
  API's error object;
- malformed requests and oversized heads answered with the error object (400, 431)
  instead of h11's plain text.

The exact caps on the head's size and number of headers are checked again, per request,
by ``header_limits.HeaderLimitMiddleware``; h11's cap bounds what is buffered before that.
"""

import asyncio
import json
import logging
import sys
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from minitower_api.access import REQUEST_ID_HEADER
from minitower_api.errors import error_response

log = logging.getLogger("minitower.api")

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    max_header_bytes: int
    header_timeout: float
    client_timeout: float


def raw_error(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer carrying the error object, for the cases where no request
    was parsed (so no ASGI app can answer): it closes the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    request_id = uuid.uuid4().hex
    lines = [
        f"HTTP/1.1 {status} ".encode() + _REASONS.get(status, b"Error"),
        b"content-type: application/json",
        b"connection: close",
        f"content-length: {len(body)}".encode(),
        f"{REQUEST_ID_HEADER.lower()}: {request_id}".encode(),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    response = error_response(
        503,
        "server_busy",
        "the server has too many open connections; try again shortly",
        headers={"Retry-After": "1", "Connection": "close"},
    )
    await response(scope, receive, send)


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits above; ``protocol_class`` binds them."""

    limits: ClassVar[ServerLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    # --- the connection cap and the head deadline -------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Answer once the head is in: a response written before the client has sent
            # its request can be lost to the reset that closing an unread socket causes.
            self.app = _over_capacity
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            # The first byte of the next request on a kept-alive connection.
            self._arm_head_timer()
        super().data_received(data)
        if self.cycle is not None and self.cycle.more_body and not self.cycle.response_complete:
            self._arm_stall_timer()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:
            self._cancel_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        message = f"the request's head did not arrive within {self.limits.header_timeout:g} s"
        self.transport.write(raw_error(408, "request_timeout", message))
        self.transport.close()

    # --- stalled clients ---------------------------------------------------------------

    def _arm_stall_timer(self) -> None:
        self._cancel_stall_timer()
        self._stall_timer = self.loop.call_later(self.limits.client_timeout, self._stalled)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or cycle.response_complete:
            return
        receiving = cycle.more_body and not self.flow.read_paused
        if receiving or self.flow.write_paused:
            log.info("client stalled: connection dropped", extra={"client": self._client_host()})
            self.transport.abort()
            return
        if cycle.more_body:
            # We stopped reading (the app has not taken the body so far): not the client's
            # fault; look again later.
            self._arm_stall_timer()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_stall_timer()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_stall_timer()
        super().connection_lost(exc)

    def _client_host(self) -> str | None:
        return self.client[0] if self.client else None

    # --- protocol errors as the error object -------------------------------------------

    def send_400_response(self, msg: str) -> None:
        # Called by H11Protocol.handle_events inside its ``except RemoteProtocolError``,
        # which is the only place that knows what was wrong.
        exc = sys.exception()
        status = 400
        if isinstance(exc, h11.RemoteProtocolError) and exc.error_status_hint == 431:
            status = 431
        self._cancel_head_timer()
        if status == 431:
            message = (
                f"the request's head is larger than the limit of {self.limits.max_header_bytes} "
                "bytes"
            )
            code = "header_too_large"
        else:
            detail = str(exc) if exc is not None else msg
            message = f"malformed HTTP request: {detail}"
            code = "invalid_request"
        log.info("bad HTTP request", extra={"status": status, "client": self._client_host()})
        self.transport.write(raw_error(status, code, message))
        self.transport.close()


def protocol_class(limits: ServerLimits) -> type[LimitedH11Protocol]:
    class BoundProtocol(LimitedH11Protocol):
        pass

    BoundProtocol.limits = limits
    return BoundProtocol
