"""Check a version's parameter schema and a run's input against it, at bounded cost.

Schemas and input come from teams, so neither may cost the API more than a moment:
regular expressions (`pattern`, `patternProperties`) run on RE2, whose matching is linear
in the input (Python's `re` backtracks: `^(a+)+$` against 28 a's and a "!" held the
interpreter for 9 s); a pattern RE2 cannot run (backreferences, lookaround) is refused
at upload. `uniqueItems` compares by hashing instead of jsonschema's quadratic fallback.
Input arrays and objects are capped in size and nesting, and each validation has a time
budget (MINITOWER_PARAMS_VALIDATION_TIMEOUT), checked at every keyword. Schemas are capped
in size and shape, and may name `$schema` only at the root: jsonschema hands a subschema
with its own `$schema` to the validator class that names, which has none of the above.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from minitower_api.settings import ApiSettings

__all__ = [
    "MAX_PARAMS_SCHEMA_BYTES",
    "MAX_PATTERN_LENGTH",
    "MAX_SCHEMA_NODES",
    "InputError",
    "InputLimits",
    "check_input_size",
    "check_params_schema",
    "prepare_input",
]

# jsonschema's default registry fetches remote `$ref`s over HTTP, which would let any team
# make the API send requests to arbitrary hosts; an empty registry resolves only local refs.
_LOCAL_REFS_ONLY: Registry[Any] = Registry()


class InputError(ValueError):
    """Client-supplied data is unusable; `details` lists each problem for the response body."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = details if details is not None else []


# A version's params_schema, as sent: parameters, descriptions and a few patterns. Its
# check against the meta-schema costs about a millisecond per subschema.
MAX_PARAMS_SCHEMA_BYTES = 64 * 1024
# Longer patterns are no parameter check; compiling them is not free either.
MAX_PATTERN_LENGTH = 1024
# Objects and arrays in a params_schema: a few per parameter.
MAX_SCHEMA_NODES = 500
_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class InputLimits:
    # Elements of any one array, members of any one object.
    max_items: int = 10_000
    # Arrays and objects inside each other (the input object itself is level 1).
    max_depth: int = 32
    # Seconds one validation (or the upload's trial one) may take, by the clock.
    validation_timeout: float = 1.0

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> InputLimits:
        return cls(
            max_items=settings.max_input_items,
            max_depth=settings.max_input_depth,
            validation_timeout=settings.params_validation_timeout,
        )


class _OverBudget(Exception):
    pass


# The deadline of the validation running in this thread (None: no validation running).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "params_deadline", default=None
)

_Keyword = Callable[[Any, Any, Any, Any], Iterator[ValidationError]]


