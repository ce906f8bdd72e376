"""Objects kept in the database (the API's PostgreSQL object store), and the lock that
orders every placing and removal of an object, whichever store keeps it.

An object is shared by every version with the same content. SQLite's write lock already
lets one writer at a time place or remove one; on PostgreSQL :func:`hold` takes the
object's own lock until the transaction ends, so a removal (prune, an upload's clean-up)
can never interleave with an upload that is about to reference the same object."""

from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel import Session, col

from minitower_shared.db import serialize
from minitower_shared.dialect import upsert_insert
from minitower_shared.models import AppVersion, ObjectChunk, StoredObject


def hold(session: Session, *keys: str) -> None:
    """Lock the objects ``keys`` until the transaction ends (nothing to do on SQLite)."""
    serialize(session, *(f"object:{key}" for key in keys))


def claim(session: Session, key: str, sha256: str, size: int, now: datetime) -> bool:
    """Insert the object's row unless it exists; True if this transaction inserted it
    (and so must write its chunks)."""
    table = StoredObject.__table__  # type: ignore[attr-defined]
    statement = (
        upsert_insert(session.get_bind().dialect.name, table)
        .values(key=key, sha256=sha256, size=size, created_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.key)
    )
    return session.execute(statement).first() is not None


def add_chunk(session: Session, key: str, seq: int, data: bytes) -> None:
    session.execute(ObjectChunk.__table__.insert().values(key=key, seq=seq, data=data))  # type: ignore[attr-defined]


def object_size(session: Session, key: str) -> int | None:
    """The object's size in bytes; None if there is no such object."""
    size = session.execute(
        select(col(StoredObject.size)).where(col(StoredObject.key) == key)
    ).scalar_one_or_none()
    return None if size is None else int(size)


def chunk(session: Session, key: str, seq: int) -> bytes | None:
    """The ``seq``-th piece of an object; None past its last."""
    data = session.execute(
        select(col(ObjectChunk.data)).where(
            col(ObjectChunk.key) == key, col(ObjectChunk.seq) == seq
        )
    ).scalar_one_or_none()
    return None if data is None else bytes(data)


def delete_object(session: Session, key: str) -> int | None:
    """Remove an object and its chunks; its size, or None if there was none."""
    size = object_size(session, key)
    if size is not None:
        session.execute(delete(ObjectChunk).where(col(ObjectChunk.key) == key))
        session.execute(delete(StoredObject).where(col(StoredObject.key) == key))
    return size


def unreferenced_objects(session: Session, created_before: datetime) -> list[tuple[str, int]]:
    """(key, size) of the stored objects no app version references, created before the
    given time, by key."""
    referenced = select(col(AppVersion.artifact_object_key))
    rows = session.execute(
        select(col(StoredObject.key), col(StoredObject.size))
        .where(
            col(StoredObject.created_at) < created_before,
            col(StoredObject.key).not_in(referenced),
        )
        .order_by(col(StoredObject.key))
    )
    return [(key, int(size)) for key, size in rows]
