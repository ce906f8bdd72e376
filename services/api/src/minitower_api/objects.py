"""The local object store: artifacts on disk, content-addressed by SHA-256.

Files are written to a temporary name in the same directory tree and renamed into
place, so a reader never sees a half-written object and a crash leaves only a temp file.
"""

import errno
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1024 * 1024
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
def _full_is_store_full(root: Path) -> Iterator[None]:
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


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def artifact_key(sha256: str) -> str:
        return f"artifacts/sha256/{sha256[:2]}/{sha256}.tar.gz"

    def path(self, key: str) -> Path:
        return self.root / key

    def spool(self, source: BinaryIO, *, max_bytes: int) -> tuple[Path, str, int]:
        """Copy ``source`` into a temporary file, hashing as it goes.

        Returns (temporary path, sha256 hex, size); raises TooLarge past ``max_bytes``
        and StoreFull when the volume fills up (the partial file is removed either way)."""
        digest = hashlib.sha256()
        size = 0
        with _full_is_store_full(self.root):
            fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
            path = Path(name)
            try:
                # The close flushes the last buffered chunk: ENOSPC may surface there too.
                with os.fdopen(fd, "wb") as out:
                    while chunk := source.read(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise TooLarge
                        digest.update(chunk)
                        out.write(chunk)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return path, digest.hexdigest(), size

    def commit(self, temp: Path, key: str) -> bool:
        """Move a spooled file into place under ``key``; True if the object is new.

        An object that already exists (same content) is kept and the temp file dropped.
        A new fan-out directory needs a block of its own: StoreFull when there is none."""
        final = self.path(key)
        if final.exists():
            temp.unlink(missing_ok=True)
            return False
        with _full_is_store_full(self.root):
            final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(temp, 0o644)
        os.replace(temp, final)
        return True

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def sweep_temp(self, *, older_than: float = STALE_TEMP_SECONDS) -> list[tuple[str, int]]:
        """Remove temporary files last modified more than `older_than` seconds ago;
        return their names and sizes."""
        oldest = time.time() - older_than
        removed = []
        for path in sorted(self._tmp.iterdir()):
            try:
                stat = path.lstat()
                if not path.is_file() or path.is_symlink() or stat.st_mtime >= oldest:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # gone meanwhile
            removed.append((path.name, stat.st_size))
        return removed
