"""The CLI's profiles file and how flags, environment variables and profiles combine."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from minitower_cli.config import (
    ConfigFile,
    Profile,
    config_path,
    load_config,
    readable_by_others,
    resolve_target,
    save_config,
)
from minitower_cli.errors import UsageError


def test_config_path_honours_xdg_config_home(tmp_path: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "minitower/config.toml"
    home = Path.home()
    assert config_path({}) == home / ".config/minitower/config.toml"
    # A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
    assert config_path({"XDG_CONFIG_HOME": "rel"}) == home / ".config/minitower/config.toml"


def test_saved_file_is_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "minitower" / "config.toml"
    config = ConfigFile(
        default_profile="prod",
        profiles={
            "prod": Profile("https://tower.example.com", "mtk_a"),
            'odd"name': Profile("http://127.0.0.1:8080", 'to"ken\\with\x01controls'),
        },
    )
    save_config(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not readable_by_others(path)
    assert load_config(path) == config
    # Saving again over a file someone made world-readable makes it private again.
    path.chmod(0o644)
    assert readable_by_others(path)
    save_config(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_absent_file_is_empty(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.toml") == ConfigFile()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[profiles\n", "invalid TOML"),
        ("default_profile = 3\n", "default_profile must be a string"),
        ("profiles = 3\n", "[profiles] must be a table"),
        ("[profiles]\na = 1\n", "[profiles.a] must be a table"),
        ("[profiles.a]\ntoken = 'x'\n", "[profiles.a] needs server_url and token strings"),
        (
            "[profiles.a]\nserver_url = 'ftp://x'\ntoken = 'x'\n",
            "is not an http:// or https:// URL",
        ),
    ],
)
def test_broken_config_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    assert message in caught.value.message


def write(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    save_config(
        path,
        ConfigFile(
            default_profile="main",
            profiles={
                "main": Profile("http://127.0.0.1:9000", "mtk_main"),
                "other": Profile("http://127.0.0.1:9001", "mtk_other"),
            },
        ),
    )
    return path


def test_the_default_profile_applies(tmp_path: Path) -> None:
    target = resolve_target(server=None, token=None, profile=None, env={}, path=write(tmp_path))
    assert (target.server_url, target.token, target.profile) == (
        "http://127.0.0.1:9000",
        "mtk_main",
        "main",
    )
    assert target.token_source == "profile 'main'"


def test_profile_flag_then_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path)
    env = {"MINITOWER_PROFILE": "other"}
    assert resolve_target(server=None, token=None, profile=None, env=env, path=path).token == (
        "mtk_other"
    )
    assert (
        resolve_target(server=None, token=None, profile="main", env=env, path=path).token
        == "mtk_main"
    )


def test_environment_overrides_profile_and_flags_override_environment(tmp_path: Path) -> None:
    path = write(tmp_path)
    env = {"MINITOWER_SERVER_URL": "http://127.0.0.1:7000/", "MINITOWER_API_TOKEN": "mtk_env"}
    target = resolve_target(server=None, token=None, profile=None, env=env, path=path)
    assert (target.server_url, target.token, target.token_source) == (
        "http://127.0.0.1:7000",
        "mtk_env",
        "MINITOWER_API_TOKEN",
    )
    target = resolve_target(
        server="http://127.0.0.1:6000", token="mtk_flag", profile=None, env=env, path=path
    )
    assert (target.server_url, target.token, target.token_source) == (
        "http://127.0.0.1:6000",
        "mtk_flag",
        "--token",
    )
    # An empty variable counts as unset.
    empty = {"MINITOWER_SERVER_URL": "", "MINITOWER_API_TOKEN": ""}
    assert resolve_target(server=None, token=None, profile=None, env=empty, path=path).token == (
        "mtk_main"
    )


def test_nothing_configured(tmp_path: Path) -> None:
    target = resolve_target(
        server=None, token=None, profile=None, env={}, path=tmp_path / "none.toml"
    )
    assert (target.server_url, target.token, target.profile) == (
        "http://127.0.0.1:8080",
        None,
        None,
    )


def test_unknown_profile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_target(server=None, token=None, profile="nope", env={}, path=write(tmp_path))
    assert "no profile 'nope'" in caught.value.message
    assert "profiles: main, other" in caught.value.message


def test_bad_server_url(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--server: 'localhost:8080' is not an http"):
        resolve_target(
            server="localhost:8080", token=None, profile=None, env={}, path=tmp_path / "x"
        )
    with pytest.raises(UsageError, match="MINITOWER_SERVER_URL: 'nope' is not an http"):
        resolve_target(
            server=None,
            token=None,
            profile=None,
            env={"MINITOWER_SERVER_URL": "nope"},
            path=tmp_path / "x",
        )
