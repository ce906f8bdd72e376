"""A run's input from the command line: ``--input JSON`` and ``-p key=value`` pairs.

Values of ``-p`` are text; each is converted to the type its parameter declares in the
version's ``params_schema`` (string, integer, number, boolean; objects and arrays as
JSON), so ``-p count=3`` sends ``3``. Keys the user did not give are not sent: the
server fills parameter defaults.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from minitower_cli.errors import UsageError

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"-p {text!r}: expected key=value, e.g. -p name=world")
    return key, value


def parse_input_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise UsageError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError('--input must be a JSON object, e.g. --input \'{"name": "world"}\'')
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def build_input(
    input_json: str | None,
    assignments: list[str],
    schema: dict[str, Any] | None,
    *,
    app: str = "the app",
) -> tuple[dict[str, Any], list[str]]:
    """The run's input and warnings (keys the version does not declare). ``-p`` pairs
    override keys of ``--input``."""
    result = parse_input_json(input_json) if input_json is not None else {}
    warnings: list[str] = []
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        properties = {}
    closed = isinstance(schema, dict) and schema.get("additionalProperties") is False
    for text in assignments:
        key, raw = parse_assignment(text)
        prop = properties.get(key)
        if prop is None:
            declared = ", ".join(sorted(properties)) or "none"
            if closed:
                raise UsageError(
                    f"-p {key}: {app} has no parameter {key!r} (its parameters: {declared})"
                )
            if schema is not None:
                warnings.append(
                    f"{app} declares no parameter {key!r} (its parameters: {declared}); "
                    "sending it as a string"
                )
            result[key] = raw
            continue
        result[key] = convert(key, raw, prop)
    return result, warnings


def convert(key: str, raw: str, prop: Any) -> Any:
    """``raw`` as the JSON type the parameter declares (a string when it declares none)."""
    declared = prop.get("type") if isinstance(prop, dict) else None
    types = [declared] if isinstance(declared, str) else list(declared or [])
    if not types or types == ["string"]:
        return raw
    errors = []
    for kind in types:
        try:
            return _as(kind, raw)
        except ValueError as exc:
            errors.append(str(exc))
    if "string" in types:
        return raw
    expected = " or ".join(_NOUNS.get(kind, str(kind)) for kind in types)
    raise UsageError(f"-p {key}={raw}: {key} takes {expected}; {errors[0]}")


_NOUNS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
    "object": "a JSON object",
    "array": "a JSON array",
    "string": "a string",
}


def _as(kind: Any, raw: str) -> Any:
    text = raw.strip()
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise ValueError(f"{raw!r} is not an integer")
        return int(text)
    if kind == "number":
        if _INTEGER.fullmatch(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a finite number")
        return number
    if kind == "boolean":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not true or false")
    if kind == "null":
        if text.lower() in ("null", ""):
            return None
        raise ValueError(f"{raw!r} is not null")
    if kind in ("object", "array"):
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except ValueError:
            raise ValueError(f"{raw!r} is not valid JSON") from None
        if not isinstance(value, dict if kind == "object" else list):
            raise ValueError(f"{raw!r} is not a JSON {kind}")
        return value
    if kind == "string":
        return raw
    raise ValueError(f"the parameter's type {kind!r} is not one the CLI knows")
