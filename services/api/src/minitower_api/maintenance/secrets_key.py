"""MINITOWER_SECRETS_KEY at start and at rotation.

The API refuses to start when it could not serve the secrets it holds: secrets stored but
no key, or a key that does not decrypt them (one row is tried). ``minitowerd
rotate-secrets-key`` re-encrypts every row under the first key of the list, so the old
keys can then be dropped from the setting."""

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError

from minitower_api.maintenance import MaintenanceError, open_engine
from minitower_shared.db import create_db_engine, read_session, write_session
from minitower_shared.secret_box import SecretBox, SecretRef, UndecryptableSecret
from minitower_shared.store import secrets as secret_store


def startup_problem(
    database: str | Path, box: SecretBox | None, *, busy_timeout: float
) -> str | None:
    """Why the API must not start with this key, or None. A database without the table
    (not migrated yet) holds no secrets."""
    if isinstance(database, Path) and not database.exists():
        return None
    engine = create_db_engine(database, pool_size=1, busy_timeout=busy_timeout)
    try:
        with read_session(engine) as session:
            row = secret_store.any_secret(session)
    # No such table: OperationalError on SQLite, ProgrammingError on PostgreSQL.
    except (OperationalError, ProgrammingError):
        return None
    finally:
        engine.dispose()
    if row is None:
        return None
    if box is None:
        return (
            "the database holds secrets but MINITOWER_SECRETS_KEY is not set; set the key "
            "they were stored with"
        )
    try:
        box.decrypt(SecretRef(row.team_id, row.environment, row.name), row.ciphertext)
    except UndecryptableSecret:
        return (
            "does not decrypt the secrets in the database (a wrong key?); set the key they "
            "were stored with (a list keeps old keys readable: NEW,OLD)"
        )
    return None


@dataclass(frozen=True)
class Rotation:
    rotated: int
    current: int


def rotate(database: str | Path, box: SecretBox, *, busy_timeout: float) -> Rotation:
    """Every row under the first key; rows already under it are left alone (so running it
    again changes nothing). Fails, changing nothing, when a row does not decrypt."""
    engine = open_engine(database, busy_timeout=busy_timeout)
    rotated = current = 0
    try:
        with write_session(engine) as session:
            for row in secret_store.all_secrets(session):
                assert row.id is not None
                ref = SecretRef(row.team_id, row.environment, row.name)
                try:
                    box.decrypt(ref, row.ciphertext)
                except UndecryptableSecret as exc:
                    raise MaintenanceError(f"{exc}; nothing was changed") from None
                if box.is_current(row.ciphertext):
                    current += 1
                    continue
                secret_store.replace_ciphertext(
                    session, row.id, row.ciphertext, box.rotate(row.ciphertext)
                )
                rotated += 1
    finally:
        engine.dispose()
    return Rotation(rotated=rotated, current=current)


def summary(rotation: Rotation) -> list[str]:
    return [
        f"re-encrypted {rotation.rotated} secret(s) under the first key",
        f"{rotation.current} secret(s) were already under it",
    ]
