"""Calling the JSON routes' functions from a page: their refusals become page errors."""

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from pydantic import ValidationError

from minitower_api.console.session import PageError
from minitower_api.errors import HttpProblem

P = ParamSpec("P")
R = TypeVar("R")


def api(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function``'s answer, or a PageError with the status and message the JSON API
    would have given."""
    try:
        return function(*args, **kwargs)
    except HttpProblem as exc:
        raise PageError(exc.status, exc.message) from exc


async def api_async(function: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    """``api`` for the routes' coroutine functions (the log stream)."""
    try:
        return await function(*args, **kwargs)
    except HttpProblem as exc:
        raise PageError(exc.status, exc.message) from exc


def validation_message(exc: ValidationError) -> str:
    """The message the JSON API gives for the same invalid body (errors.py)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid value')}"
