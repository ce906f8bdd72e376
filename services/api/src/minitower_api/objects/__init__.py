"""Where uploaded artifacts are kept: the object store MINITOWER_OBJECT_STORE chooses,
``local`` (files under MINITOWER_OBJECTS_DIR, the default) or ``postgres`` (rows of the
database). Both are content-addressed by SHA-256 under the same keys; uploads reach
either through the spool (spool.py)."""

from collections.abc import Iterator
from typing import Protocol

from sqlalchemy import Engine
from sqlmodel import Session

from minitower_api.objects.local import LocalObjectStore
from minitower_api.objects.postgres import PostgresObjectStore
from minitower_api.objects.spool import Spool, Spooled, StoreFull, TooLarge
from minitower_api.settings import ApiSettings

__all__ = [
    "LocalObjectStore",
    "ObjectStore",
    "PostgresObjectStore",
    "Spool",
    "Spooled",
    "StoreFull",
    "TooLarge",
    "artifact_key",
    "open_object_store",
]


class ObjectStore(Protocol):
    def commit(self, session: Session, spooled: Spooled, key: str) -> bool:
        """Keep a spooled upload as ``key`` while ``session``'s write transaction is
        open; True if the object is new (same key, same content: kept once)."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size; None when there is no such object."""
        ...

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes, a bounded chunk at a time."""
        ...

    def delete(self, session: Session, key: str) -> None:
        """Remove an object (no error if it is absent)."""
        ...


def artifact_key(sha256: str) -> str:
    return f"artifacts/sha256/{sha256[:2]}/{sha256}.tar.gz"


def open_object_store(settings: ApiSettings, engine: Engine) -> ObjectStore:
    if settings.object_store == "postgres":
        return PostgresObjectStore(engine)
    return LocalObjectStore(settings.objects_dir)
