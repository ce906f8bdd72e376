"""Check a version's parameter schema and a run's input against it."""

from __future__ import annotations

import copy
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

__all__ = ["InputError", "check_params_schema", "prepare_input"]

# jsonschema's default registry fetches remote `$ref`s over HTTP, which would let any team
# make the API send requests to arbitrary hosts; an empty registry resolves only local refs.
_LOCAL_REFS_ONLY: Registry[Any] = Registry()


class InputError(ValueError):
    """Client-supplied data is unusable; `details` lists each problem for the response body."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = details if details is not None else []


def check_params_schema(schema: Any) -> dict[str, Any]:
    """Accept a decoded `params_schema` form field if it is a Draft 2020-12 object schema."""
    if not isinstance(schema, dict):
        raise InputError("params_schema must be a JSON object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InputError(
            f"params_schema is not a valid JSON Schema (at {exc.json_path}): {exc.message}"
        ) from exc
    if "type" in schema and schema["type"] != "object":
        raise InputError('params_schema must describe an object: its "type" must be "object"')
    _check_refs_resolve(schema)
    try:
        # Validating once finds a schema that recurses into itself without end, which
        # would otherwise fail every run of the version.
        for _error in Draft202012Validator(schema, registry=_LOCAL_REFS_ONLY).iter_errors({}):
            pass
    except RecursionError:
        raise InputError("params_schema refers to itself endlessly (a $ref loop)") from None
    return schema


def _check_refs_resolve(schema: dict[str, Any]) -> None:
    """Refuse at upload a schema whose `$ref`s point outside itself: accepted, it would
    make every run of the version fail."""
    resolver = (
        Registry()
        .with_resource("", Resource.from_contents(schema, default_specification=DRAFT202012))
        .resolver()
    )
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except Unresolvable as exc:
                    raise InputError(
                        f"params_schema has a $ref that does not resolve within it: {ref!r}"
                    ) from exc
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def prepare_input(schema: dict[str, Any] | None, data: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with parameter defaults filled in, validated against `schema`."""
    filled = copy.deepcopy(data)
    if schema is None:
        return filled
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, prop in properties.items():
            if key not in filled and isinstance(prop, dict) and "default" in prop:
                filled[key] = copy.deepcopy(prop["default"])

    validator = Draft202012Validator(schema, registry=_LOCAL_REFS_ONLY)
    try:
        errors = sorted(validator.iter_errors(filled), key=lambda e: (e.json_path, e.message))
    except Unresolvable as exc:
        raise InputError(f"the version's parameter schema has an unresolvable $ref: {exc}") from exc
    except RecursionError:
        # A schema that refers to itself without consuming input ("$ref": "#").
        raise InputError("the version's parameter schema refers to itself endlessly") from None
    if errors:
        details: list[dict[str, Any]] = [
            {"path": error.json_path, "message": error.message} for error in errors
        ]
        raise InputError(
            f"input does not match the version's parameters: {details[0]['message']}",
            details=details,
        )
    return filled
