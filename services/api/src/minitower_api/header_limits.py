"""Caps on a request's head: the number of headers and the size of the request line and
headers together, answered 431 with the error object.

The server (server.py) bounds what it buffers before a head is parsed; this is the
exact per-request check, and the only one where the app runs under another server."""

from starlette.types import ASGIApp, Receive, Scope, Send

from minitower_api.errors import error_response

# "Name: value\r\n" around each header, "METHOD path?query HTTP/1.1\r\n" around the target.
_HEADER_FRAMING = 4
_REQUEST_LINE_FRAMING = 16


class HeaderLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_header_count: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if len(headers) > self.max_header_count:
            message = (
                f"the request has {len(headers)} headers; the limit is {self.max_header_count}"
            )
            await self._refuse(scope, receive, send, message)
            return
        size = (
            len(scope["method"])
            + len(scope.get("raw_path") or scope["path"].encode())
            + len(scope["query_string"])
            + _REQUEST_LINE_FRAMING
            + sum(len(name) + len(value) + _HEADER_FRAMING for name, value in headers)
        )
        if size > self.max_header_bytes:
            message = (
                f"the request's head is larger than the limit of {self.max_header_bytes} bytes"
            )
            await self._refuse(scope, receive, send, message)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
        response = error_response(431, "header_too_large", message, headers={"Connection": "close"})
        await response(scope, receive, send)
