"""The deterministic ``.tar.gz`` of a project: the same files give the same bytes.

Entries are sorted by name; owners, times and modes are fixed (0644, or 0755 for
executables and folders); the gzip header carries no name and no time. So the SHA-256
the API computes changes only when the app's content does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass

from minitower_cli.project import Entry, Project, ProjectError

# 1980-01-01, as reproducible-build tools use: some tools treat a zero time as missing.
FIXED_MTIME = 315_532_800
# zlib's default: level 9 is several times slower for a few per cent.
COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class Package:
    data: bytes
    sha256: str
    file_count: int
    unpacked_bytes: int


def build_package(project: Project) -> Package:
    buffer = io.BytesIO()
    file_count = 0
    unpacked = 0
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=COMPRESS_LEVEL
        ) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for entry in sorted(project.entries, key=lambda e: e.path):
            info = _header(entry)
            if entry.kind == "file":
                data = _read(project, entry)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                file_count += 1
                unpacked += len(data)
            else:
                archive.addfile(info)
                file_count += entry.kind == "symlink"
    data = buffer.getvalue()
    return Package(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        file_count=file_count,
        unpacked_bytes=unpacked,
    )


def _header(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif entry.kind == "symlink":
        assert entry.link_target is not None
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link_target
        info.mode = 0o777
    else:
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if entry.executable else 0o644
    return info


def _read(project: Project, entry: Entry) -> bytes:
    if entry.path == "Towerfile":
        # Exactly the text that was checked, even if the file changed since.
        return project.towerfile_text.encode("utf-8")
    try:
        return entry.source.read_bytes()
    except OSError as exc:
        raise ProjectError(f"cannot read {entry.path}: {exc.strerror}") from exc
