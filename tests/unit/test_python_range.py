"""Every workspace member supports the Python range the README promises (3.11 to 3.13):
one member pinned narrower makes the whole workspace unusable on the others."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_member_allows_python_3_11_to_3_13() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    assert "services/scheduler" in members
    for folder in [".", *members]:
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        assert project["requires-python"] == ">=3.11,<3.14", folder
