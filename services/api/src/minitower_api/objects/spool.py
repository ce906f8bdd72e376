"""The upload spool: where an upload is received, hashed and checked before any object
store keeps it, whichever store that is (``MINITOWER_OBJECTS_DIR``/tmp).

An upload is written to a temporary file there, hashing as it goes and bounded by the
size limit; the archive is inspected in place; then the store takes it (a rename into
the local store, or chunk by chunk into the database). A crash leaves only a temp file,
swept at the next start-up and by ``minitowerd prune``.
"""

import errno
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
# A temporary file this old belongs to no upload still being received: one that died
# with its process (a crash, a kill) left it. `minitowerd prune` uses the same age.
STALE_TEMP_SECONDS = 3600
# "No space left on device" and "disk quota exceeded": both mean the volume is full for
# this process, and both pass once an operator frees space (deploy/runbooks/disk-full.md).
_FULL = {errno.ENOSPC, errno.EDQUOT}

log = logging.getLogger("minitower.api")


class TooLarge(Exception):
    """The stream was longer than the limit; nothing was kept."""


class StoreFull(Exception):
    """The objects volume has no space left; nothing was kept."""

    def __init__(self, root: Path) -> None:
        super().__init__(f"no space left in the object store ({root})")
        self.root = root


@contextmanager
def full_is_store_full(root: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        log.error(
            "object store full: uploads are refused with 507 until space is freed",
            extra={"objects_dir": str(root), "error": exc.strerror},
        )
        raise StoreFull(root) from exc


@dataclass(frozen=True)
class Spooled:
    """An upload received in full: its temporary file, SHA-256 (hex) and size."""

    path: Path
    sha256: str
    size: int


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "tmp"
        self.folder.mkdir(parents=True, exist_ok=True)

    def receive(self, source: BinaryIO, *, max_bytes: int) -> Spooled:
        """Copy ``source`` into a temporary file, hashing as it goes.

        Raises TooLarge past ``max_bytes`` and StoreFull when the volume fills up (the
        partial file is removed either way)."""
        digest = hashlib.sha256()
        size = 0
        with full_is_store_full(self.root):
            fd, name = tempfile.mkstemp(dir=self.folder, suffix=".part")
            path = Path(name)
            try:
                # The close flushes the last buffered chunk: ENOSPC may surface there too.
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise TooLarge
                        digest.update(chunk)
                        out.write(chunk)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return Spooled(path, digest.hexdigest(), size)

    def sweep(self, *, older_than: float = STALE_TEMP_SECONDS) -> list[tuple[str, int]]:
        """Remove temporary files last modified more than `older_than` seconds ago;
        return their names and sizes."""
        oldest = time.time() - older_than
        removed = []
        for path in sorted(self.folder.iterdir()):
            try:
                stat = path.lstat()
                if not path.is_file() or path.is_symlink() or stat.st_mtime >= oldest:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # gone meanwhile
            removed.append((path.name, stat.st_size))
        return removed
