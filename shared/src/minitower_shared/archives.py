"""Vet and extract app archives (gzip-compressed tar files) without trusting their contents.

The API calls `inspect_archive` on every upload; the runner calls `extract_archive` into a
fresh workspace. Both run the same checks over every member before anything is written,
because Debian bookworm's Python 3.11.2 predates tarfile's extraction filters.

Refused with UnsafeArchiveError: data that is not a gzip-compressed tar, truncated or corrupt
data, absolute member names, `..` components, devices, FIFOs, symlinks that leave the archive
root (followed through every other symlink in the archive, as the kernel would), hard links
to anything but an earlier regular file, members stored under a symlink or a file, duplicate
names, and archives with too many members or too many unpacked bytes.

Refused before tarfile reads them, while the gzip stream is first decompressed: pax
extended headers and GNU long-name/long-link records over 64 KiB (tarfile would hold each
in memory whole), pax records that are malformed or hold numbers tarfile's own parser
scans in quadratic time, chains of extended headers (tarfile recurses once per header),
and member or link names over 4,096 bytes or with a component over 255 bytes.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from minitower_shared.towerfile import MAX_TOWERFILE_BYTES

__all__ = ["ArchiveListing", "UnsafeArchiveError", "extract_archive", "inspect_archive"]

_TOWERFILE_NAME = "Towerfile"

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20
# Linux's PATH_MAX and NAME_MAX: longer names could not be extracted anyway.
MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
# pax extended headers and GNU long-name records: a name or two and some metadata.
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
# ... and all of them in one archive: tarfile keeps every member's names in memory and
# scans each pax header more than once. A pax writer's mtime/atime/ctime records for
# 20,000 members come to about 3 MB.
MAX_EXTENDED_TOTAL_BYTES = 8 * 1024 * 1024
# Writers put at most a global header, a pax header and GNU long name and link records
# before a member; tarfile recurses once per header, so a long chain is a RecursionError.
_MAX_EXTENDED_CHAIN = 4
# tarfile's pax parser searches each header for `\d+ hdrcharset=` at every offset:
# quadratic in the length of a run of digits (64 KiB of them: 6 s of CPU).
_LONG_DIGIT_RUN = re.compile(rb"\d{65}")
_PAX_RECORD = re.compile(rb"(\d{1,20}) ([^=\n]+)=")
_EXTENDED_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_LOCAL_PAX_TYPES = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_LOW_BYTES = bytes(range(128))
_LONG_COMPONENT = re.compile(rb"[^/]{%d}" % (MAX_COMPONENT_BYTES + 1))
# Headers, long-name records and padding around each member; generous so that only
# archives that hide data outside their members' declared sizes hit the limit.
_FRAMING_BYTES_PER_MEMBER = 8 * tarfile.BLOCKSIZE
# Linux gives up after 40 symlinks in one lookup (MAXSYMLINKS); do the same.
_MAX_LINK_HOPS = 40
# Steps of resolving every symlink of an archive (20,000 links of 15 short components;
# a step more per 256 bytes of the path it builds): a few tenths of a second at most.
_MAX_LINK_STEPS = 300_000


class UnsafeArchiveError(ValueError):
    """The archive is malformed or could write outside its root; the message names why."""


@dataclass(frozen=True)
class ArchiveListing:
    files: frozenset[str]
    towerfile_text: str | None
    total_bytes: int


_Kind = Literal["file", "dir", "symlink", "hardlink"]


@dataclass(frozen=True)
class _Member:
    name: str
    info: tarfile.TarInfo


def inspect_archive(
    path: Path,
    *,
    max_members: int = 20_000,
    max_unpacked_bytes: int = 1 << 30,
    max_towerfile_bytes: int = MAX_TOWERFILE_BYTES,
) -> ArchiveListing:
    """Check every member of the .tar.gz at `path` and list what extraction would create."""
    stream_bytes = _check_gzip_stream(path, max_members, max_unpacked_bytes)
    with _open_tar(path) as tar, _corruption_refused():
        _, listing = _scan(tar, stream_bytes, max_members, max_unpacked_bytes, max_towerfile_bytes)
    return listing


def extract_archive(
    path: Path,
    dest: Path,
    *,
    max_members: int = 20_000,
    max_unpacked_bytes: int = 1 << 30,
    max_towerfile_bytes: int = MAX_TOWERFILE_BYTES,
) -> None:
    """Extract the .tar.gz at `path` into the existing directory `dest`.

    Nothing is written unless every member passes the checks of `inspect_archive`. Writing
    never follows a symlink and never replaces an existing entry (FileExistsError), so a
    non-empty `dest` cannot redirect files elsewhere either.
    """
    stream_bytes = _check_gzip_stream(path, max_members, max_unpacked_bytes)
    with _open_tar(path) as tar, _corruption_refused():
        members, _ = _scan(tar, stream_bytes, max_members, max_unpacked_bytes, max_towerfile_bytes)
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for member in members:
                _write_member(tar, root_fd, member)
        finally:
            os.close(root_fd)


def _check_gzip_stream(path: Path, max_members: int, max_unpacked_bytes: int) -> int:
    """Decompress the whole stream once, following its tar headers; return its size.

    tarfile stops reading at the end-of-archive marker and buffers extended headers in
    memory, so this pass is what detects a damaged gzip trailer, bounds decompression and
    refuses oversized or hostile extended headers before tarfile reads any of them.
    """
    limit = (
        max_unpacked_bytes
        + (max_members + 1) * _FRAMING_BYTES_PER_MEMBER
        + tarfile.RECORDSIZE  # writers pad the archive to a whole record
    )
    with path.open("rb") as raw:
        if raw.read(len(_GZIP_MAGIC)) != _GZIP_MAGIC:
            raise UnsafeArchiveError("archive is not gzip-compressed (expected a .tar.gz)")
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                reader = _CountingReader(stream, limit)
                _walk_headers(reader)
                reader.drain()
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise UnsafeArchiveError(f"archive is truncated or corrupt ({exc})") from exc
    return reader.total


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _CountingReader:
    """The decompressed stream, refused once it grows past `limit` bytes."""

    def __init__(self, stream: _Readable, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.total = 0

    def read(self, size: int) -> bytes:
        """Up to `size` bytes (fewer only at the end of the stream)."""
        parts = []
        wanted = size
        while wanted > 0:
            chunk = self._stream.read(min(wanted, _CHUNK_BYTES))
            if not chunk:
                break
            self._count(len(chunk))
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)

    def skip(self, size: int) -> None:
        while size > 0:
            chunk = self._stream.read(min(size, _CHUNK_BYTES))
            if not chunk:
                return
            self._count(len(chunk))
            size -= len(chunk)

    def drain(self) -> None:
        while chunk := self._stream.read(_CHUNK_BYTES):
            self._count(len(chunk))

    def _count(self, size: int) -> None:
        self.total += size
        if self.total > self._limit:
            raise UnsafeArchiveError(f"archive decompresses to more than {self._limit} bytes")


def _walk_headers(reader: _CountingReader) -> None:
    """Follow the member headers as tarfile will, checking each extended header's size
    and content before its data is read; stop where tarfile would see the end."""
    chain: list[bytes] = []
    extended_total = 0
    global_size: int | None = None
    pax_size: int | None = None
    while True:
        block = reader.read(tarfile.BLOCKSIZE)
        if len(block) < tarfile.BLOCKSIZE or block.count(0) == tarfile.BLOCKSIZE:
            return  # the end, or truncated: tarfile's own pass says which
        size = _header_number(block[124:136])
        if size is None or not _checksum_ok(block):
            return  # not a header: tarfile ends the archive here too
        if size < 0:
            raise UnsafeArchiveError("archive has a member with a negative size")
        kind = block[156:157]
        if kind in _EXTENDED_TYPES:
            if kind in chain or len(chain) >= _MAX_EXTENDED_CHAIN:
                raise UnsafeArchiveError("archive has a chain of repeated extended headers")
            chain.append(kind)
            if size > MAX_EXTENDED_HEADER_BYTES:
                raise UnsafeArchiveError(
                    f"archive has an extended header (pax or GNU long name) of {size} bytes, "
                    f"more than the limit of {MAX_EXTENDED_HEADER_BYTES}"
                )
            extended_total += size
            if extended_total > MAX_EXTENDED_TOTAL_BYTES:
                raise UnsafeArchiveError(
                    f"archive has more than {MAX_EXTENDED_TOTAL_BYTES} bytes of extended "
                    "headers (pax or GNU long names) in all"
                )
            data = reader.read(_blocks(size))[:size]
            if kind in (*_LOCAL_PAX_TYPES, tarfile.XGLTYPE):
                records = _pax_records(data)
                # Mirror tarfile: a local header's records (over the global ones) may
                # replace the member's size, and with it where the next header starts.
                if kind == tarfile.XGLTYPE:
                    global_size = _pax_size(records, global_size)
                else:
                    pax_size = _pax_size(records, global_size)
            continue
        if kind == tarfile.GNUTYPE_SPARSE:
            # Followed by extension blocks of its own; tarfile's pass refuses the member
            # by name, and _BoundedTarInfo still guards it from extended headers.
            return
        data_size = size if pax_size is None else pax_size
        is_dir = kind == tarfile.AREGTYPE and block[:100].rstrip(b"\0").endswith(b"/")
        regular = kind in tarfile.REGULAR_TYPES and not is_dir
        if regular or kind not in tarfile.SUPPORTED_TYPES:
            reader.skip(_blocks(data_size))
        chain, pax_size = [], None


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _header_number(field: bytes) -> int | None:
    """A numeric header field as tarfile reads it: octal text, or base-256 binary."""
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value if field[0] == 0o200 else value - 256 ** (len(field) - 1)
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None


def _checksum_ok(block: bytes) -> bool:
    """The header's checksum matches, summed with its own field as spaces over unsigned
    bytes or (old writers) signed ones, as tarfile accepts."""
    expected = _header_number(block[148:156])
    unsigned = 256 + sum(block) - sum(block[148:156])
    if expected == unsigned:
        return True
    rest = block[:148] + block[156:]
    high_bytes = len(rest.translate(None, _LOW_BYTES))
    return expected == unsigned - 256 * high_bytes


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """The records of a pax header, which must be exactly a sequence of well-formed ones
    (tarfile would skip or misread the rest)."""
    if _LONG_DIGIT_RUN.search(data):
        raise UnsafeArchiveError("archive has a pax header with a number of over 64 digits")
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        match = _PAX_RECORD.match(data, pos)
        end = pos + int(match.group(1)) if match else 0
        if match is None or end > len(data) or end <= match.end() or data[end - 1] != 0x0A:
            if data[pos:].strip(b"\0") == b"":
                break  # padding
            raise UnsafeArchiveError("archive has a malformed pax header")
        records[match.group(2)] = data[match.end() : end - 1]
        pos = end
    return records


def _pax_size(records: dict[bytes, bytes], default: int | None) -> int | None:
    if b"size" not in records:
        return default
    try:
        return int(records[b"size"])
    except ValueError:
        return 0  # what tarfile makes of it


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses an oversized extended header before tarfile reads it into memory, should
    an archive ever get one past the streaming check (_walk_headers)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > MAX_EXTENDED_HEADER_BYTES:
            raise UnsafeArchiveError(
                f"archive has an extended header (pax or GNU long name) of {self.size} "
                f"bytes, more than the limit of {MAX_EXTENDED_HEADER_BYTES}"
            )
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:gz", encoding="utf-8", tarinfo=_BoundedTarInfo)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"archive is not a gzip-compressed tar file ({exc})") from exc


@contextmanager
def _corruption_refused() -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchiveError(f"archive is truncated or corrupt ({exc})") from exc
    except RecursionError:
        # tarfile recurses once per extended header; _walk_headers refuses long chains.
        raise UnsafeArchiveError("archive has too many extended headers in a row") from None


def _scan(
    tar: tarfile.TarFile,
    stream_bytes: int,
    max_members: int,
    max_unpacked_bytes: int,
    max_towerfile_bytes: int,
) -> tuple[list[_Member], ArchiveListing]:
    members: list[_Member] = []
    kinds: dict[str, _Kind] = {}
    symlinks: dict[str, str] = {}
    towerfile_text: str | None = None
    total_bytes = 0
    count = 0
    for info in tar:
        count += 1
        if count > max_members:
            raise UnsafeArchiveError(f"archive has more than {max_members} members")
        total_bytes += info.size
        if total_bytes > max_unpacked_bytes:
            raise UnsafeArchiveError(f"archive unpacks to more than {max_unpacked_bytes} bytes")

        name = _member_name(info)
        kind = _member_kind(info)
        if not name:
            if kind != "dir":
                raise UnsafeArchiveError(f"archive member {info.name!r} names the archive root")
            continue
        previous = kinds.get(name)
        if previous is not None and not (previous == kind == "dir"):
            raise UnsafeArchiveError(f"archive member {info.name!r} appears more than once")
        kinds[name] = kind

        if kind == "file":
            if info.offset_data + info.size > stream_bytes:
                raise UnsafeArchiveError(
                    f"archive is truncated: member {info.name!r} ends past the end of the data"
                )
            if name == _TOWERFILE_NAME:
                towerfile_text = _read_towerfile(tar, info, max_towerfile_bytes)
        elif kind == "symlink":
            symlinks[name] = info.linkname
        elif kind == "hardlink" and not _names_regular_file(info.linkname, kinds):
            raise UnsafeArchiveError(
                f"archive member {info.name!r} is a hard link to {info.linkname!r}, "
                "which is not an earlier regular file in the archive"
            )
        if name == _TOWERFILE_NAME and kind != "file":
            raise UnsafeArchiveError(f"archive member {info.name!r} must be a regular file")
        members.append(_Member(name, info))

    _check_parents(members, kinds)
    budget = _StepBudget(_MAX_LINK_STEPS)
    for member in members:
        if member.name in symlinks:
            _check_symlink_target(member, symlinks, budget)

    files = frozenset(name for name, kind in kinds.items() if kind != "dir")
    return members, ArchiveListing(files, towerfile_text, total_bytes)


def _member_name(info: tarfile.TarInfo) -> str:
    """Return the member's name without "./", "." or empty components."""
    try:
        info.name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeArchiveError(
            f"archive member {info.name!r} has a name that is not UTF-8"
        ) from None
    if info.name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {info.name!r} has an absolute path")
    if "\0" in info.name:
        # No file name can hold one (and _check_parents sorts "/" as one).
        raise UnsafeArchiveError(f"archive member {info.name!r} has a NUL in its name")
    _check_name_length(info.name, "member name")
    if info.linkname:
        _check_name_length(info.linkname, "link target")
    parts = _components(info.name)
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {info.name!r} escapes the archive root")
    return "/".join(parts)


