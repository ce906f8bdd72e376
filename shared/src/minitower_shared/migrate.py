"""Schema migrations (Alembic), run once before the API and the reaper start."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

_SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(db_path: str | Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("minitower.db_path", str(db_path))
    return config


def upgrade_to_head(db_path: str | Path) -> None:
    """Apply every pending migration; a no-op on an up-to-date database."""
    command.upgrade(alembic_config(db_path), "head")


def head_revision() -> str | None:
    return ScriptDirectory(str(_SCRIPTS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
