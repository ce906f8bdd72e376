"""``minitower deploy``'s view of an app folder: every Towerfile key, every invalid case
with its message, which files the [app].source globs select, and deterministic archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import textwrap
from pathlib import Path

import pytest

from minitower_cli.packaging import FIXED_MTIME, build_package
from minitower_cli.project import Project, ProjectError, load_project
from minitower_shared.archives import extract_archive, inspect_archive

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def towerfile(body: str = "", *, name: str = "hello", script: str = "main.py") -> str:
    return f'[app]\nname = "{name}"\nscript = "{script}"\n' + textwrap.dedent(body)


def make_project(root: Path, files: dict[str, str], tower: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Towerfile").write_text(tower if tower is not None else towerfile())
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def load(root: Path, files: dict[str, str], tower: str | None = None) -> Project:
    return load_project(make_project(root, {"main.py": "print(1)\n", **files}, tower))


def error(root: Path, files: dict[str, str], tower: str | None = None) -> str:
    with pytest.raises(ProjectError) as caught:
        load(root, files, tower)
    return str(caught.value)


# --- every key -------------------------------------------------------------------------


def test_every_key_is_read(tmp_path: Path) -> None:
    tower = textwrap.dedent(
        """\
        [app]
        name = "etl-job"
        script = "src/main.py"
        source = ["src/**", "data/*.csv", "requirements.txt"]
        import_paths = ["src", "."]
        description = "Nightly load"

        [app.timeout]
        seconds = 600

        [[parameters]]
        name = "DAYS"
        description = "How far back"
        type = "integer"
        default = 3

        [[parameters]]
        name = "target"
        """
    )
    project = load_project(
        make_project(
            tmp_path,
            {
                "src/main.py": "",
                "src/lib/util.py": "",
                "data/a.csv": "",
                "data/b.txt": "",
                "requirements.txt": "httpx\n",
                "notes.md": "",
            },
            tower,
        )
    )
    found = project.towerfile
    assert (found.name, found.script, found.description) == (
        "etl-job",
        "src/main.py",
        "Nightly load",
    )
    assert found.source == ("src/**", "data/*.csv", "requirements.txt")
    assert found.import_paths == ("src", ".")
    assert found.timeout_seconds == 600
    assert [(p.name, p.type, p.default, p.has_default) for p in found.parameters] == [
        ("DAYS", "integer", 3, True),
        ("target", "string", None, False),
    ]
    assert found.parameters[0].description == "How far back"
    assert project.app_slug == "etl-job"
    assert project.files == [
        "Towerfile",
        "data/a.csv",
        "requirements.txt",
        "src/lib/util.py",
        "src/main.py",
    ]
    assert project.warnings == ()


def test_defaults_when_only_name_and_script(tmp_path: Path) -> None:
    project = load(tmp_path, {"lib/x.py": ""})
    assert project.towerfile.source == ("**",)
    assert project.towerfile.import_paths == ()
    assert project.towerfile.description == ""
    assert project.towerfile.timeout_seconds is None
    assert project.towerfile.parameters == ()
    assert project.files == ["Towerfile", "lib/x.py", "main.py"]


@pytest.mark.parametrize("kind", ["string", "number", "integer", "boolean"])
def test_each_parameter_type(tmp_path: Path, kind: str) -> None:
    default = {"string": '"x"', "number": "1.5", "integer": "2", "boolean": "true"}[kind]
    project = load(
        tmp_path,
        {},
        towerfile(f'[[parameters]]\nname = "p"\ntype = "{kind}"\ndefault = {default}\n'),
    )
    assert project.towerfile.parameters[0].type == kind


# --- every invalid case ----------------------------------------------------------------

INVALID_TOWERFILES = [
    ("[app\n", "Towerfile: invalid TOML"),
    ('name = "x"\n', "Towerfile: unknown key at the top level: 'name'"),
    ("[[parameters]]\nname = 'x'\n", "Towerfile: the [app] table is missing"),
    ('app = "x"\n', "Towerfile: [app] must be a table"),
    ('[app]\nscript = "main.py"\n', "Towerfile: [app].name must be a non-empty string"),
    ('[app]\nname = ""\nscript = "main.py"\n', "[app].name must be a non-empty string"),
    (
        '[app]\nname = "My App"\nscript = "main.py"\n',
        "Towerfile: [app].name 'My App' cannot be an app's name: use 3 to 32 lowercase",
    ),
    ('[app]\nname = "ab"\nscript = "main.py"\n', "[app].name 'ab' cannot be an app's name"),
    ('[app]\nname = "hello"\n', "Towerfile: [app].script is missing: name the file to run"),
    (
        '[app]\nname = "hello"\nscript = "main.rb"\n',
        "Towerfile: [app].script 'main.rb' must be a .py or .sh file",
    ),
    (
        '[app]\nname = "hello"\nscript = "/main.py"\n',
        "Towerfile: [app].script must be a relative path, not '/main.py'",
    ),
    (
        '[app]\nname = "hello"\nscript = "../main.py"\n',
        "Towerfile: [app].script must stay inside the app, not '../main.py'",
    ),
    (
        '[app]\nname = "hello"\nscript = "main.py"\nsripts = 1\n',
        "Towerfile: unknown key in [app]: 'sripts' (did you mean 'script'?)",
    ),
    (
        towerfile("source = 'main.py'\n"),
        "Towerfile: [app].source must be a list of non-empty strings",
    ),
    (towerfile("source = ['']\n"), "Towerfile: [app].source must be a list of non-empty strings"),
    (
        towerfile("import_paths = ['../lib']\n"),
        "Towerfile: [app].import_paths entries must stay inside the app",
    ),
    (towerfile("description = 3\n"), "Towerfile: [app].description must be a string"),
    (
        towerfile("description = '" + "x" * 2001 + "'\n"),
        "Towerfile: [app].description is longer than 2000 characters",
    ),
    (towerfile("timeout = 5\n"), "Towerfile: [app].timeout must be a table"),
    (
        towerfile("[app.timeout]\nseconds = 0\n"),
        "Towerfile: [app.timeout].seconds must be a positive integer",
    ),
    (
        towerfile("[app.timeout]\nseconds = 1.5\n"),
        "Towerfile: [app.timeout].seconds must be a positive integer",
    ),
    (
        towerfile("[app.timeout]\nseconds = 604801\n"),
        "Towerfile: [app.timeout].seconds must be at most 604800 (7 days)",
    ),
    (
        towerfile("[app.timeout]\nsecond = 5\n"),
        "Towerfile: unknown key in [app.timeout]: 'second' (did you mean 'seconds'?)",
    ),
    (
        'parameters = 1\n[app]\nname = "hello"\nscript = "main.py"\n',
        "Towerfile: parameters must be an array of tables",
    ),
    (
        towerfile("[[parameters]]\nname = '1x'\n"),
        "Towerfile: [[parameters]] entry 1 needs a name made of letters, digits and underscores",
    ),
    (
        towerfile("[[parameters]]\nname = 'a'\n[[parameters]]\nname = 'a'\n"),
        "Towerfile: parameter 'a' is declared more than once",
    ),
    (
        towerfile("[[parameters]]\nname = 'a'\ntype = 'float'\n"),
        "Towerfile: parameter 'a' has type 'float'; the type must be one of string, number, "
        "integer, boolean",
    ),
    (
        towerfile("[[parameters]]\nname = 'a'\ntype = 'integer'\ndefault = 'x'\n"),
        "Towerfile: parameter 'a' has default 'x', which is not a integer",
    ),
    (
        towerfile("[[parameters]]\nname = 'a'\ntype = 'number'\ndefault = nan\n"),
        "Towerfile: parameter 'a' has default nan; it must be finite",
    ),
    (
        towerfile("[[parameters]]\nname = 'a'\ndescription = 1\n"),
        "Towerfile: parameter 'a': description must be a string",
    ),
    (
        towerfile("[[parameters]]\nname = 'a'\nvalue = 1\n"),
        "Towerfile: unknown key in parameter 'a': 'value'",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID_TOWERFILES)
def test_invalid_towerfile_is_named(tmp_path: Path, text: str, message: str) -> None:
    got = error(tmp_path / "app", {}, text)
    # Messages name the Towerfile by its path, as the user gave the folder.
    expected = message.replace("Towerfile:", f"{tmp_path / 'app' / 'Towerfile'}:", 1)
    assert expected in got, got
    assert "\n" not in got


def test_missing_folder_and_towerfile(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no such folder"):
        load_project(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ProjectError, match="not a folder"):
        load_project(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match=r"empty/Towerfile: not found \(an app's folder"):
        load_project(tmp_path / "empty")


def test_towerfile_not_utf8(tmp_path: Path) -> None:
    tmp_path.joinpath("Towerfile").write_bytes(b"[app]\nname = '\xff'\n")
    with pytest.raises(ProjectError, match="Towerfile: not UTF-8 text"):
        load_project(tmp_path)


def test_script_must_exist_and_be_packaged(tmp_path: Path) -> None:
    root = make_project(tmp_path / "a", {"other.py": ""})
    with pytest.raises(ProjectError, match=r"\[app\].script 'main.py' is not a file in"):
        load_project(root)
    message = error(tmp_path / "b", {}, towerfile("source = ['lib/**']\n"))
    assert "[app].source pattern 'lib/**' matches nothing" in message
    message = error(tmp_path / "c", {"lib/x.py": ""}, towerfile("source = ['lib/**']\n"))
    assert "[app].script 'main.py' is not packaged: add it to [app].source" in message


def test_import_paths_must_be_packaged_folders(tmp_path: Path) -> None:
    message = error(tmp_path / "a", {}, towerfile("import_paths = ['src']\n"))
    assert "[app].import_paths entry 'src' is not a packaged folder" in message
    message = error(tmp_path / "b", {"src": ""}, towerfile("import_paths = ['src']\n"))
    assert "[app].import_paths entry 'src' is not a packaged folder" in message
    project = load(tmp_path / "c", {"src/m.py": ""}, towerfile("import_paths = ['src', '.']\n"))
    assert "src" in {e.path for e in project.entries if e.kind == "dir"}


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("/etc/*", "[app].source pattern '/etc/*' must be relative to the app's folder"),
        ("../x/*", "[app].source pattern '../x/*' must stay inside the app's folder"),
        ("src/**.py", "'**' must be a whole path segment"),
        ("src\\\\x", "use '/' to separate folders"),
        ("[abc", "unclosed '['"),
        ("*.txt", "[app].source pattern '*.txt' matches nothing"),
    ],
)
def test_invalid_source_patterns(tmp_path: Path, pattern: str, message: str) -> None:
    got = error(tmp_path, {}, towerfile(f'source = ["main.py", "{pattern}"]\n'))
    assert message in got, got


# --- which files -----------------------------------------------------------------------

TREE = {
    "main.py": "",
    "README.md": "",
    "src/app/__init__.py": "",
    "src/app/core.py": "",
    "src/app/data.json": "",
    "src/app/.secret": "",
    "src/.hidden/x.py": "",
    "src/app/__pycache__/core.cpython-311.pyc": "",
    "tests/test_core.py": "",
    ".env": "",
    ".config/settings.toml": "",
    "docs/guide.md": "",
}


def selected(tmp_path: Path, *patterns: str) -> list[str]:
    quoted = ", ".join(f'"{p}"' for p in patterns)
    return load(tmp_path, TREE, towerfile(f"source = [{quoted}]\n")).files


def test_default_everything_but_dotfiles_and_caches(tmp_path: Path) -> None:
    assert load(tmp_path, TREE).files == [
        "README.md",
        "Towerfile",
        "docs/guide.md",
        "main.py",
        "src/app/__init__.py",
        "src/app/core.py",
        "src/app/data.json",
        "tests/test_core.py",
    ]


def test_star_stays_in_one_folder(tmp_path: Path) -> None:
    assert selected(tmp_path, "*.py") == ["Towerfile", "main.py"]


def test_double_star_is_recursive(tmp_path: Path) -> None:
    assert selected(tmp_path, "main.py", "src/**/*.py") == [
        "Towerfile",
        "main.py",
        "src/app/__init__.py",
        "src/app/core.py",
    ]


def test_a_matched_folder_brings_its_contents(tmp_path: Path) -> None:
    assert selected(tmp_path, "main.py", "src") == [
        "Towerfile",
        "main.py",
        "src/app/__init__.py",
        "src/app/core.py",
        "src/app/data.json",
    ]
    assert selected(tmp_path / "b", "main.py", "src/") == selected(tmp_path / "c", "main.py", "src")


def test_trailing_slash_matches_folders_only(tmp_path: Path) -> None:
    message = error(tmp_path, TREE, towerfile('source = ["main.py", "README.md/"]\n'))
    assert "pattern 'README.md/' matches nothing" in message


def test_dotfiles_only_when_named(tmp_path: Path) -> None:
    assert selected(tmp_path, "main.py", ".env") == [".env", "Towerfile", "main.py"]
    assert selected(tmp_path / "b", "main.py", ".*") == [
        ".config/settings.toml",
        ".env",
        "Towerfile",
        "main.py",
    ]
    assert selected(tmp_path / "c", "main.py", "src/app/.secret", "src/.hidden/**") == [
        "Towerfile",
        "main.py",
        "src/.hidden/x.py",
        "src/app/.secret",
    ]


def test_question_mark_and_classes(tmp_path: Path) -> None:
    assert selected(tmp_path, "mai?.py", "[dt]*/*.md") == ["Towerfile", "docs/guide.md", "main.py"]
    assert selected(tmp_path / "b", "main.py", "[!dm]*") == [
        "README.md",
        "Towerfile",
        "main.py",
        "src/app/__init__.py",
        "src/app/core.py",
        "src/app/data.json",
        "tests/test_core.py",
    ]


def test_the_towerfile_is_always_packaged(tmp_path: Path) -> None:
    assert selected(tmp_path, "main.py") == ["Towerfile", "main.py"]
    assert selected(tmp_path / "b", "main.py", "Towerfile") == ["Towerfile", "main.py"]


def test_pycache_is_never_packaged(tmp_path: Path) -> None:
    for patterns in (("**",), ("main.py", "src/app/*"), ("main.py", "src")):
        files = selected(
            tmp_path / "-".join(patterns).replace("*", "x").replace("/", "_"), *patterns
        )
        assert "src/app/core.py" in files
        assert not any("__pycache__" in name for name in files)


def test_links_inside_are_kept_and_outside_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path / "app", {"main.py": "", "lib/real.py": "x = 1\n"})
    os.symlink("lib/real.py", root / "alias.py")
    os.symlink("lib", root / "lib-link")
    project = load_project(root)
    links = {e.path: e.link_target for e in project.entries if e.kind == "symlink"}
    assert links == {"alias.py": "lib/real.py", "lib-link": "lib"}

    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    os.symlink(outside, root / "leak.txt")
    with pytest.raises(ProjectError, match=r"leak.txt is a link to .*outside the app's folder"):
        load_project(root)
    (root / "leak.txt").unlink()
    os.symlink("../secret.txt", root / "leak2.txt")
    with pytest.raises(ProjectError, match="outside the app's folder"):
        load_project(root)
    (root / "leak2.txt").unlink()
    os.symlink("missing.py", root / "broken.py")
    with pytest.raises(ProjectError, match=r"broken\.py is a broken link"):
        load_project(root)


def test_link_outside_is_fine_when_not_selected(tmp_path: Path) -> None:
    root = make_project(tmp_path / "app", {"main.py": ""}, towerfile("source = ['main.py']\n"))
    os.symlink("/etc/hostname", root / "leak")
    assert load_project(root).files == ["Towerfile", "main.py"]


def test_link_to_unpackaged_file_warns(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "app",
        {"main.py": "", "other.py": ""},
        towerfile("source = ['main.py', 'alias.py']\n"),
    )
    os.symlink("other.py", root / "alias.py")
    warnings = load_project(root).warnings
    assert warnings == (
        "alias.py links to other.py, which is not packaged: the link will be broken in the app",
    )


def test_special_files_are_refused(tmp_path: Path) -> None:
    root = make_project(tmp_path / "app", {"main.py": ""})
    os.mkfifo(root / "pipe")
    with pytest.raises(ProjectError, match="pipe: not a regular file, folder or link"):
        load_project(root)


def test_unpackaged_requirements_warns(tmp_path: Path) -> None:
    project = load(tmp_path, {"requirements.txt": "httpx\n"}, towerfile("source = ['main.py']\n"))
    assert len(project.warnings) == 1
    assert "requirements.txt is not packaged" in project.warnings[0]


def test_examples_are_deployable(tmp_path: Path) -> None:
    hello = load_project(EXAMPLES / "hello")
    assert hello.app_slug == "hello"
    assert {p.name: p.default for p in hello.towerfile.parameters} == {"name": "world", "count": 1}
    report = load_project(EXAMPLES / "report")
    assert "requirements.txt" in report.files
    assert report.towerfile.import_paths == ("lib",)
    for project in (hello, report):
        assert project.warnings == ()
        archive = tmp_path / f"{project.app_slug}.tar.gz"
        archive.write_bytes(build_package(project).data)
        assert set(project.files) <= set(inspect_archive(archive).files)


# --- deterministic archives ------------------------------------------------------------


def test_same_content_same_sha256(tmp_path: Path) -> None:
    files = {"main.py": "print(1)\n", "lib/a.py": "a = 1\n", "lib/b.py": "b = 2\n"}
    first = build_package(load_project(make_project(tmp_path / "one", files)))
    # The same files written in another order, at other times, with other modes.
    second_root = tmp_path / "two"
    make_project(second_root, dict(reversed(list(files.items()))))
    for index, path in enumerate(sorted(second_root.rglob("*"))):
        os.utime(path, (1_000_000 + index, 2_000_000 + index))
    (second_root / "lib" / "a.py").chmod(0o600)
    second = build_package(load_project(second_root))
    assert first.data == second.data
    assert first.sha256 == second.sha256 == hashlib.sha256(first.data).hexdigest()
    assert (first.file_count, first.unpacked_bytes) == (4, len(towerfile()) + 9 + 6 + 6)

    (second_root / "lib" / "b.py").write_text("b = 3\n")
    assert build_package(load_project(second_root)).sha256 != first.sha256


def test_archive_headers_are_fixed(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"main.py": "", "run.sh": "echo hi\n", "lib/x.py": ""})
    (root / "run.sh").chmod(0o775)
    os.symlink("lib/x.py", root / "alias.py")
    data = build_package(load_project(root)).data
    assert data[4:8] == b"\0\0\0\0"  # gzip MTIME
    assert data[3] & 0x08 == 0  # no FNAME
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == [
        "Towerfile",
        "alias.py",
        "lib",
        "lib/x.py",
        "main.py",
        "run.sh",
    ]
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            FIXED_MTIME,
            0,
            0,
            "",
            "",
        )
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["lib"] == (tarfile.DIRTYPE, 0o755)
    assert modes["run.sh"] == (tarfile.REGTYPE, 0o755)
    assert modes["main.py"] == (tarfile.REGTYPE, 0o644)
    assert modes["alias.py"] == (tarfile.SYMTYPE, 0o777)
    assert gzip.decompress(data)  # a plain gzip stream


def test_archive_round_trips_through_the_runners_extraction(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "app", {"main.py": "print(1)\n", "pkg/mod.py": "x = 1\n", "pkg/d/e.txt": "e"}
    )
    os.symlink("pkg/mod.py", root / "alias.py")
    archive = tmp_path / "app.tar.gz"
    archive.write_bytes(build_package(load_project(root)).data)
    listing = inspect_archive(archive)
    assert {"main.py", "pkg/mod.py", "pkg/d/e.txt", "Towerfile"} <= set(listing.files)
    dest = tmp_path / "out"
    dest.mkdir()
    extract_archive(archive, dest)
    assert (dest / "pkg" / "d" / "e.txt").read_text() == "e"
    assert (dest / "alias.py").read_text() == "x = 1\n"
    assert (dest / "Towerfile").read_text() == (root / "Towerfile").read_text()


def test_towerfile_bytes_are_packaged_as_they_are(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "main.py").write_text("")
    raw = b'[app]\r\nname = "hello"\r\nscript = "main.py"\r\n'
    (root / "Towerfile").write_bytes(raw)
    data = build_package(load_project(root)).data
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = archive.extractfile("Towerfile")
        assert member is not None
        assert member.read() == raw


def test_slug_pattern_is_the_apis() -> None:
    from minitower_cli.project import SLUG_PATTERN
    from minitower_shared.schemas import SLUG_PATTERN as API_SLUG_PATTERN

    assert SLUG_PATTERN == API_SLUG_PATTERN
