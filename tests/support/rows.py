"""Reading and editing a test's rows directly, the same way on SQLite and PostgreSQL.

For the tests that look under the API: what a row holds (a hash, not the secret), or a
row moved back in time (an old key, an old audit row). SQLAlchemy Core over an engine
built as the services build theirs (``create_db_engine``), with the columns typed by the
models' metadata: a datetime or a JSON column reads back as a ``datetime`` or a ``dict``
on both engines, and a value written is stored as the services store it."""

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, text
from sqlmodel import SQLModel

from minitower_shared import models  # noqa: F401 - registers the tables in the metadata
from minitower_shared.db import create_db_engine
from tests.support.databases import Database


def table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


class Rows:
    """One engine on ``database``; ``close`` it when done (the ``rows`` fixture does).

    ``where`` is an SQL condition with ``:name`` parameters, written the same on both
    engines (``action = :action``)."""

    def __init__(self, database: Database) -> None:
        self.engine = create_db_engine(database, pool_size=1)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Rows":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def select(
        self, table_name: str, where: str = "", order_by: str = "id", **params: Any
    ) -> list[dict[str, Any]]:
        """The rows of ``table_name`` (every column) that match ``where``, as dicts."""
        query = table(table_name).select()
        if where:
            query = query.where(text(where).bindparams(**params))
        query = query.order_by(text(order_by))
        with self.engine.begin() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def update(self, table_name: str, values: Mapping[str, Any], where: str, **params: Any) -> int:
        """Set ``values`` (typed by the table's columns) on the rows that match ``where``;
        returns how many rows changed."""
        statement = table(table_name).update().where(text(where).bindparams(**params))
        with self.engine.begin() as conn:
            return int(conn.execute(statement.values(**values)).rowcount)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """The rows of a statement both engines spell alike, as tuples (untyped: a
        datetime column reads back as SQLite's text); none for a statement without rows."""
        with self.engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    def execute(self, sql: str, **params: Any) -> int:
        """Any statement both engines spell alike; returns the rows it changed."""
        with self.engine.begin() as conn:
            return int(conn.execute(text(sql), params).rowcount)
