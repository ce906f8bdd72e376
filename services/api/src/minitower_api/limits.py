"""Request body limits, enforced before a handler reads anything."""

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minitower_api.errors import error_response

_UPLOAD_PATH = re.compile(r"^/api/v1/apps/[^/]+/versions/?$")
# Multipart framing and form fields around the archive itself.
_FORM_OVERHEAD = 1024 * 1024


class BodyLimitMiddleware:
    """413 for bodies over the limit: the artifact limit for version uploads, the
    request limit for everything else. A body without Content-Length is buffered up to
    the limit, so chunked uploads cannot get around it."""

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
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > limit:
                await self._too_large(scope, receive, send, limit)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            413, "payload_too_large", f"request body is larger than the limit of {limit} bytes"
        )
        await response(scope, receive, send)
