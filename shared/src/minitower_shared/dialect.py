"""The SQL that SQLite and PostgreSQL spell differently, in one place.

The store writes dialect-neutral SQLAlchemy; what cannot be neutral lives here, each
piece compiled per dialect, so the SQLite text stays exactly what it was (its partial
indexes are matched by the text of a query's WHERE clause) and PostgreSQL gets its own.
The engines and transactions themselves are in :mod:`minitower_shared.db`.

Kept importable by the migrations: what a revision uses from here must not change.
"""

from typing import Any

from sqlalchemy import BigInteger, Integer, Select, String, Table, false, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# SQLite's integers are 64-bit: ids, counts and sizes the API accepts up to 2**63 - 1.
# PostgreSQL's INTEGER is 32-bit, so every integer column is BIGINT (ids BIGSERIAL)
# there; SQLite keeps INTEGER (an INTEGER PRIMARY KEY is the rowid).
INT64 = BigInteger().with_variant(Integer(), "sqlite")


def partial_where(condition: str, *, postgresql_condition: str | None = None) -> dict[str, Any]:
    """The keyword arguments of a partial index over ``condition`` on both engines.

    SQLite keeps ``condition`` as written (a query uses the index only when it repeats
    it); PostgreSQL gets ``postgresql_condition`` where booleans are spelled differently
    (``delayed = 1`` is ``delayed`` there: a boolean never equals an integer)."""
    return {
        "sqlite_where": text(condition),
        "postgresql_where": text(postgresql_condition or condition),
    }


def upsert_insert(dialect_name: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` (the two
    dialects' constructs take the same arguments)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class utf8_length(FunctionElement[int]):
    """The length of a text in UTF-8 bytes."""

    type = Integer()
    inherit_cache = True
    name = "utf8_length"


@compiles(utf8_length, "sqlite")
def _utf8_length_sqlite(element: utf8_length, compiler: SQLCompiler, **kw: Any) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


@compiles(utf8_length, "postgresql")
def _utf8_length_postgresql(element: utf8_length, compiler: SQLCompiler, **kw: Any) -> str:
    return f"octet_length({compiler.process(element.clauses, **kw)})"


class random_hex(FunctionElement[str]):
    """56 random lowercase hex digits (28 bytes), drawn anew for each row."""

    type = String()
    inherit_cache = True
    name = "random_hex"


@compiles(random_hex, "sqlite")
def _random_hex_sqlite(_element: random_hex, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "lower(hex(randomblob(28)))"


@compiles(random_hex, "postgresql")
def _random_hex_postgresql(_element: random_hex, _compiler: SQLCompiler, **_kw: Any) -> str:
    # gen_random_uuid() (built in since PostgreSQL 13) draws from the server's CSPRNG.
    return "left(translate(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 56)"


def reset_sequence(table: Table) -> Select[tuple[int]] | None:
    """PostgreSQL: the statement that points the sequence of ``table``'s id at its
    highest id, so that the next row inserted without an id gets the one after it (rows
    copied with their ids leave the sequence where it was). None for a table without an
    id sequence. SQLite needs nothing: an INTEGER PRIMARY KEY continues from the largest
    rowid."""
    column = table.autoincrement_column
    if column is None:
        return None
    # setval(seq, n, false): the next nextval() returns n; an empty table starts at 1.
    return select(
        func.setval(
            func.pg_get_serial_sequence(table.name, column.name),
            func.coalesce(func.max(column), 0) + 1,
            false(),
        )
    ).select_from(table)
