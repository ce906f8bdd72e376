"""The API over HTTP: JSON calls, paginated listings and the live log stream.

Answers are read as the API's own schemas (minitower_shared.schemas). Every failure
leaves as a :class:`~minitower_cli.errors.CliError` that names what went wrong in one
sentence; nothing of httpx escapes. Tests pass an ``httpx.MockTransport``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from minitower_cli import __version__
from minitower_cli.errors import ConnectionFailed, RequestRefused, UsageError
from minitower_cli.sse import ServerEvent, parse_events
from minitower_shared.schemas import ErrorResponse

_Model = TypeVar("_Model", bound=BaseModel)
_Page = TypeVar("_Page", bound=BaseModel)
_Item = TypeVar("_Item")

# The API caps a page at 200 items.
MAX_PAGE = 200
# The log stream sends a keep-alive comment every 15 s; three missed ones mean it is dead.
STREAM_READ_TIMEOUT = 45.0


class ApiClient:
    def __init__(
        self,
        server_url: str,
        token: str | None,
        *,
        token_source: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server_url = server_url
        self.token = token
        self._token_source = token_source
        headers = {"User-Agent": f"minitower-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=server_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- calls ----------------------------------------------------------------------

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer of a successful call, unread (for calls whose body says nothing)."""
        with self._transport_errors():
            response = self._http.request(method, path, **kwargs)
        self._raise_for_error(response)
        return response

    def call(self, model: type[_Model], method: str, path: str, **kwargs: Any) -> _Model:
        """The answer of a successful call, read as the API's schema for it."""
        response = self.send(method, path, **kwargs)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            # Not the whole error: it quotes the input, which may hold a secret.
            problem = exc.errors(include_input=False, include_url=False)[0]
            if problem["type"] == "json_invalid":
                raise ConnectionFailed(
                    f"the server at {self.server_url} answered {method} {path} with something "
                    "that is not JSON: is --server the MiniTower API?"
                ) from None
            where = ".".join(str(part) for part in problem["loc"]) or "the body"
            raise ConnectionFailed(
                f"the server at {self.server_url} answered {method} {path} with something "
                f"that is not the API's {model.__name__} ({where}: {problem['msg']}): "
                "is --server the MiniTower API, of this CLI's version?"
            ) from None

    def get(self, model: type[_Model], path: str, **kwargs: Any) -> _Model:
        return self.call(model, "GET", path, **kwargs)

    def post(self, model: type[_Model], path: str, **kwargs: Any) -> _Model:
        return self.call(model, "POST", path, **kwargs)

    def patch(self, model: type[_Model], path: str, **kwargs: Any) -> _Model:
        return self.call(model, "PATCH", path, **kwargs)

    def delete(self, model: type[_Model], path: str, **kwargs: Any) -> _Model:
        return self.call(model, "DELETE", path, **kwargs)

    def exists(self, path: str) -> bool:
        """True on 200, False on 404; any other error is raised."""
        try:
            self.send("GET", path)
        except RequestRefused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_all(
        self,
        path: str,
        page: type[_Page],
        unpack: Callable[[_Page], tuple[list[_Item], str | None]],
        *,
        limit: int,
        params: dict[str, Any] | None = None,
    ) -> list[_Item]:
        """Up to ``limit`` items of a paginated listing, following ``next_cursor``;
        ``unpack`` gives a page's items and its cursor."""
        items: list[_Item] = []
        query = {k: v for k, v in (params or {}).items() if v is not None}
        while len(items) < limit:
            query["limit"] = min(MAX_PAGE, limit - len(items))
            found, cursor = unpack(self.get(page, path, params=query))
            items.extend(found)
            if not cursor or not found:
                break
            query["cursor"] = cursor
        return items[:limit]

    # --- the log stream --------------------------------------------------------------

    def stream_events(
        self, path: str, *, last_event_id: str | None, read_timeout: float = STREAM_READ_TIMEOUT
    ) -> Iterator[ServerEvent]:
        """The events of one connection to an SSE endpoint, resuming after
        ``last_event_id``. Ends when the server closes the stream; a lost connection or
        a silent one raises ConnectionFailed (the caller may reconnect)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=read_timeout)
        with (
            self._transport_errors(),
            self._http.stream("GET", path, headers=headers, timeout=timeout) as response,
        ):
            if response.status_code >= 400:
                response.read()
                self._raise_for_error(response)
            yield from parse_events(response.iter_lines())

    # --- errors ------------------------------------------------------------------------

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(
                f"the API at {self.server_url} did not answer in time ({_reason(exc)})"
            ) from exc
        except httpx.ConnectError as exc:
            raise ConnectionFailed(
                f"cannot reach the API at {self.server_url} ({_reason(exc)}): is it running? "
                "(set the server with --server, MINITOWER_SERVER_URL or `minitower login`)"
            ) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"lost the connection to the API at {self.server_url} ({_reason(exc)})"
            ) from exc
        except httpx.InvalidURL as exc:
            raise UsageError(f"invalid server URL {self.server_url!r}: {exc}") from exc

    def _raise_for_error(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        status = response.status_code
        code, message = _error_body(response)
        if code is None or message is None:
            raise RequestRefused(
                f"the server at {self.server_url} answered HTTP {status} "
                f"{response.reason_phrase} to {response.request.method} "
                f"{response.request.url.path}: is --server the MiniTower API?",
                status=status,
                code="http_error",
            )
        if status == 401:
            if self.token is None:
                hint = (
                    "no token given: run `minitower login --server URL --token TOKEN`, "
                    "or set MINITOWER_API_TOKEN"
                )
                message = f"the API wants a token: {message} ({hint})"
            else:
                source = self._token_source or "the configuration"
                message = f"the API refused the token (from {source}): {message}"
        raise RequestRefused(f"{message} ({status} {code})", status=status, code=code)


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        error = ErrorResponse.model_validate_json(response.content).error
    except ValidationError:
        return None, None
    return error.code, error.message


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if "Connection refused" in text:
        return "connection refused"
    return text or type(exc).__name__
