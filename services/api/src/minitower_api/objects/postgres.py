"""The PostgreSQL object store (MINITOWER_OBJECT_STORE=postgres): artifacts in the
database, so API processes share them without sharing a volume.

Same content-addressed keys as the local store. An object is a ``stored_object`` row and
its ``object_chunk`` rows of at most ``CHUNK`` bytes, written from the spooled file one
chunk at a time inside the caller's transaction (the one that inserts the version row
referring to it): both commit together, or neither does. Reads fetch one chunk per
query, each in a short transaction of its own, so a slow download holds no connection
between chunks and neither direction ever holds the whole object in memory."""

import hashlib
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlmodel import Session

from minitower_api.objects.spool import CHUNK, Spooled
from minitower_shared.clock import utcnow
from minitower_shared.db import read_session
from minitower_shared.store import objects as store


class ChangedUpload(Exception):
    """The spooled file's bytes no longer hash to what was received: nothing is kept."""


class PostgresObjectStore:
    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(
                "MINITOWER_OBJECT_STORE=postgres needs the database on PostgreSQL "
                "(MINITOWER_DATABASE_URL)"
            )
        self._engine = engine

    def commit(self, session: Session, spooled: Spooled, key: str) -> bool:
        """Write a spooled file as the object ``key`` in ``session``'s transaction; True
        if the object is new. An object that already exists (same content) is kept and
        the temp file dropped. The caller holds the object's lock (store.objects.hold)."""
        if not store.claim(session, key, spooled.sha256, spooled.size, utcnow()):
            spooled.path.unlink(missing_ok=True)
            return False
        digest = hashlib.sha256()
        with spooled.path.open("rb") as source:
            seq = 0
            while data := source.read(CHUNK):
                digest.update(data)
                store.add_chunk(session, key, seq, data)
                seq += 1
        # Hashed again as it is stored: the key promises this content to every reader.
        if digest.hexdigest() != spooled.sha256:
            raise ChangedUpload(f"{spooled.path} changed after it was received")
        spooled.path.unlink(missing_ok=True)
        return True

    def size(self, key: str) -> int | None:
        with read_session(self._engine) as session:
            return store.object_size(session, key)

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes, one chunk per query. Raises LookupError when the chunks
        end before the object's size: the reader must not take a short object as whole."""
        size = self.size(key)
        if size is None:
            raise LookupError(f"no object {key}")
        sent = seq = 0
        while sent < size:
            with read_session(self._engine) as session:
                data = store.chunk(session, key, seq)
            if data is None:
                raise LookupError(f"object {key} ends at {sent} of {size} bytes")
            sent += len(data)
            seq += 1
            yield data

    def delete(self, session: Session, key: str) -> None:
        store.delete_object(session, key)
