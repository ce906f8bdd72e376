"""App archives for tests: a deterministic .tar.gz of given files, the ``hello`` app's
Towerfile, and an archive with a Towerfile written for a script."""

import io
import tarfile
import textwrap


def make_archive(files: dict[str, str | bytes]) -> bytes:
    """A .tar.gz holding ``files`` (path → content), deterministic for equal input."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


HELLO_TOWERFILE = """\
[app]
name = "hello"
script = "main.py"

[[parameters]]
name = "greeting"
default = "hello"

[[parameters]]
name = "count"
type = "integer"
default = 1
"""


def towerfile(name: str, script: str = "main.py", extra: str = "") -> str:
    return f'[app]\nname = "{name}"\nscript = "{script}"\n{textwrap.dedent(extra)}'


def app_archive(
    name: str, files: dict[str, str], script: str = "main.py", extra: str = ""
) -> bytes:
    """An archive with a Towerfile for ``script`` and ``files`` (dedented)."""
    body = {path: textwrap.dedent(text) for path, text in files.items()}
    return make_archive({"Towerfile": towerfile(name, script, extra), **body})
