"""Request body limits, enforced as the body arrives: nothing is buffered here."""

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minitower_api.errors import error_response

_UPLOAD_PATH = re.compile(r"^/api/v1/apps/[^/]+/versions/?$")
# Multipart framing and form fields around the archive itself.
_FORM_OVERHEAD = 1024 * 1024


class BodyLimitMiddleware:
    """413 for bodies over the limit: the artifact limit for version uploads, the
    request limit for everything else. A declared Content-Length over it is refused
    before anything is read; every body (chunked ones included) is counted as the
    handler reads it, and the read that goes past the limit raises the 413 instead of
    returning the chunk, so no more than the limit is ever taken in."""

    def __init__(self, app: ASGIApp, *, max_request_bytes: int, max_artifact_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_artifact_bytes + _FORM_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and _UPLOAD_PATH.match(scope["path"]) is not None
        limit = self.max_upload_bytes if upload else self.max_request_bytes
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                response = error_response(400, "invalid_request", "invalid Content-Length header")
                await response(scope, receive, send)
                return
            if int(length) > limit:
                await self._too_large(scope, receive, send, limit)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the handler's read: FastAPI passes HTTPExceptions
                    # from body parsing through, and the error handlers shape it.
                    raise HTTPException(413, _too_large_message(limit))
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(413, "payload_too_large", _too_large_message(limit))
        await response(scope, receive, send)


def _too_large_message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes"