def _check_name_length(name: str, what: str) -> None:
    encoded = name.encode("utf-8", errors="surrogateescape")
    shown = name[:60] + ("..." if len(name) > 60 else "")
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafeArchiveError(
            f"archive member {shown!r} has a {what} of {len(encoded)} bytes, "
            f"more than {MAX_NAME_BYTES}"
        )
    if _LONG_COMPONENT.search(encoded):
        raise UnsafeArchiveError(
            f"archive member {shown!r} has a {what} with a component of more than "
            f"{MAX_COMPONENT_BYTES} bytes"
        )


def _components(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def _member_kind(info: tarfile.TarInfo) -> _Kind:
    if info.issparse():
        raise UnsafeArchiveError(f"archive member {info.name!r} is a sparse file")
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        if not info.linkname:
            raise UnsafeArchiveError(f"archive member {info.name!r} is a symlink with no target")
        if info.linkname.startswith("/"):
            raise UnsafeArchiveError(
                f"archive member {info.name!r} is a symlink to the absolute path {info.linkname!r}"
            )
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr():
        raise UnsafeArchiveError(f"archive member {info.name!r} is a character device")
    if info.isblk():
        raise UnsafeArchiveError(f"archive member {info.name!r} is a block device")
    if info.isfifo():
        raise UnsafeArchiveError(f"archive member {info.name!r} is a FIFO")
    raise UnsafeArchiveError(f"archive member {info.name!r} has unsupported type {info.type!r}")


def _names_regular_file(linkname: str, kinds: Mapping[str, _Kind]) -> bool:
    # Hard link targets are member names, so an absolute one must not match a relative member.
    if linkname.startswith("/"):
        return False
    return kinds.get("/".join(_components(linkname))) == "file"


def _read_towerfile(tar: tarfile.TarFile, info: tarfile.TarInfo, max_bytes: int) -> str:
    if info.size > max_bytes:
        raise UnsafeArchiveError(f"Towerfile is larger than {max_bytes} bytes")
    data = tar.extractfile(info)
    assert data is not None, "extractfile returns None only for non-regular members"
    try:
        # utf-8-sig: editors on Windows prepend a byte order mark that TOML would reject.
        return data.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsafeArchiveError("Towerfile is not UTF-8 text") from None


def _check_parents(members: Sequence[_Member], kinds: Mapping[str, _Kind]) -> None:
    """Refuse members stored under a symlink or a file: writing them would follow the link.

    One pass over the names sorted component by component (a "/" sorts as NUL, which no
    name holds): the names below any name then follow it directly, so a stack of the
    enclosing non-directories finds every member below one. Checking each parent path of
    each name instead was quadratic in the depth (20,000 names 60 deep: 4 s).
    """
    under: dict[str, str] = {}  # member name -> the shallowest non-directory above it
    enclosing: list[str] = []  # sort keys of the non-directories the sweep is inside
    for name in sorted(kinds, key=_sort_key):
        key = _sort_key(name)
        while enclosing and not _is_below(key, enclosing[-1]):
            enclosing.pop()
        if enclosing:
            under[name] = enclosing[0].replace("\0", "/")
        if kinds[name] != "dir":
            enclosing.append(key)
    if not under:
        return
    member = next(member for member in members if member.name in under)
    parent = under[member.name]
    if kinds[parent] == "symlink":
        raise UnsafeArchiveError(
            f"archive member {member.info.name!r} is stored under the symlink {parent!r}"
        )
    raise UnsafeArchiveError(
        f"archive member {member.info.name!r} is stored under {parent!r}, which is not a directory"
    )


def _sort_key(name: str) -> str:
    return name.replace("/", "\0")


def _is_below(key: str, ancestor: str) -> bool:
    return key.startswith(ancestor) and key[len(ancestor) : len(ancestor) + 1] == "\0"


class _StepBudget:
    """The steps all of an archive's symlink resolutions may take together: each is
    cheap, but hostile links (thousands of them, deep, through chains of other links)
    could otherwise take minutes."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise UnsafeArchiveError(
                f"archive has symlinks too complex to check (more than {_MAX_LINK_STEPS} "
                "steps to resolve them all)"
            )


def _check_symlink_target(
    member: _Member, symlinks: Mapping[str, str], budget: _StepBudget
) -> None:
    """Resolve the link inside the archive, following the archive's other symlinks.

    Purely lexical resolution is not enough: with `s -> .`, the target `s/..` looks like the
    root but is its parent once `s` is followed.
    """
    # paths[-1] is the path resolved so far, one entry per component (".." pops one).
    paths: list[str] = []
    pending = list(reversed([*member.name.split("/")[:-1], *symlinks[member.name].split("/")]))
    hops = 0
    while pending:
        budget.spend()
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not paths:
                raise UnsafeArchiveError(
                    f"archive member {member.info.name!r} is a symlink that points outside "
                    f"the archive root ({member.info.linkname!r})"
                )
            paths.pop()
            continue
        path = f"{paths[-1]}/{part}" if paths else part
        # Building and hashing a long path costs more than a step: a step per 256 bytes.
        budget.spend(len(path) // 256)
        if len(path) > MAX_NAME_BYTES:
            raise UnsafeArchiveError(
                f"archive member {member.info.name!r} is a symlink that resolves to a path "
                f"of more than {MAX_NAME_BYTES} bytes"
            )
        target = symlinks.get(path)
        if target is None:
            paths.append(path)
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            raise UnsafeArchiveError(
                f"archive member {member.info.name!r} is a symlink that never resolves "
                "(a loop of links)"
            )
        pending.extend(reversed(target.split("/")))


def _write_member(tar: tarfile.TarFile, root_fd: int, member: _Member) -> None:
    *parents, base = member.name.split("/")
    parent_fd = _open_dirs(root_fd, parents)
    try:
        info = member.info
        if info.isdir():
            _make_dir(parent_fd, base, 0o700 | (info.mode & 0o755))
        elif info.issym():
            os.symlink(info.linkname, base, dir_fd=parent_fd)
        elif info.islnk():
            *target_parents, target_base = _components(info.linkname)
            target_fd = _open_dirs(root_fd, target_parents)
            try:
                os.link(
                    target_base,
                    base,
                    src_dir_fd=target_fd,
                    dst_dir_fd=parent_fd,
                    follow_symlinks=False,
                )
            finally:
                os.close(target_fd)
        else:
            _write_file(tar, info, parent_fd, base)
    finally:
        os.close(parent_fd)


def _open_dirs(root_fd: int, parts: Sequence[str]) -> int:
    """Open (creating as needed) the directory `parts` below root without following symlinks."""
    fd = os.dup(root_fd)
    for part in parts:
        with suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _make_dir(parent_fd: int, name: str, mode: int) -> None:
    with suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=parent_fd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        # mkdir's mode is masked by the umask; the archive's mode (owner always rwx) wins.
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _write_file(tar: tarfile.TarFile, info: tarfile.TarInfo, parent_fd: int, name: str) -> None:
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=parent_fd,
    )
    with os.fdopen(fd, "wb") as out:
        data = tar.extractfile(info)
        assert data is not None, "extractfile returns None only for non-regular members"
        shutil.copyfileobj(data, out, _CHUNK_BYTES)
        os.fchmod(out.fileno(), (info.mode & 0o755) | 0o600)
