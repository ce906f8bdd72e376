"""An app's folder as ``minitower deploy`` sees it: its Towerfile and the files it names.

Which files are packaged (``[app].source``, default ``["**"]``):

- patterns are relative to the folder; ``*``, ``?`` and ``[...]`` match within one path
  segment, ``**`` matches any number of segments, a trailing ``/`` matches folders only;
- a matched folder brings everything below it;
- names starting with a dot are left out unless a pattern segment itself starts with a
  dot (``.env``, ``.config/**``, ``.*``): ``*``, ``**`` and folder contents skip them;
- Python's byte-code caches (``__pycache__/``) are never packaged: they differ from
  machine to machine and would change the archive's hash;
- symbolic links are kept as links when they point inside the folder, and refused when
  they point outside it (or nowhere);
- the Towerfile is always packaged, at the root.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from minitower_shared.towerfile import Towerfile, TowerfileError, parse_towerfile

TOWERFILE = "Towerfile"
REQUIREMENTS = "requirements.txt"
# The API's limits (docs/api-v1.md), checked here so a mistake is named with its key.
MAX_DESCRIPTION = 2000
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
# The API's slug pattern (minitower_shared.schemas.SLUG_PATTERN, which brings pydantic).
SLUG_PATTERN = r"^[a-z][a-z0-9-]{2,31}$"
_SKIPPED_FOLDERS = frozenset({"__pycache__"})
_SCRIPT_SUFFIXES = (".py", ".sh")

EntryKind = Literal["file", "dir", "symlink"]


class ProjectError(ValueError):
    """The folder, its Towerfile or its files cannot be deployed; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One member of the package: ``path`` is relative, with ``/`` separators."""

    path: str
    kind: EntryKind
    source: Path
    executable: bool = False
    link_target: str | None = None


@dataclass(frozen=True)
class Project:
    root: Path
    towerfile: Towerfile
    towerfile_text: str
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]

    @property
    def app_slug(self) -> str:
        return self.towerfile.name

    @property
    def files(self) -> list[str]:
        return [entry.path for entry in self.entries if entry.kind != "dir"]


def load_project(directory: Path) -> Project:
    """Read and check ``directory``'s Towerfile and select its files; raise ProjectError."""
    if not directory.exists():
        raise ProjectError(f"{directory}: no such folder")
    if not directory.is_dir():
        raise ProjectError(f"{directory}: not a folder (give the folder holding the Towerfile)")
    root = directory.resolve()
    towerfile_path = root / TOWERFILE
    shown = _shown(directory, TOWERFILE)
    if not towerfile_path.is_file():
        raise ProjectError(
            f"{shown}: not found (an app's folder needs a Towerfile with at least "
            '[app] name = "..." and script = "main.py")'
        )
    try:
        # Bytes, not read_text: newline translation would change what is packaged.
        text = towerfile_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{shown}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise ProjectError(f"{shown}: cannot read it: {exc.strerror}") from exc
    towerfile = parse_checked(text, shown)
    patterns = [_Pattern.compile(pattern, shown) for pattern in towerfile.source]
    selection = _select(root, patterns, shown)
    entries = selection.entries
    _check_references(towerfile, entries, root, shown)
    warnings = list(selection.warnings)
    if (root / REQUIREMENTS).is_file() and REQUIREMENTS not in entries:
        warnings.append(
            f"{_shown(directory, REQUIREMENTS)} is not packaged ([app].source does not match "
            "it), so runs will not install it"
        )
    return Project(
        root=root,
        towerfile=towerfile,
        towerfile_text=text,
        entries=tuple(entries[name] for name in sorted(entries)),
        warnings=tuple(warnings),
    )


