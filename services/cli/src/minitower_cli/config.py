"""Where the CLI sends its requests, and with which token.

Profiles live in ``$XDG_CONFIG_HOME/minitower/config.toml`` (``~/.config/...`` when the
variable is unset), written with mode 0600 because they hold team tokens::

    default_profile = "default"

    [profiles.default]
    server_url = "http://127.0.0.1:8080"
    token = "mtk_..."

For each request the server URL and the token come from the first of: the global
``--server``/``--token`` options, ``MINITOWER_SERVER_URL``/``MINITOWER_API_TOKEN``, the
profile (``--profile``, else ``MINITOWER_PROFILE``, else ``default_profile``), and, for
the URL only, ``http://127.0.0.1:8080``.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from minitower_cli.errors import UsageError

DEFAULT_SERVER_URL = "http://127.0.0.1:8080"
DEFAULT_PROFILE = "default"
PROFILE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

SERVER_ENV = "MINITOWER_SERVER_URL"
TOKEN_ENV = "MINITOWER_API_TOKEN"
PROFILE_ENV = "MINITOWER_PROFILE"


@dataclass(frozen=True)
class Profile:
    server_url: str
    token: str


@dataclass
class ConfigFile:
    default_profile: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The resolved destination of the CLI's requests."""

    server_url: str
    token: str | None
    profile: str | None
    # Where the token came from, for error messages ("--token", "MINITOWER_API_TOKEN", ...).
    token_source: str | None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    # The XDG spec: a relative path is invalid and must be ignored.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "minitower" / "config.toml"


def check_server_url(value: str, where: str) -> str:
    url = value.strip()
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise UsageError(f"{where}: {value!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def check_profile_name(name: str) -> str:
    if not PROFILE_PATTERN.fullmatch(name):
        raise UsageError(
            f"invalid profile name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def load_config(path: Path) -> ConfigFile:
    """The config file's profiles; an absent file is an empty config."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from exc
    default = document.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise UsageError(f"{path}: default_profile must be a string")
    raw_profiles = document.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise UsageError(f"{path}: [profiles] must be a table of profiles")
    profiles: dict[str, Profile] = {}
    for name, body in raw_profiles.items():
        if not isinstance(body, dict):
            raise UsageError(f"{path}: [profiles.{name}] must be a table")
        server_url, token = body.get("server_url"), body.get("token")
        if not isinstance(server_url, str) or not isinstance(token, str):
            raise UsageError(f"{path}: [profiles.{name}] needs server_url and token strings")
        profiles[name] = Profile(check_server_url(server_url, f"{path}: [profiles.{name}]"), token)
    return ConfigFile(default_profile=default, profiles=profiles)


def save_config(path: Path, config: ConfigFile) -> None:
    """Write the file atomically, readable by its owner only (it holds tokens)."""
    lines = []
    if config.default_profile is not None:
        lines.append(f"default_profile = {_toml_string(config.default_profile)}")
    for name in sorted(config.profiles):
        profile = config.profiles[name]
        lines += [
            "",
            f"[profiles.{_toml_key(name)}]",
            f"server_url = {_toml_string(profile.server_url)}",
            f"token = {_toml_string(profile.token)}",
        ]
    text = "\n".join(lines).lstrip("\n") + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temp, 0o600)  # O_CREAT's mode is not applied to an existing file
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from exc


def readable_by_others(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_string(name)


def _toml_string(value: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def resolve_target(
    *,
    server: str | None,
    token: str | None,
    profile: str | None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Target:
    """Flags, then environment variables, then the profile (see the module docstring)."""
    env = os.environ if env is None else env
    path = config_path(env) if path is None else path
    config = load_config(path)
    chosen = profile or env.get(PROFILE_ENV) or None
    explicit = chosen is not None
    if chosen is None:
        chosen = config.default_profile or DEFAULT_PROFILE
    found = config.profiles.get(chosen)
    if found is None and explicit:
        known = ", ".join(sorted(config.profiles)) or "none yet"
        raise UsageError(
            f"no profile {chosen!r} in {path} (profiles: {known}); "
            f"create it with `minitower --profile {chosen} login --server URL --token TOKEN`"
        )

    if server:
        server_url = check_server_url(server, "--server")
    elif env.get(SERVER_ENV):
        server_url = check_server_url(env[SERVER_ENV], SERVER_ENV)
    elif found is not None:
        server_url = found.server_url
    else:
        server_url = DEFAULT_SERVER_URL

    token_value: str | None
    if token:
        token_value, source = token, "--token"
    elif env.get(TOKEN_ENV):
        token_value, source = env[TOKEN_ENV], TOKEN_ENV
    elif found is not None:
        token_value, source = found.token, f"profile {chosen!r}"
    else:
        token_value, source = None, None
    return Target(
        server_url=server_url,
        token=token_value,
        profile=chosen if found is not None else None,
        token_source=source,
    )
