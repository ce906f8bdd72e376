"""Alembic environment: runs the migrations over the database file the caller names.

SQLite changes a table's shape by copying it (batch mode): a new table, the rows, then
DROP TABLE and a rename. With foreign keys enforced, dropping a table that other rows
reference fails, so a migration over a database with data would stop half-way. SQLite's
own procedure (lang_altertable.html, "other kinds of table schema changes") is followed
instead: foreign keys off for the migration (a PRAGMA that only takes effect outside a
transaction), then ``PRAGMA foreign_key_check`` before the commit, which refuses the
whole migration if it left a dangling reference."""

from alembic import context
from sqlmodel import SQLModel

from minitower_shared import models  # noqa: F401  (registers the tables on the metadata)
from minitower_shared.db import create_db_engine

config = context.config
engine = create_db_engine(config.get_main_option("minitower.db_path") or "minitower.db")
with engine.connect() as connection:
    # The driver connection is in autocommit mode (db.py issues BEGIN itself), so this
    # runs outside any transaction, as the PRAGMA requires.
    connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    context.configure(
        connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()
        dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if dangling:
            raise RuntimeError(f"the migration left dangling foreign keys: {dangling[:5]}")
engine.dispose()
