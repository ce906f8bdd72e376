"""The runner's cache of verified artifacts: a version's archive is downloaded once.

A version is immutable and its grant names the archive's SHA-256, so an archive this
runner has already verified can stand in for the download, the one HTTP call of a warm
run that moves more than a few hundred bytes. Each use hashes the cached file again
(about a millisecond per megabyte): what is extracted is always what the grant announced,
whatever happened to the disk in between. Archives are kept per team, as venvs are, and
the cache is bounded in bytes, least recently used out first.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

from minitower_shared.digests import sha256_file

log = logging.getLogger("minitower.runner")


class ArtifactCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _path(self, team_id: int, sha256: str) -> Path:
        return self.root / str(team_id) / f"{sha256}.tar.gz"

    def find(self, team_id: int, sha256: str) -> Path | None:
        """The cached archive with this SHA-256, checked again; None when there is none."""
        if not self.enabled:
            return None
        path = self._path(team_id, sha256)
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            return None
        if actual != sha256:
            log.warning(
                "cached artifact changed on disk: downloading it again",
                extra={"path": str(path)},
            )
            path.unlink(missing_ok=True)
            return None
        os.utime(path)
        return path

    def keep(self, team_id: int, sha256: str, archive: Path) -> Path:
        """Move a verified ``archive`` into the cache; returns where it now is (``archive``
        itself when the cache is off or cannot take it)."""
        if not self.enabled or archive.stat().st_size > self.max_bytes:
            return archive
        dest = self._path(team_id, sha256)
        try:
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.root.chmod(0o700)
            try:
                os.replace(archive, dest)
            except OSError:
                # Another file system (a work root set apart): copy, then rename into
                # place, so a reader never sees half an archive.
                fd, partial = tempfile.mkstemp(dir=dest.parent, suffix=".partial")
                os.close(fd)
                shutil.copyfile(archive, partial)
                os.replace(partial, dest)
        except OSError as exc:
            log.warning("artifact not cached", extra={"error": str(exc)})
            return archive
        self._evict(keep=dest)
        return dest

    def _evict(self, keep: Path) -> None:
        entries = []
        for path in self.root.glob("*/*.tar.gz"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                return
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
