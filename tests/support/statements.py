"""The SQL an engine sends, captured as the store functions run it."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def captured(
    engine: Engine, kinds: tuple[str, ...] = ("SELECT", "UPDATE", "DELETE", "WITH")
) -> Iterator[list[tuple[str, Any]]]:
    """(SQL, parameters) of each statement of ``kinds`` (its first word) that ``engine``
    runs meanwhile: on PostgreSQL each is a round trip."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_args: Any) -> None:
        if sql.lstrip().upper().startswith(kinds):
            statements.append((sql, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
