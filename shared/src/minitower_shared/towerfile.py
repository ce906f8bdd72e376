"""Parse and validate a Towerfile, the TOML manifest at the root of an app archive.

Example::

    [app]
    name = "etl"
    script = "main.py"
    source = ["**"]
    import_paths = ["src"]
    description = "Nightly load"

    schedule = "0 3 * * *"
    timezone = "Europe/Berlin"
    secrets = ["DB_URL", "API_KEY"]

    [app.timeout]
    seconds = 600

    [app.retry]
    max_retries = 3
    retry_on = ["lost", "failed"]
    retry_delay = 30

    [[parameters]]
    name = "DAYS"
    type = "integer"
    default = 1
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from minitower_shared.retry import (
    MAX_BACKOFF,
    MAX_DELAY_SECONDS,
    MAX_RETRIES,
    POLICY_KEYS,
    RETRY_REASONS,
)
from minitower_shared.secret_box import secret_name_problem
from minitower_shared.toml_prescan import TomlTooComplex, prescan_toml

__all__ = [
    "MAX_TOWERFILE_BYTES",
    "ParamType",
    "Parameter",
    "Towerfile",
    "TowerfileError",
    "parameters_schema",
    "parse_towerfile",
]


# A Towerfile is a few hundred bytes; this leaves room for long parameter descriptions and
# bounds what a hostile one can cost (the API's MINITOWER_MAX_TOWERFILE_BYTES).
MAX_TOWERFILE_BYTES = 64 * 1024
# Secrets one version may declare.
MAX_DECLARED_SECRETS = 100


class TowerfileError(ValueError):
    """The Towerfile is not valid TOML or does not follow the Towerfile layout."""


ParamType = Literal["string", "number", "integer", "boolean"]

_PARAM_TYPES: tuple[str, ...] = get_args(ParamType)
# Parameters reach the workload as environment variables, so names must be valid there.
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TOP_LEVEL_KEYS = ("app", "parameters")
_APP_KEYS = (
    "name",
    "script",
    "source",
    "import_paths",
    "description",
    "timeout",
    "retry",
    "schedule",
    "timezone",
    "secrets",
)
_TIMEOUT_KEYS = ("seconds",)
_RETRY_KEYS = POLICY_KEYS
_PARAMETER_KEYS = ("name", "description", "type", "default")
_UNKNOWN_KEYS_SHOWN = 5


@dataclass(frozen=True)
class Parameter:
    name: str
    description: str
    type: ParamType
    default: Any
    has_default: bool


@dataclass(frozen=True)
class Towerfile:
    name: str
    # None when the Towerfile leaves the entrypoint to whoever uploads the version (the
    # API's ``entrypoint`` form field); a deploy that relies on the Towerfile needs it.
    script: str | None
    source: tuple[str, ...]
    import_paths: tuple[str, ...]
    description: str
    timeout_seconds: int | None
    parameters: tuple[Parameter, ...]
    # [app.retry]: the retry policy's keys that it sets (checked, in JSON types).
    retry: dict[str, Any] | None = None
    # The app's Towerfile schedule (cron), which ``minitower deploy`` keeps in step.
    schedule: str | None = None
    timezone: str | None = None
    # [app].secrets: names the runs need from their environment's secrets.
    secrets: tuple[str, ...] = ()


def parse_towerfile(text: str, *, max_bytes: int = MAX_TOWERFILE_BYTES) -> Towerfile:
    """Parse Towerfile text; raise TowerfileError naming the first offending key.

    The cost is bounded: at most `max_bytes` of UTF-8, and a pre-scan refuses what would
    make tomllib quadratic or recurse deeply (minitower_shared.toml_prescan)."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise TowerfileError(f"Towerfile: it is {size} bytes, more than the limit of {max_bytes}")
    try:
        prescan_toml(text)
    except TomlTooComplex as exc:
        raise TowerfileError(f"Towerfile: too complex to parse: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TowerfileError(f"Towerfile: invalid TOML: {exc}") from exc
    except RecursionError:
        # The pre-scan bounds nesting well below the interpreter's limit; this is the
        # backstop should some construct it does not count still recurse.
        raise TowerfileError("Towerfile: nested too deeply") from None

    _reject_unknown_keys(document, _TOP_LEVEL_KEYS, "at the top level")
    if "app" not in document:
        raise TowerfileError("Towerfile: the [app] table is missing")
    app = document["app"]
    if not isinstance(app, dict):
        raise TowerfileError("Towerfile: [app] must be a table")
    _reject_unknown_keys(app, _APP_KEYS, "in [app]")

    name = app.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TowerfileError("Towerfile: [app].name must be a non-empty string")

    return Towerfile(
        name=name,
        script=(
            None
            if "script" not in app
            else _relative_path(app["script"], "[app].script", allow_root=False)
        ),
        source=_string_list(app.get("source", ["**"]), "[app].source"),
        import_paths=tuple(
            _relative_path(entry, "[app].import_paths entries", allow_root=True)
            for entry in _string_list(app.get("import_paths", []), "[app].import_paths")
        ),
        description=_string(app.get("description", ""), "[app].description"),
        timeout_seconds=_timeout_seconds(app.get("timeout")),
        parameters=_parameters(document.get("parameters", [])),
        retry=_retry(app.get("retry")),
        schedule=_optional_string(app.get("schedule"), "[app].schedule", 200),
        timezone=_optional_string(app.get("timezone"), "[app].timezone", 64),
        secrets=_secret_names(app.get("secrets", [])),
    )


def parameters_schema(parameters: Sequence[Parameter]) -> dict[str, Any]:
    """Describe the parameters as a Draft 2020-12 JSON Schema for a run's input object."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in parameters:
        prop: dict[str, Any] = {"type": parameter.type, "description": parameter.description}
        if parameter.has_default:
            prop["default"] = parameter.default
        else:
            required.append(parameter.name)
        properties[parameter.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _reject_unknown_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if not unknown:
        return
    described = []
    # A handful is enough to fix the file, and difflib on thousands would be slow.
    for key in unknown[:_UNKNOWN_KEYS_SHOWN]:
        close = difflib.get_close_matches(key, allowed, n=1)
        described.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    if len(unknown) > _UNKNOWN_KEYS_SHOWN:
        described.append(f"and {len(unknown) - _UNKNOWN_KEYS_SHOWN} more")
    noun = "key" if len(unknown) == 1 else "keys"
    raise TowerfileError(f"Towerfile: unknown {noun} {where}: {', '.join(described)}")


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TowerfileError(f"Towerfile: {key} must be a string")
    return value


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TowerfileError(f"Towerfile: {key} must be a list of non-empty strings")
    return tuple(value)


def _relative_path(value: Any, key: str, *, allow_root: bool) -> str:
    """Return the path normalised the way archive member names are, so they compare equal."""
    if not isinstance(value, str) or not value.strip():
        raise TowerfileError(f"Towerfile: {key} must be a non-empty string")
    if value.startswith("/"):
        raise TowerfileError(f"Towerfile: {key} must be a relative path, not {value!r}")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise TowerfileError(f"Towerfile: {key} must stay inside the app, not {value!r}")
    if not parts:
        if not allow_root:
            raise TowerfileError(f"Towerfile: {key} must name a file, not {value!r}")
        return "."
    return "/".join(parts)


def _optional_string(value: Any, key: str, max_length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise TowerfileError(
            f"Towerfile: {key} must be a non-empty string of at most {max_length} characters"
        )
    return value


def _secret_names(value: Any) -> tuple[str, ...]:
    names = _string_list(value, "[app].secrets")
    if len(names) > MAX_DECLARED_SECRETS:
        raise TowerfileError(
            f"Towerfile: [app].secrets names more than {MAX_DECLARED_SECRETS} secrets"
        )
    for name in names:
        problem = secret_name_problem(name)
        if problem is not None:
            raise TowerfileError(f"Towerfile: [app].secrets: {problem}")
    if len(set(names)) != len(names):
        raise TowerfileError("Towerfile: [app].secrets names a secret twice")
    return names


def _retry(retry: Any) -> dict[str, Any] | None:
    if retry is None:
        return None
    if not isinstance(retry, dict):
        raise TowerfileError("Towerfile: [app].retry must be a table, e.g. [app.retry]")
    _reject_unknown_keys(retry, _RETRY_KEYS, "in [app.retry]")
    policy: dict[str, Any] = {}
    for key, value in retry.items():
        where = f"[app.retry].{key}"
        if key == "max_retries":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TowerfileError(f"Towerfile: {where} must be an integer")
            if not 0 <= value <= MAX_RETRIES:
                raise TowerfileError(f"Towerfile: {where} must be between 0 and {MAX_RETRIES}")
            policy[key] = value
        elif key == "retry_on":
            if (
                not isinstance(value, list)
                or not all(v in RETRY_REASONS for v in value)
                or len(set(value)) != len(value)
            ):
                raise TowerfileError(
                    f"Towerfile: {where} must list distinct reasons among "
                    f"{', '.join(RETRY_REASONS)}"
                )
            policy[key] = list(value)
        else:
            low, high = (1.0, MAX_BACKOFF) if key == "retry_backoff" else (0.0, MAX_DELAY_SECONDS)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not low <= value <= high
            ):
                raise TowerfileError(
                    f"Towerfile: {where} must be a number between {low:g} and {high:g}"
                )
            policy[key] = float(value)
    return policy


def _timeout_seconds(timeout: Any) -> int | None:
    if timeout is None:
        return None
    if not isinstance(timeout, dict):
        raise TowerfileError(
            "Towerfile: [app].timeout must be a table, e.g. [app.timeout] with seconds = 600"
        )
    _reject_unknown_keys(timeout, _TIMEOUT_KEYS, "in [app.timeout]")
    seconds = timeout.get("seconds")
    if seconds is None:
        return None
    # bool is an int subclass; `seconds = true` is a typo, not one second.
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise TowerfileError("Towerfile: [app.timeout].seconds must be a positive integer")
    return seconds


def _parameters(entries: Any) -> tuple[Parameter, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TowerfileError("Towerfile: parameters must be an array of tables ([[parameters]])")
    parameters: list[Parameter] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        name = entry.get("name")
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            raise TowerfileError(
                f"Towerfile: [[parameters]] entry {position} needs a name made of letters, "
                f"digits and underscores, not starting with a digit (got {name!r})"
            )
        where = f"parameter {name!r}"
        _reject_unknown_keys(entry, _PARAMETER_KEYS, f"in {where}")
        if name in seen:
            raise TowerfileError(f"Towerfile: {where} is declared more than once")
        seen.add(name)

        param_type = entry.get("type", "string")
        if param_type not in _PARAM_TYPES:
            raise TowerfileError(
                f"Towerfile: {where} has type {param_type!r}; "
                f"the type must be one of {', '.join(_PARAM_TYPES)}"
            )
        has_default = "default" in entry
        default = entry.get("default")
        if has_default:
            _check_default(default, param_type, where)
        parameters.append(
            Parameter(
                name=name,
                description=_string(entry.get("description", ""), f"{where}: description"),
                type=param_type,
                default=default,
                has_default=has_default,
            )
        )
    return tuple(parameters)


def _check_default(default: Any, param_type: str, where: str) -> None:
    # bool is an int subclass, but JSON Schema does not count true as an integer or number.
    is_number = isinstance(default, int | float) and not isinstance(default, bool)
    matches = {
        "string": isinstance(default, str),
        "number": is_number,
        "integer": is_number and isinstance(default, int),
        "boolean": isinstance(default, bool),
    }[param_type]
    if not matches:
        raise TowerfileError(
            f"Towerfile: {where} has default {default!r}, which is not a {param_type}"
        )
    # TOML allows nan and inf, but the schema is stored and served as JSON, which does not.
    if isinstance(default, float) and not math.isfinite(default):
        raise TowerfileError(f"Towerfile: {where} has default {default!r}; it must be finite")
