"""What the API's object store holds, whichever it is (tests/support/databases.py
chooses): the files under the objects folder and, with the PostgreSQL store, the
objects its tables keep."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlmodel import col

from minitower_api.objects import LocalObjectStore, ObjectStore, PostgresObjectStore
from minitower_api.settings import ApiSettings
from minitower_shared.db import create_db_engine, read_session
from minitower_shared.models import StoredObject

# How an object kept in the database is listed beside the folder's paths.
IN_DATABASE = "db:"


@contextmanager
def opened_store(settings: ApiSettings) -> Iterator[ObjectStore]:
    """The object store ``settings`` choose, as the API opens it."""
    if settings.object_store == "local":
        yield LocalObjectStore(settings.objects_dir)
        return
    engine = create_db_engine(settings.database, pool_size=1)
    try:
        yield PostgresObjectStore(engine)
    finally:
        engine.dispose()


def object_store_entries(settings: ApiSettings) -> list[str]:
    """Every path under the objects folder, relative to it, and every object the
    database keeps (``db:KEY``; none with the local store)."""
    folder = settings.objects_dir
    entries = [str(path.relative_to(folder)) for path in folder.rglob("*")]
    if settings.object_store == "postgres":
        engine = create_db_engine(settings.database, pool_size=1)
        try:
            with read_session(engine) as session:
                keys = session.execute(select(col(StoredObject.key))).scalars()
                entries += [IN_DATABASE + key for key in keys]
        finally:
            engine.dispose()
    return sorted(entries)


def stored_entries(settings: ApiSettings, key: str) -> list[str]:
    """What ``object_store_entries`` lists once the object ``key`` is stored, and nothing
    else: the file and its folders, or the database's row; and the empty ``tmp``."""
    if settings.object_store == "postgres":
        return sorted([IN_DATABASE + key, "tmp"])
    parts = key.split("/")
    return sorted(["/".join(parts[: n + 1]) for n in range(len(parts))] + ["tmp"])


def read_object(settings: ApiSettings, key: str) -> bytes:
    with opened_store(settings) as store:
        return b"".join(store.chunks(key))


def assert_object_store_empty(settings: ApiSettings) -> None:
    """Nothing but the empty ``tmp/`` folder the spool creates at start-up."""
    assert object_store_entries(settings) == ["tmp"]
    assert (settings.objects_dir / "tmp").is_dir()
