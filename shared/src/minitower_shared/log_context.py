"""The ids every log record of a piece of work carries (``request_id``, ``run_id``, ...).

They live in a context variable, so each request (an asyncio task, and the worker thread
a sync route runs in) and each attempt sees only its own. A new thread starts with an
empty context: start threads that log with ``carry_context(target)``.
"""

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Read-only: a binding replaces the mapping, never changes it.
_ids: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "minitower_log_ids", default=MappingProxyType({})
)


def current_ids() -> Mapping[str, Any]:
    """The ids bound in this context, outermost first."""
    return _ids.get()


@contextmanager
def bound_ids(**ids: Any) -> Iterator[None]:
    """Every record logged inside the block carries ``ids`` (besides those already bound)."""
    token = _ids.set(MappingProxyType({**_ids.get(), **ids}))
    try:
        yield
    finally:
        _ids.reset(token)


def carry_context(target: Callable[_P, _T]) -> Callable[_P, _T]:
    """``target`` run in a copy of the caller's context: a thread's records keep the ids
    of the work that started it."""
    context = contextvars.copy_context()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        # A copy per call: one context cannot be entered by two threads at once.
        return context.copy().run(target, *args, **kwargs)

    return run
