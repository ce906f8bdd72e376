"""Schema migrations (Alembic), run once before the API and the reaper start."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

_SCRIPTS = Path(__file__).parent / "migrations"
# Where migrations/env.py finds the database: a SQLite path or a PostgreSQL URL. An
# attribute rather than a main option, which would read a URL's ``%`` as interpolation.
_DATABASE = "minitower.database"


def alembic_config(database: str | Path) -> Config:
    """``database``: the SQLite file, or a PostgreSQL URL (see ``db.create_db_engine``)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes[_DATABASE] = database
    return config


def database_of(config: Config) -> str | Path:
    database: str | Path = config.attributes.get(_DATABASE, "minitower.db")
    return database


def upgrade_to_head(database: str | Path) -> None:
    """Apply every pending migration; a no-op on an up-to-date database."""
    command.upgrade(alembic_config(database), "head")


def head_revision() -> str | None:
    return ScriptDirectory(str(_SCRIPTS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