def _budgeted(keyword: _Keyword) -> _Keyword:
    """The keyword, first checking the validation's deadline: every subschema the
    validator descends into passes here, so no schema can make it run on unchecked."""

    @functools.wraps(keyword)
    def checked(
        validator: Any, value: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        deadline = _deadline.get()
        if deadline is not None and time.monotonic() > deadline:
            raise _OverBudget
        yield from keyword(validator, value, instance, schema)

    return checked


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the client's error, not a log line


@functools.lru_cache(maxsize=512)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _search(pattern: str, text: str) -> bool:
    return _regex(pattern).search(text) is not None


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """jsonschema's own, with RE2 deciding which keys patternProperties covers."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in properties and not any(_search(pattern, key) for pattern in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            listed = ", ".join(repr(each) for each in sorted(patterns))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {listed}")
        else:
            joined = ", ".join(repr(each) for each in sorted(extras))
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({joined} {verb} unexpected)"
            )


def _hashable(value: Any) -> Any:
    """A key equal for exactly the values JSON Schema calls equal: 1 and 1.0 are, true and
    1 are not, objects regardless of key order."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_hashable(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, _hashable(item)) for key, item in value.items()))
    return (type(value).__name__, value)


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _hashable(item)
        if key in seen:
            yield ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


_Validator: Any = validators.extend(
    Draft202012Validator,
    validators={
        keyword: _budgeted(check)
        for keyword, check in {
            **Draft202012Validator.VALIDATORS,
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
            "uniqueItems": _unique_items,
        }.items()
    },
)


def check_params_schema(schema: Any, limits: InputLimits | None = None) -> dict[str, Any]:
    """Accept a decoded `params_schema` form field if it is a Draft 2020-12 object schema."""
    limits = limits or InputLimits()
    if not isinstance(schema, dict):
        raise InputError("params_schema must be a JSON object")
    # Before the meta-schema's check, which compiles every pattern with Python's re.
    _check_shape(schema)
    _check_regexes(schema)
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
        with _budget(limits.validation_timeout):
            validator = _Validator(_validating(schema), registry=_LOCAL_REFS_ONLY)
            for _error in validator.iter_errors({}):
                pass
    except RecursionError:
        raise InputError("params_schema refers to itself endlessly (a $ref loop)") from None
    except _OverBudget:
        raise InputError(
            f"params_schema takes more than {limits.validation_timeout:g} s to check even "
            "an empty input"
        ) from None
    return schema


@contextmanager
def _budget(seconds: float) -> Iterator[None]:
    """Give the validations in this block (in this thread) `seconds` to finish."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _check_regexes(schema: dict[str, Any]) -> None:
    """Refuse at upload a pattern RE2 cannot run, and the one keyword whose pattern
    matching the API cannot route to RE2 (jsonschema's unevaluatedProperties)."""
    pending: list[Any] = [schema]
    uses_patterns = uses_unevaluated = False
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            patterns = []
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            if isinstance(node.get("patternProperties"), dict):
                patterns.extend(node["patternProperties"])
                uses_patterns = True
            uses_unevaluated = uses_unevaluated or "unevaluatedProperties" in node
            for pattern in patterns:
                if len(pattern) > MAX_PATTERN_LENGTH:
                    raise InputError(
                        f"params_schema has a pattern of {len(pattern)} characters, more "
                        f"than {MAX_PATTERN_LENGTH}: {pattern[:40]!r}..."
                    )
                try:
                    _regex(pattern)
                except re2.error as exc:
                    raise InputError(
                        f"params_schema has a pattern the server cannot run, {pattern!r}: "
                        f"{_re2_reason(exc)} (patterns run on RE2: no backreferences or "
                        "lookaround)"
                    ) from None
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    if uses_patterns and uses_unevaluated:
        raise InputError(
            "params_schema may not combine patternProperties with unevaluatedProperties"
        )


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def _schema_below_root(schema: dict[str, Any]) -> bool:
    """Whether `$schema` appears anywhere but at the root (in a version stored before
    upload refused that)."""
    pending: list[Any] = list(schema.values())
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "$schema" in node:
                return True
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return False


def _check_shape(schema: dict[str, Any]) -> None:
    """Refuse what would take the schema's checks out of their bounds: more than
    MAX_SCHEMA_NODES objects and arrays (the meta-schema's check costs about a millisecond
    each and cannot be interrupted), and `$schema` anywhere but at the root as 2020-12's:
    jsonschema switches to the validator a `$schema` names, which would check patterns
    with Python's re again."""
    nodes = 0
    pending: list[tuple[Any, bool]] = [(schema, True)]
    while pending:
        node, root = pending.pop()
        if isinstance(node, dict):
            if "$schema" in node and not (root and node["$schema"] == _DRAFT_2020_12):
                raise InputError(
                    f"params_schema may name $schema only at its root, as {_DRAFT_2020_12!r}"
                )
            pending.extend((value, False) for value in node.values())
        elif isinstance(node, list):
            pending.extend((value, False) for value in node)
        else:
            continue
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise InputError(
                f"params_schema has more than {MAX_SCHEMA_NODES} objects and arrays: "
                "make it smaller"
            )


def _validating(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema the budgeted validator runs: without the root's `$schema`, which would
    make jsonschema switch to its own validator on a `$ref` back to the root."""
    return {key: value for key, value in schema.items() if key != "$schema"}


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


def check_input_size(data: Any, limits: InputLimits) -> None:
    """Refuse input with an array or object past the caps. Iterative: no stack to exhaust;
    only containers are visited, and the path of one is spelled out only to report it."""
    # (container, depth, the entry of its parent, its key or index there)
    pending: list[tuple[Any, int, Any, Any]] = [(data, 1, None, None)]
    while pending:
        entry = pending.pop()
        item, depth = entry[0], entry[1]
        if depth > limits.max_depth:
            raise InputError(
                f"input is nested more than {limits.max_depth} levels deep (at {_path(entry)})"
            )
        if len(item) > limits.max_items:
            kind = "object has" if isinstance(item, dict) else "array has"
            raise InputError(
                f"input {kind} more than {limits.max_items} items (at {_path(entry)}: {len(item)})"
            )
        children = item.items() if isinstance(item, dict) else enumerate(item)
        pending.extend(
            (child, depth + 1, entry, key)
            for key, child in children
            if isinstance(child, dict | list)
        )


def _path(entry: tuple[Any, int, Any, Any]) -> str:
    parts = []
    while entry[2] is not None:
        key = entry[3]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        entry = entry[2]
    return "$" + "".join(reversed(parts))


def prepare_input(
    schema: dict[str, Any] | None, data: dict[str, Any], limits: InputLimits | None = None
) -> dict[str, Any]:
    """Return a copy of `data` with parameter defaults filled in, validated against `schema`."""
    limits = limits or InputLimits()
    check_input_size(data, limits)
    # Input is plain JSON (the request's body): a JSON round trip is the fast deep copy.
    filled: dict[str, Any] = json.loads(json.dumps(data))
    if schema is None:
        return filled
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, prop in properties.items():
            if key not in filled and isinstance(prop, dict) and "default" in prop:
                filled[key] = copy.deepcopy(prop["default"])

    if _schema_below_root(schema):
        raise InputError(
            "the version's parameter schema names $schema below its root, which the server "
            "no longer runs: upload a version without it"
        )
    validator = _Validator(_validating(schema), registry=_LOCAL_REFS_ONLY)
    try:
        with _budget(limits.validation_timeout):
            errors = sorted(validator.iter_errors(filled), key=lambda e: (e.json_path, e.message))
    except _OverBudget:
        raise InputError(
            f"checking the input against the version's parameter schema took more than "
            f"{limits.validation_timeout:g} s (MINITOWER_PARAMS_VALIDATION_TIMEOUT)"
        ) from None
    except re2.error as exc:
        # Versions stored before patterns were vetted at upload.
        raise InputError(
            f"the version's parameter schema has a pattern the server cannot run: "
            f"{_re2_reason(exc)}"
        ) from None
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
