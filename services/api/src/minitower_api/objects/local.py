"""The local object store (the default): artifacts on disk under MINITOWER_OBJECTS_DIR,
content-addressed by SHA-256. Backups and restores copy this layout as it is.

A spooled upload is renamed into place, so a reader never sees a half-written object and
a crash leaves only a temp file."""

import os
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import Session

from minitower_api.objects.spool import CHUNK, Spooled, full_is_store_full


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def commit(self, _session: Session, spooled: Spooled, key: str) -> bool:
        """Move a spooled file into place under ``key``; True if the object is new.

        An object that already exists (same content) is kept and the temp file dropped.
        A new fan-out directory needs a block of its own: StoreFull when there is none.
        The rename is not part of the transaction: a caller whose transaction fails
        removes a new object again."""
        final = self.path(key)
        if final.exists():
            spooled.path.unlink(missing_ok=True)
            return False
        with full_is_store_full(self.root):
            final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(spooled.path, 0o644)
        os.replace(spooled.path, final)
        return True

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def chunks(self, key: str) -> Iterator[bytes]:
        with self.path(key).open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    def delete(self, _session: Session, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