def parse_checked(text: str, shown: str = TOWERFILE) -> Towerfile:
    """The shared parser's checks, then what a deploy needs on top: a valid app slug as
    the name, a script, and the API's limits."""
    try:
        towerfile = parse_towerfile(text)
    except TowerfileError as exc:
        raise ProjectError(_rename(str(exc), shown)) from exc
    if not re.fullmatch(SLUG_PATTERN, towerfile.name):
        raise ProjectError(
            f"{shown}: [app].name {towerfile.name!r} cannot be an app's name: use 3 to 32 "
            "lowercase letters, digits and dashes, starting with a letter (e.g. 'hello-world')"
        )
    if towerfile.script is None:
        raise ProjectError(f"{shown}: [app].script is missing: name the file to run, e.g. main.py")
    if not towerfile.script.endswith(_SCRIPT_SUFFIXES):
        raise ProjectError(
            f"{shown}: [app].script {towerfile.script!r} must be a .py or .sh file "
            "(runners run Python scripts with the app's venv, and shell scripts with /bin/sh)"
        )
    if len(towerfile.description) > MAX_DESCRIPTION:
        raise ProjectError(
            f"{shown}: [app].description is longer than {MAX_DESCRIPTION} characters"
        )
    if towerfile.timeout_seconds is not None and towerfile.timeout_seconds > MAX_TIMEOUT_SECONDS:
        raise ProjectError(
            f"{shown}: [app.timeout].seconds must be at most {MAX_TIMEOUT_SECONDS} (7 days)"
        )
    return towerfile


def _rename(message: str, shown: str) -> str:
    return shown + message.removeprefix("Towerfile") if message.startswith("Towerfile") else message


def _shown(directory: Path, name: str) -> str:
    """How a path in the project is named in messages: as the user gave the folder."""
    return str(directory / name)


def _check_references(
    towerfile: Towerfile, entries: dict[str, Entry], root: Path, shown: str
) -> None:
    script = towerfile.script
    assert script is not None
    entry = entries.get(script)
    if entry is None or entry.kind == "dir":
        if not (root / script).is_file():
            raise ProjectError(f"{shown}: [app].script {script!r} is not a file in {root}")
        raise ProjectError(
            f"{shown}: [app].script {script!r} is not packaged: add it to [app].source"
        )
    for path in towerfile.import_paths:
        if path == ".":
            continue
        found = entries.get(path)
        if found is None or found.kind != "dir":
            raise ProjectError(
                f"{shown}: [app].import_paths entry {path!r} is not a packaged folder"
            )


# --- patterns --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    text: str
    segments: tuple[str, ...]
    dirs_only: bool

    @classmethod
    def compile(cls, text: str, shown: str) -> _Pattern:
        if text.startswith("/"):
            raise ProjectError(
                f"{shown}: [app].source pattern {text!r} must be relative to the app's folder"
            )
        if "\\" in text:
            raise ProjectError(
                f"{shown}: [app].source pattern {text!r}: use '/' to separate folders"
            )
        segments = tuple(part for part in text.split("/") if part not in ("", "."))
        if ".." in segments:
            raise ProjectError(
                f"{shown}: [app].source pattern {text!r} must stay inside the app's folder"
            )
        if not segments:
            segments = ("**",)
        for segment in segments:
            if "**" in segment and segment != "**":
                raise ProjectError(
                    f"{shown}: [app].source pattern {text!r}: '**' must be a whole path "
                    "segment, as in 'src/**/*.py'"
                )
            try:
                _segment_regex(segment)
            except ProjectError as exc:
                raise ProjectError(f"{shown}: {exc} (in pattern {text!r})") from None
        return cls(text=text, segments=segments, dirs_only=text.endswith("/"))

    def matches(self, parts: tuple[str, ...], is_dir: bool) -> bool:
        if self.dirs_only and not is_dir:
            return False
        return _match(self.segments, parts, prefix=False)

    def may_match_below(self, parts: tuple[str, ...]) -> bool:
        """Could something inside the folder ``parts`` match?"""
        return _match(self.segments, parts, prefix=True)


def _match(segments: tuple[str, ...], parts: tuple[str, ...], *, prefix: bool) -> bool:
    """Do ``parts`` match ``segments`` (all of them, or with ``prefix`` a beginning)?"""
    if not parts:
        return prefix or all(segment == "**" for segment in segments)
    if not segments:
        return False
    head = segments[0]
    if head == "**":
        # Zero segments, or one more (not a hidden one) and ** again.
        if _match(segments[1:], parts, prefix=prefix):
            return True
        return not parts[0].startswith(".") and _match(segments, parts[1:], prefix=prefix)
    if not _segment_regex(head).fullmatch(parts[0]):
        return False
    return _match(segments[1:], parts[1:], prefix=prefix)


