"""Where the request being handled came from, for the audit log (store/audit.py).

Kept apart from the log ids (log_context.py): the client's address is recorded with the
changes it made, not added to every log line. The API's request middleware binds it
(access.py); work outside a request (``minitowerd`` commands) sees None.
"""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "minitower_client_address", default=None
)


def current_client_address() -> str | None:
    return _client_address.get()


@contextmanager
def bound_client_address(address: str | None) -> Iterator[None]:
    token = _client_address.set(address)
    try:
        yield
    finally:
        _client_address.reset(token)
