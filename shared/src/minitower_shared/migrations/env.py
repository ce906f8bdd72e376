"""Alembic environment: runs migrations over the engine the caller passes in."""

from alembic import context
from sqlmodel import SQLModel

from minitower_shared import models  # noqa: F401  (registers the tables on the metadata)
from minitower_shared.db import create_db_engine

config = context.config
connectable = config.attributes.get("connection")

if connectable is None:
    engine = create_db_engine(config.get_main_option("minitower.db_path") or "minitower.db")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
else:
    context.configure(
        connection=connectable, target_metadata=SQLModel.metadata, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()
