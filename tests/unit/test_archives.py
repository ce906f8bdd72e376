"""Safe inspection and extraction of app archives, built as real .tar.gz files."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minitower_shared.archives import (
    MAX_EXTENDED_HEADER_BYTES,
    MAX_EXTENDED_TOTAL_BYTES,
    ArchiveListing,
    UnsafeArchiveError,
    _check_parents,
    _Member,
    _open_tar,
    extract_archive,
    inspect_archive,
)
from minitower_shared.towerfile import MAX_TOWERFILE_BYTES
from tests.support import hostile

Member = tuple[tarfile.TarInfo, bytes | None]


def file(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def directory(name: str, mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def tar_bytes(*members: Member, tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


@pytest.fixture
def make_archive(tmp_path: Path) -> Callable[..., Path]:
    counter = 0

    def make(*members: Member, tar_format: int = tarfile.PAX_FORMAT) -> Path:
        nonlocal counter
        counter += 1
        path = tmp_path / f"archive{counter}.tar.gz"
        path.write_bytes(gzip.compress(tar_bytes(*members, tar_format=tar_format)))
        return path

    return make


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


def refused(path: Path, **limits: int) -> str:
    """Assert both entry points refuse the archive the same way; return the message."""
    with pytest.raises(UnsafeArchiveError) as inspected:
        inspect_archive(path, **limits)
    target = path.parent / f"{path.name}.out"
    target.mkdir()
    with pytest.raises(UnsafeArchiveError) as extracted:
        extract_archive(path, target, **limits)
    assert str(extracted.value) == str(inspected.value)
    assert list(target.iterdir()) == [], "nothing may be written for a refused archive"
    return str(inspected.value)


# --- accepted archives -----------------------------------------------------------------


def test_lists_regular_files_and_total_bytes(make_archive: Callable[..., Path]) -> None:
    path = make_archive(
        directory("pkg"),
        file("main.py", b"print('hi')\n"),
        file("pkg/__init__.py", b""),
        file("pkg/util.py", b"X = 1\n"),
    )
    assert inspect_archive(path) == ArchiveListing(
        files=frozenset({"main.py", "pkg/__init__.py", "pkg/util.py"}),
        towerfile_text=None,
        total_bytes=len(b"print('hi')\n") + len(b"X = 1\n"),
    )


def test_normalises_dot_slash_names_and_accepts_a_root_entry(
    make_archive: Callable[..., Path],
) -> None:
    path = make_archive(directory("."), directory("./src/"), file("./src//app.py", b"x"))
    assert inspect_archive(path).files == frozenset({"src/app.py"})


def test_an_empty_tar_is_accepted(make_archive: Callable[..., Path]) -> None:
    assert inspect_archive(make_archive()) == ArchiveListing(frozenset(), None, 0)


def test_reads_the_root_towerfile(make_archive: Callable[..., Path]) -> None:
    text = '[app]\nname = "café"\nscript = "main.py"\n'
    path = make_archive(file("./Towerfile", text.encode()), file("main.py"))
    listing = inspect_archive(path)
    assert listing.towerfile_text == text
    assert "Towerfile" in listing.files


def test_strips_a_byte_order_mark_from_the_towerfile(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("Towerfile", b"\xef\xbb\xbf[app]\n"))
    assert inspect_archive(path).towerfile_text == "[app]\n"


def test_ignores_a_towerfile_below_the_root(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("sub/Towerfile", b"\xff\xfe not text"))
    listing = inspect_archive(path)
    assert listing.towerfile_text is None
    assert listing.files == frozenset({"sub/Towerfile"})


def test_lists_safe_symlinks_and_hardlinks(make_archive: Callable[..., Path]) -> None:
    path = make_archive(
        file("lib/real.py", b"abc"),
        symlink("lib/alias.py", "real.py"),
        symlink("up.py", "lib/../lib/real.py"),
        symlink("here", "."),
        symlink("lib/root", ".."),
        symlink("chain", "lib/root/lib/alias.py"),
        symlink("dangling", "missing/file"),
        hardlink("copy.py", "./lib/real.py"),
    )
    assert inspect_archive(path).files == frozenset(
        {"lib/real.py", "lib/alias.py", "up.py", "here", "lib/root", "chain", "dangling", "copy.py"}
    )


def test_a_symlink_may_point_at_a_later_member(make_archive: Callable[..., Path]) -> None:
    path = make_archive(symlink("entry.py", "src/main.py"), file("src/main.py"))
    assert inspect_archive(path).files == frozenset({"entry.py", "src/main.py"})


def test_repeated_directory_entries_are_accepted(make_archive: Callable[..., Path]) -> None:
    path = make_archive(directory("d"), file("d/x"), directory("d/"))
    assert inspect_archive(path).files == frozenset({"d/x"})


def test_limits_are_inclusive(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("a", b"12345"), file("b", b"67890"))
    listing = inspect_archive(path, max_members=2, max_unpacked_bytes=10)
    assert listing.total_bytes == 10


# --- refused archives: container format ------------------------------------------------


def test_refuses_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.tar.gz"
    path.write_text("just some notes\n")
    assert refused(path) == "archive is not gzip-compressed (expected a .tar.gz)"


def test_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar.gz"
    path.write_bytes(b"")
    assert refused(path) == "archive is not gzip-compressed (expected a .tar.gz)"


def test_refuses_an_uncompressed_tar(tmp_path: Path) -> None:
    path = tmp_path / "plain.tar.gz"
    path.write_bytes(tar_bytes(file("main.py", b"x")))
    assert refused(path) == "archive is not gzip-compressed (expected a .tar.gz)"


@pytest.mark.parametrize(
    "payload",
    [b"hello\n", b"x" * 4096, b""],
    ids=["short-text", "long-text", "nothing"],
)
def test_refuses_gzip_that_is_not_a_tar(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "text.gz"
    path.write_bytes(gzip.compress(payload))
    assert refused(path).startswith("archive is not a gzip-compressed tar file (")


def test_refuses_a_truncated_gzip(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("main.py", os.urandom(50_000)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert refused(path).startswith("archive is truncated or corrupt (")


def test_refuses_a_gzip_missing_its_trailer(make_archive: Callable[..., Path]) -> None:
    # tarfile alone stops at the end-of-archive blocks and never notices the missing CRC.
    path = make_archive(file("main.py", b"print(1)\n"))
    path.write_bytes(path.read_bytes()[:-4])
    assert refused(path).startswith("archive is truncated or corrupt (")


def test_refuses_a_corrupt_crc(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("main.py", b"print(1)\n"))
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    message = refused(path)
    assert message.startswith("archive is truncated or corrupt (")
    assert "CRC" in message


def test_refuses_trailing_garbage(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("main.py", b"print(1)\n"))
    path.write_bytes(path.read_bytes() + b"garbage!")
    assert refused(path).startswith("archive is truncated or corrupt (")


def test_refuses_a_gzip_of_a_truncated_tar(tmp_path: Path) -> None:
    # The gzip layer is intact, so only the member's declared size reveals the cut.
    raw = tar_bytes(file("big.bin", os.urandom(5000)))
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(gzip.compress(raw[: 512 + 2000]))
    assert refused(path) == "archive is truncated: member 'big.bin' ends past the end of the data"


def test_refuses_a_decompression_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip.compress(tar_bytes(file("a", b"x")) + bytes(1 << 20)))
    limit = 1000 + 2 * 8 * 512 + tarfile.RECORDSIZE
    message = refused(path, max_members=1, max_unpacked_bytes=1000)
    assert message == f"archive decompresses to more than {limit} bytes"


# --- refused archives: limits ----------------------------------------------------------


def test_refuses_too_many_members(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("a"), file("b"), file("c"))
    assert refused(path, max_members=2) == "archive has more than 2 members"


def test_directories_count_as_members(make_archive: Callable[..., Path]) -> None:
    path = make_archive(directory("d"), directory("d/e"), file("d/e/f"))
    assert refused(path, max_members=2) == "archive has more than 2 members"


def test_refuses_too_many_unpacked_bytes(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("a", b"123456"), file("b", b"12345"))
    assert refused(path, max_unpacked_bytes=10) == "archive unpacks to more than 10 bytes"


# --- refused archives: member names ----------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/passwd", "//x", "/"])
def test_refuses_absolute_names(make_archive: Callable[..., Path], name: str) -> None:
    assert refused(make_archive(file(name))) == f"archive member {name!r} has an absolute path"


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/../b", "./..", "a/.."])
def test_refuses_dot_dot_components(make_archive: Callable[..., Path], name: str) -> None:
    assert refused(make_archive(file(name))) == f"archive member {name!r} escapes the archive root"


def test_refuses_dot_dot_in_a_directory_name(make_archive: Callable[..., Path]) -> None:
    path = make_archive(directory("../outside"))
    assert refused(path) == "archive member '../outside' escapes the archive root"


@pytest.mark.parametrize("name", [".", "./", "./."])
def test_refuses_a_file_named_like_the_root(make_archive: Callable[..., Path], name: str) -> None:
    assert refused(make_archive(file(name))) == f"archive member {name!r} names the archive root"


def test_refuses_names_that_are_not_utf8(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("bad\udcff.py"), tar_format=tarfile.GNU_FORMAT)
    assert refused(path) == "archive member 'bad\\udcff.py' has a name that is not UTF-8"


def test_refuses_duplicate_files(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("main.py", b"good"), file("./main.py", b"evil"))
    assert refused(path) == "archive member './main.py' appears more than once"


def test_refuses_a_file_that_replaces_a_directory(make_archive: Callable[..., Path]) -> None:
    path = make_archive(directory("pkg"), file("pkg"))
    assert refused(path) == "archive member 'pkg' appears more than once"


# --- refused archives: member types ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "description"),
    [
        (tarfile.CHRTYPE, "a character device"),
        (tarfile.BLKTYPE, "a block device"),
        (tarfile.FIFOTYPE, "a FIFO"),
    ],
)
def test_refuses_special_files(
    make_archive: Callable[..., Path], kind: bytes, description: str
) -> None:
    path = make_archive(file("main.py"), special("dev/thing", kind))
    assert refused(path) == f"archive member 'dev/thing' is {description}"


def test_refuses_unknown_member_types(make_archive: Callable[..., Path]) -> None:
    path = make_archive(special("odd", b"Z"))
    assert refused(path) == "archive member 'odd' has unsupported type b'Z'"


def test_refuses_sparse_files(make_archive: Callable[..., Path]) -> None:
    path = make_archive(special("holes.bin", tarfile.GNUTYPE_SPARSE), tar_format=tarfile.GNU_FORMAT)
    assert refused(path) == "archive member 'holes.bin' is a sparse file"


# --- refused archives: symlinks --------------------------------------------------------


def test_refuses_absolute_symlinks(make_archive: Callable[..., Path]) -> None:
    path = make_archive(symlink("passwd", "/etc/passwd"))
    assert (
        refused(path) == "archive member 'passwd' is a symlink to the absolute path '/etc/passwd'"
    )


def test_refuses_symlinks_without_a_target(make_archive: Callable[..., Path]) -> None:
    assert refused(make_archive(symlink("nothing", ""))) == (
        "archive member 'nothing' is a symlink with no target"
    )


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("up", ".."),
        ("up", "../x"),
        ("sub/up", "../.."),
        ("sub/up", "../../etc/passwd"),
        ("deep/er/up", "../x/../../.."),
        ("sneaky", "a/b/../../../x"),
        # Leaves the root and comes back: the kernel resolves it outside (root's parent).
        ("back", "../dest/main.py"),
    ],
)
def test_refuses_symlinks_leaving_the_root(
    make_archive: Callable[..., Path], name: str, target: str
) -> None:
    path = make_archive(symlink(name, target))
    assert refused(path) == (
        f"archive member {name!r} is a symlink that points outside the archive root ({target!r})"
    )


def test_refuses_symlinks_that_escape_through_another_symlink(
    make_archive: Callable[..., Path],
) -> None:
    # Lexically "here/.." is the root, but "here" is the root itself, so "here/.." is its parent.
    path = make_archive(symlink("here", "."), symlink("escape", "here/.."))
    assert refused(path) == (
        "archive member 'escape' is a symlink that points outside the archive root ('here/..')"
    )


def test_refuses_chains_that_escape_through_a_later_symlink(
    make_archive: Callable[..., Path],
) -> None:
    path = make_archive(symlink("a/link", "../b/up/x"), symlink("b/up", "../.."))
    assert "outside the archive root" in refused(path)


def test_refuses_symlink_loops(make_archive: Callable[..., Path]) -> None:
    path = make_archive(symlink("ping", "pong"), symlink("pong", "ping"))
    assert (
        refused(path) == "archive member 'ping' is a symlink that never resolves (a loop of links)"
    )


def test_refuses_members_stored_under_a_symlink(make_archive: Callable[..., Path]) -> None:
    path = make_archive(directory("real"), symlink("link", "real"), file("link/evil.py"))
    assert refused(path) == "archive member 'link/evil.py' is stored under the symlink 'link'"


def test_refuses_members_under_a_symlink_that_comes_later(
    make_archive: Callable[..., Path],
) -> None:
    path = make_archive(file("link/x.py"), symlink("link", "elsewhere"))
    assert refused(path) == "archive member 'link/x.py' is stored under the symlink 'link'"


def test_refuses_members_stored_under_a_file(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("notes"), file("notes/inner.py"))
    assert refused(path) == (
        "archive member 'notes/inner.py' is stored under 'notes', which is not a directory"
    )


# --- refused archives: hard links ------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "target"),
    [
        ([hardlink("link", "missing.py")], "missing.py"),
        ([hardlink("link", "later.py"), file("later.py")], "later.py"),
        ([file("a.py"), hardlink("link", "../a.py")], "../a.py"),
        ([file("etc/passwd"), hardlink("link", "/etc/passwd")], "/etc/passwd"),
        ([directory("d"), hardlink("link", "d")], "d"),
        ([file("a.py"), symlink("s", "a.py"), hardlink("link", "s")], "s"),
        ([file("a.py"), hardlink("h", "a.py"), hardlink("link", "h")], "h"),
        ([hardlink("link", "link")], "link"),
    ],
    ids=["missing", "later", "dot-dot", "absolute", "directory", "symlink", "hardlink", "self"],
)
def test_refuses_hard_links_not_to_an_earlier_regular_file(
    make_archive: Callable[..., Path], members: list[Member], target: str
) -> None:
    assert refused(make_archive(*members)) == (
        f"archive member 'link' is a hard link to {target!r}, "
        "which is not an earlier regular file in the archive"
    )


# --- refused archives: the Towerfile ---------------------------------------------------


def test_refuses_a_towerfile_that_is_not_utf8(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("Towerfile", "[app]\nname = 'é'\n".encode("latin-1")))
    assert refused(path) == "Towerfile is not UTF-8 text"


def test_refuses_a_towerfile_symlink(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("real.toml", b"[app]\n"), symlink("Towerfile", "real.toml"))
    assert refused(path) == "archive member 'Towerfile' must be a regular file"


def test_refuses_a_towerfile_directory(make_archive: Callable[..., Path]) -> None:
    path = make_archive(directory("./Towerfile"))
    assert refused(path) == "archive member './Towerfile' must be a regular file"


def test_refuses_a_huge_towerfile(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("Towerfile", b"#" * (MAX_TOWERFILE_BYTES + 1)))
    assert refused(path) == f"Towerfile is larger than {MAX_TOWERFILE_BYTES} bytes"


def test_a_towerfile_at_the_limit_is_read(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("Towerfile", b"#" * MAX_TOWERFILE_BYTES))
    assert inspect_archive(path).towerfile_text == "#" * MAX_TOWERFILE_BYTES


def test_the_towerfile_limit_is_the_callers(make_archive: Callable[..., Path]) -> None:
    path = make_archive(file("Towerfile", b"#" * 1025))
    assert refused(path, max_towerfile_bytes=1024) == "Towerfile is larger than 1024 bytes"


# --- extraction ------------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_extracts_files_and_directories(make_archive: Callable[..., Path], dest: Path) -> None:
    path = make_archive(
        directory("./"),
        file("./main.py", b"print('hi')\n"),
        file("pkg/sub/mod.py", b"X = 1\n"),
        directory("pkg"),
        file("Towerfile", b"[app]\n"),
    )
    extract_archive(path, dest)
    assert (dest / "main.py").read_bytes() == b"print('hi')\n"
    assert (dest / "pkg/sub/mod.py").read_bytes() == b"X = 1\n"
    assert (dest / "Towerfile").read_text() == "[app]\n"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "Towerfile",
        "main.py",
        "pkg",
        "pkg/sub",
        "pkg/sub/mod.py",
    ]


@pytest.mark.parametrize(
    ("archived", "expected"),
    [
        (0o644, 0o644),
        (0o755, 0o755),
        (0o000, 0o600),
        (0o400, 0o600),
        (0o777, 0o755),
        (0o4755, 0o755),
        (0o2711, 0o711),
    ],
)
def test_file_modes_are_tamed(
    make_archive: Callable[..., Path], dest: Path, archived: int, expected: int
) -> None:
    extract_archive(make_archive(file("f", b"x", mode=archived)), dest)
    assert mode_of(dest / "f") == expected


@pytest.mark.parametrize(
    ("archived", "expected"),
    [(0o755, 0o755), (0o000, 0o700), (0o555, 0o755), (0o777, 0o755), (0o1777, 0o755)],
)
def test_directory_modes_are_tamed(
    make_archive: Callable[..., Path], dest: Path, archived: int, expected: int
) -> None:
    extract_archive(make_archive(directory("d", mode=archived), file("d/f", b"x")), dest)
    assert mode_of(dest / "d") == expected
    assert (dest / "d/f").read_bytes() == b"x"


def test_modes_ignore_the_umask(make_archive: Callable[..., Path], dest: Path) -> None:
    path = make_archive(directory("d", mode=0o755), file("d/run.sh", b"#!/bin/sh\n", mode=0o755))
    previous = os.umask(0o077)
    try:
        extract_archive(path, dest)
    finally:
        os.umask(previous)
    assert mode_of(dest / "d") == 0o755
    assert mode_of(dest / "d/run.sh") == 0o755


def test_extracts_symlinks_as_links(make_archive: Callable[..., Path], dest: Path) -> None:
    path = make_archive(
        file("lib/real.py", b"abc"),
        symlink("lib/alias.py", "real.py"),
        symlink("entry.py", "./lib/../lib/alias.py"),
    )
    extract_archive(path, dest)
    assert (dest / "lib/alias.py").is_symlink()
    assert os.readlink(dest / "entry.py") == "./lib/../lib/alias.py"
    assert (dest / "entry.py").read_bytes() == b"abc"


def test_extracts_hard_links(make_archive: Callable[..., Path], dest: Path) -> None:
    path = make_archive(
        file("a/data.txt", b"shared", mode=0o640), hardlink("b/copy.txt", "a/data.txt")
    )
    extract_archive(path, dest)
    original, copy = dest / "a/data.txt", dest / "b/copy.txt"
    assert copy.read_bytes() == b"shared"
    assert not copy.is_symlink()
    assert os.path.samefile(original, copy)


def test_extracts_large_files_intact(make_archive: Callable[..., Path], dest: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    extract_archive(make_archive(file("blob.bin", data), file("after.txt", b"ok")), dest)
    assert (dest / "blob.bin").read_bytes() == data
    assert (dest / "after.txt").read_bytes() == b"ok"


def test_writes_nothing_when_a_later_member_is_unsafe(
    make_archive: Callable[..., Path], dest: Path
) -> None:
    path = make_archive(file("main.py", b"ok"), directory("pkg"), file("../evil.py", b"x"))
    with pytest.raises(UnsafeArchiveError, match="escapes the archive root"):
        extract_archive(path, dest)
    assert list(dest.iterdir()) == []
    assert not (dest.parent / "evil.py").exists()


def test_never_writes_through_a_symlink_already_in_dest(
    make_archive: Callable[..., Path], dest: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "pkg").symlink_to(outside)
    with pytest.raises(OSError):
        extract_archive(make_archive(file("pkg/evil.py", b"x")), dest)
    assert list(outside.iterdir()) == []


def test_never_replaces_an_existing_file_in_dest(
    make_archive: Callable[..., Path], dest: Path, tmp_path: Path
) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    (dest / "main.py").symlink_to(target)
    with pytest.raises(FileExistsError):
        extract_archive(make_archive(file("main.py", b"overwrite")), dest)
    assert target.read_text() == "keep"


def test_merges_into_existing_directories(make_archive: Callable[..., Path], dest: Path) -> None:
    (dest / "pkg").mkdir()
    (dest / "pkg/keep.txt").write_text("kept")
    extract_archive(make_archive(directory("pkg"), file("pkg/new.py", b"new")), dest)
    assert (dest / "pkg/keep.txt").read_text() == "kept"
    assert (dest / "pkg/new.py").read_bytes() == b"new"


def test_round_trips_a_tree_packed_by_tarfile(tmp_path: Path, dest: Path) -> None:
    source = tmp_path / "app"
    (source / "pkg").mkdir(parents=True)
    (source / "main.py").write_text("import pkg\n")
    (source / "pkg/__init__.py").write_text("")
    (source / "pkg/run.sh").write_text("#!/bin/sh\n")
    (source / "pkg/run.sh").chmod(0o755)
    (source / "latest.py").symlink_to("main.py")
    path = tmp_path / "app.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=".")

    listing = inspect_archive(path)
    extract_archive(path, dest)

    assert listing.files == {"main.py", "pkg/__init__.py", "pkg/run.sh", "latest.py"}
    assert (dest / "main.py").read_text() == "import pkg\n"
    assert mode_of(dest / "pkg/run.sh") == 0o755
    assert os.readlink(dest / "latest.py") == "main.py"


def test_dest_must_exist(make_archive: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        extract_archive(make_archive(file("main.py")), tmp_path / "missing")


# --- hostile tar headers (read while the gzip stream is checked) ----------------------


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME])
def test_refuses_an_extended_header_over_64_kib(tmp_path: Path, kind: bytes) -> None:
    path = hostile.header_bomb(tmp_path / "bomb.tar.gz", kind, MAX_EXTENDED_HEADER_BYTES + 1)
    assert refused(path) == (
        f"archive has an extended header (pax or GNU long name) of "
        f"{MAX_EXTENDED_HEADER_BYTES + 1} bytes, more than the limit of "
        f"{MAX_EXTENDED_HEADER_BYTES}"
    )


def test_refuses_a_300_mb_pax_header_without_reading_it(tmp_path: Path) -> None:
    """Refused after the first block: tarfile would hold the 300 MB in memory, and even
    decompressing it all would take the better part of a second."""
    path = hostile.header_bomb(tmp_path / "bomb.tar.gz", tarfile.XHDTYPE, 300 * hostile.MiB)
    started = time.monotonic()
    assert "more than the limit" in refused(path)
    assert time.monotonic() - started < 0.2


def test_the_tarfile_pass_refuses_an_oversized_header_too(tmp_path: Path) -> None:
    """Should the stream check ever lose track of the headers, tarfile's own pass still
    refuses before reading: an unchecked gzip stream goes straight to it here."""
    path = hostile.header_bomb(tmp_path / "bomb.tar.gz", tarfile.XHDTYPE, 1 << 20)
    with pytest.raises(UnsafeArchiveError, match="more than the limit"), _open_tar(path) as tar:
        tar.getmembers()


def test_refuses_a_pax_header_with_a_long_run_of_digits(make_archive: Callable[..., Path]) -> None:
    """tarfile searches pax headers for `hdrcharset` in time quadratic in a digit run."""
    info, data = file("main.py")
    info.pax_headers = {"comment": "1" * 60_000}
    started = time.monotonic()
    assert refused(make_archive((info, data))) == (
        "archive has a pax header with a number of over 64 digits"
    )
    assert time.monotonic() - started < 0.2


def test_refuses_a_malformed_pax_header(tmp_path: Path) -> None:
    record = b"99 path=main.py\n"  # says 99 bytes, has 16
    data = hostile.raw_header("pax", tarfile.XHDTYPE, len(record)) + record.ljust(512, b"\0")
    path = hostile.write_gzip(
        tmp_path / "a.tar.gz",
        iter([data, hostile.member("main.py", b""), b"\0" * tarfile.RECORDSIZE]),
    )
    assert refused(path) == "archive has a malformed pax header"


def test_refuses_a_chain_of_extended_headers(tmp_path: Path) -> None:
    """tarfile recurses once per header: 400 of them were a RecursionError."""
    record = b"16 path=main.py\n"
    pax = hostile.raw_header("pax", tarfile.XHDTYPE, len(record)) + record.ljust(512, b"\0")
    path = hostile.write_gzip(
        tmp_path / "a.tar.gz",
        iter([pax * 400, hostile.member("main.py", b""), b"\0" * tarfile.RECORDSIZE]),
    )
    assert refused(path) == "archive has a chain of repeated extended headers"


def test_a_pax_size_record_moves_the_next_header(make_archive: Callable[..., Path]) -> None:
    """tarfile takes a member's size from its pax header; so does the stream check, or it
    would read the wrong blocks as headers."""
    info, data = file("big.bin", b"x" * 3000)
    info.pax_headers = {"size": "3000"}
    path = make_archive((info, data), file("main.py", b"print(1)\n"))
    assert inspect_archive(path).files == frozenset({"big.bin", "main.py"})


def test_accepts_long_names_in_both_formats(make_archive: Callable[..., Path]) -> None:
    name = "/".join(["d" * 200] * 20) + "/main.py"  # 4,027 bytes
    for tar_format in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        listing = inspect_archive(make_archive(file(name), tar_format=tar_format))
        assert listing.files == frozenset({name})


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_refuses_a_member_name_over_4096_bytes(
    make_archive: Callable[..., Path], tar_format: int
) -> None:
    name = "/".join(["d" * 200] * 21)  # 4,220 bytes
    message = refused(make_archive(file(name), tar_format=tar_format))
    assert message.endswith("has a member name of 4220 bytes, more than 4096")


def test_refuses_a_name_component_over_255_bytes(make_archive: Callable[..., Path]) -> None:
    message = refused(make_archive(file("src/" + "n" * 256 + ".py")))
    assert message.endswith("has a member name with a component of more than 255 bytes")


def test_refuses_a_link_target_over_4096_bytes(make_archive: Callable[..., Path]) -> None:
    message = refused(make_archive(symlink("link", "/".join(["t"] * 2100))))
    assert message.endswith("has a link target of 4199 bytes, more than 4096")


def test_refuses_more_than_8_mib_of_extended_headers_in_all(
    make_archive: Callable[..., Path],
) -> None:
    """tarfile keeps every member's names and scans every pax header: 20,000 members with
    4 KB names took 26 s and 170 MiB before this cap."""
    members = []
    for i in range(140):  # 140 pax headers of 60 KB: over 8 MiB
        info, data = file(f"f{i}")
        info.pax_headers = {"comment": "x" * 60_000}
        members.append((info, data))
    archive = make_archive(*members)
    started = time.monotonic()
    assert refused(archive) == (
        f"archive has more than {MAX_EXTENDED_TOTAL_BYTES} bytes of extended headers "
        "(pax or GNU long names) in all"
    )
    assert time.monotonic() - started < 2  # both entry points
    assert inspect_archive(make_archive(*members[:130])).files == {f"f{i}" for i in range(130)}


def test_a_member_under_a_file_is_found_past_names_that_sort_between(
    make_archive: Callable[..., Path],
) -> None:
    """ "a-b" sorts between "a" and "a/c" as plain text; the check sorts by component."""
    path = make_archive(file("a"), file("a-b"), file("a.c"), file("a/c"))
    assert refused(path) == "archive member 'a/c' is stored under 'a', which is not a directory"
    path = make_archive(directory("d"), symlink("d/s", "."), file("d/s-x"), file("d/s/x/y"))
    assert refused(path) == "archive member 'd/s/x/y' is stored under the symlink 'd/s'"


def test_refuses_a_nul_in_a_name(make_archive: Callable[..., Path]) -> None:
    info, data = file("main.py")
    info.pax_headers = {"path": "a\0b"}
    assert refused(make_archive((info, data))) == "archive member 'a\\x00b' has a NUL in its name"


def test_checking_parents_is_linear_in_the_names() -> None:
    """20,000 names 60 components deep: 4 s when every parent path was joined and looked up."""
    names = [f"{i:05d}/" + "a/" * 60 + "f" for i in range(20_000)]
    kinds: dict[str, Any] = dict.fromkeys(names, "file")
    members = [_Member(name, tarfile.TarInfo(name)) for name in names]
    started = time.monotonic()
    _check_parents(members, kinds)
    assert time.monotonic() - started < 1


def test_symlinks_too_costly_to_resolve_are_refused(make_archive: Callable[..., Path]) -> None:
    """1,900 links to a 2,000-component path: 89 s of CPU for 36 KB of gzip before."""
    links = [symlink(f"l{i}", "d/" * 2000) for i in range(1900)]
    archive = make_archive(directory("d"), *links)
    started = time.monotonic()
    assert refused(archive) == (
        "archive has symlinks too complex to check (more than 300000 steps to resolve them all)"
    )
    assert time.monotonic() - started < 5  # both entry points, on a loaded machine
    # Fewer of them are fine.
    assert len(inspect_archive(make_archive(directory("d"), *links[:10])).files) == 10


def test_a_symlink_resolving_past_4096_bytes_is_refused(
    make_archive: Callable[..., Path],
) -> None:
    """Each target is short enough; followed one through the other, the path is not."""
    archive = make_archive(
        symlink("p", "q/" * 1000),  # 1,999 bytes once resolved
        symlink("r", "p/" + "/".join(["z" * 250] * 9)),  # and 2,259 more
    )
    assert refused(archive) == (
        "archive member 'r' is a symlink that resolves to a path of more than 4096 bytes"
    )
