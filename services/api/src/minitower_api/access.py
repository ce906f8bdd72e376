"""Request ids and the access log.

Every request gets an id: the client's ``X-Request-ID`` when it is 1-128 characters of
``[A-Za-z0-9._:-]``, else a new one. Every log record of the request carries it as
``request_id``, every answer returns it in ``X-Request-ID``, and when the answer is sent
one ``request`` line records the method, the route, the status and the time taken (it
replaces uvicorn's access log).
"""

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minitower_shared.log_context import bound_ids
from minitower_shared.request_origin import bound_client_address

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

_VALID_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")

log = logging.getLogger("minitower.api.access")


def request_id_of(sent: str | None) -> str:
    """The client's id if it is one we can log and echo safely, else a fresh one."""
    if sent is not None and _VALID_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Must wrap the whole application, Starlette's error middleware included, so that a
    500 carries the id too and the error's log record is made inside the request's
    context (see ``main.MiniTowerApp``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope.get("headers", ()) if k == _HEADER_KEY), None)
        request_id = request_id_of(sent.decode("latin-1") if sent is not None else None)
        started = time.perf_counter()
        status: int | None = None
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [*message.get("headers", ()), (_HEADER_KEY, request_id.encode())]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True
            await send(message)

        # uvicorn has already put the client's address from X-Forwarded-For here when
        # the proxy is trusted (FORWARDED_ALLOW_IPS); otherwise it is the peer's.
        peer = scope.get("client")
        with bound_ids(request_id=request_id), bound_client_address(peer[0] if peer else None):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                # Starlette's error middleware has logged it (errors.py), answered 500 and
                # re-raised it for the server to log again: once is enough.
                if not answered:
                    raise
            finally:
                route: Any = scope.get("route")
                client = scope.get("client")
                log.info(
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": getattr(route, "path_format", None) or scope.get("path"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "client": client[0] if client else None,
                    },
                )
