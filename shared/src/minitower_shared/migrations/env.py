"""Alembic environment: runs the migrations over the database the caller names (a
SQLite file or a PostgreSQL URL, see ``migrate.alembic_config``).

SQLite changes a table's shape by copying it (batch mode): a new table, the rows, then
DROP TABLE and a rename. With foreign keys enforced, dropping a table that other rows
reference fails, so a migration over a database with data would stop half-way. SQLite's
own procedure (lang_altertable.html, "other kinds of table schema changes") is followed
instead: foreign keys off for the migration (a PRAGMA that only takes effect outside a
transaction), then ``PRAGMA foreign_key_check`` before the commit, which refuses the
whole migration if it left a dangling reference.

PostgreSQL alters tables in place (batch mode there is plain ALTER TABLE) inside one
transaction, under an advisory lock so that two ``migrate`` runs started together
apply each revision once."""

from alembic import context
from sqlalchemy import func, select
from sqlmodel import SQLModel

from minitower_shared import models  # noqa: F401  (registers the tables on the metadata)
from minitower_shared.db import create_db_engine
from minitower_shared.migrate import database_of

engine = create_db_engine(database_of(context.config), pool_size=1)
sqlite = engine.dialect.name == "sqlite"
with engine.connect() as connection:
    if sqlite:
        # The driver connection is in autocommit mode (db.py issues BEGIN itself), so
        # this runs outside any transaction, as the PRAGMA requires.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    context.configure(
        connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True
    )
    with context.begin_transaction():
        if not sqlite:
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext("migrate"))))
        context.run_migrations()
        if sqlite:
            dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise RuntimeError(f"the migration left dangling foreign keys: {dangling[:5]}")
engine.dispose()