@cache
def _segment_regex(segment: str) -> re.Pattern[str]:
    """One path segment's glob as a regex. A wildcard never matches a leading dot: only a
    segment that starts with '.' itself names hidden files."""
    out = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise ProjectError(f"[app].source: unclosed '[' in pattern segment {segment!r}")
            body = segment[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    regex = "".join(out)
    if not segment.startswith("."):
        regex = r"(?!\.)" + regex
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ProjectError(f"[app].source: invalid pattern segment {segment!r}: {exc}") from exc


# --- selection -------------------------------------------------------------------------


@dataclass
class _Selection:
    entries: dict[str, Entry]
    warnings: list[str]


def _select(root: Path, patterns: list[_Pattern], shown: str) -> _Selection:
    selection = _Selection(entries={}, warnings=[])
    used = [False] * len(patterns)
    links: list[tuple[Entry, str]] = []

    def matched(parts: tuple[str, ...], is_dir: bool) -> bool:
        hit = False
        for index, pattern in enumerate(patterns):
            if pattern.matches(parts, is_dir):
                used[index] = True
                hit = True
        return hit

    def walk(folder: Path, parts: tuple[str, ...], brought: bool) -> None:
        try:
            children = sorted(os.scandir(folder), key=lambda child: child.name)
        except OSError as exc:
            raise ProjectError(f"cannot list {folder}: {exc.strerror}") from exc
        for child in children:
            child_parts = (*parts, child.name)
            rel = "/".join(child_parts)
            info = os.lstat(child.path)
            is_link = stat.S_ISLNK(info.st_mode)
            is_dir = stat.S_ISDIR(info.st_mode)
            if is_dir and child.name in _SKIPPED_FOLDERS:
                continue
            if not parts and child.name == TOWERFILE:
                continue  # always added below, as a regular file
            hidden = child.name.startswith(".")
            included = matched(child_parts, is_dir) or (brought and not hidden)
            if included:
                entry = _entry(root, Path(child.path), rel, info)
                selection.entries[rel] = entry
                if entry.kind == "symlink":
                    assert entry.link_target is not None
                    links.append((entry, entry.link_target))
            if is_dir and not is_link:
                below = included or any(p.may_match_below(child_parts) for p in patterns)
                if below:
                    walk(Path(child.path), child_parts, brought=included)

    walk(root, (), brought=False)
    for index, pattern in enumerate(patterns):
        if not used[index] and not pattern.matches((TOWERFILE,), is_dir=False):
            raise ProjectError(f"{shown}: [app].source pattern {pattern.text!r} matches nothing")
    selection.entries[TOWERFILE] = Entry(TOWERFILE, "file", root / TOWERFILE)
    # Folders above every member, so extraction never has to invent one.
    for name in list(selection.entries):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in selection.entries:
                selection.entries[parent] = Entry(parent, "dir", root / parent)
    for entry, target in links:
        resolved = os.path.normpath(os.path.join(os.path.dirname(entry.path), target))
        if not _covered(resolved, selection.entries):
            selection.warnings.append(
                f"{entry.path} links to {resolved}, which is not packaged: "
                "the link will be broken in the app"
            )
    return selection


def _covered(path: str, entries: dict[str, Entry]) -> bool:
    return path == "." or path in entries


def _entry(root: Path, path: Path, rel: str, info: os.stat_result) -> Entry:
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return Entry(rel, "symlink", path, link_target=_link_target(root, path, rel))
    if stat.S_ISDIR(mode):
        return Entry(rel, "dir", path)
    if stat.S_ISREG(mode):
        return Entry(rel, "file", path, executable=bool(mode & stat.S_IXUSR))
    raise ProjectError(f"{rel}: not a regular file, folder or link, so it cannot be packaged")


def _link_target(root: Path, path: Path, rel: str) -> str:
    """The link's target relative to the link's folder, if it stays inside ``root``."""
    text = os.readlink(path)
    real = Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        raise ProjectError(
            f"{rel} is a link to {text!r}, outside the app's folder: "
            "links must stay inside it (copy the file in instead)"
        )
    if not real.exists():
        raise ProjectError(f"{rel} is a broken link (to {text!r})")
    return os.path.relpath(real, path.parent.resolve())
