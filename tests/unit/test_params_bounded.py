"""Schemas and input at bounded cost: patterns on RE2, hashed uniqueItems, size caps and
a time budget per validation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from minitower_api.params import InputError, InputLimits, check_params_schema, prepare_input

EVIL_PATTERN = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
EVIL_INPUT = "a" * 28 + "!"


def elapsed(function: Any, *args: Any) -> float:
    started = time.monotonic()
    function(*args)
    return time.monotonic() - started


# --- patterns -------------------------------------------------------------------------


def test_a_backtracking_pattern_is_answered_at_once() -> None:
    """With Python's re this input took 9.4 s; each 2 more characters, 3.8 times more."""
    check_params_schema(EVIL_PATTERN)
    started = time.monotonic()
    with pytest.raises(InputError, match="does not match"):
        prepare_input(EVIL_PATTERN, {"s": EVIL_INPUT * 1000})
    assert time.monotonic() - started < 0.2


def test_patterns_still_match_as_json_schema_says() -> None:
    schema = {"properties": {"s": {"pattern": "^[a-z]+-[0-9]{2}$"}}}
    assert prepare_input(schema, {"s": "ab-12"}) == {"s": "ab-12"}
    with pytest.raises(InputError):
        prepare_input(schema, {"s": "ab-123"})
    # JSON Schema patterns are not anchored: a match anywhere counts.
    assert prepare_input({"properties": {"s": {"pattern": "b"}}}, {"s": "abc"})


def test_pattern_properties_and_additional_properties_run_on_re2() -> None:
    schema = {
        "patternProperties": {"^(x+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    check_params_schema(schema)
    assert prepare_input(schema, {"xxx": 1}) == {"xxx": 1}
    with pytest.raises(InputError, match=r"is not of type"):
        prepare_input(schema, {"xxx": "one"})
    started = time.monotonic()
    with pytest.raises(InputError, match="not match any of the regexes"):
        prepare_input(schema, {"x" * 40 + "!": 1})
    assert time.monotonic() - started < 0.2


def test_property_names_patterns_run_on_re2() -> None:
    schema = {"propertyNames": {"pattern": "^(a+)+$"}}
    check_params_schema(schema)
    started = time.monotonic()
    with pytest.raises(InputError, match="does not match"):
        prepare_input(schema, {EVIL_INPUT: 1})
    assert time.monotonic() - started < 0.2


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"s": {"pattern": "(a)\\1"}}},  # backreference
        {"properties": {"s": {"pattern": "a(?=b)"}}},  # lookahead
        {"patternProperties": {"(?<!x)y": {}}},  # lookbehind
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_at_upload(schema: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"a pattern the server cannot run.*RE2"):
        check_params_schema(schema)


def test_pattern_properties_with_unevaluated_properties_is_refused() -> None:
    """jsonschema's unevaluatedProperties matches patternProperties with Python's re."""
    schema = {"patternProperties": {"^a": {}}, "unevaluatedProperties": False}
    with pytest.raises(InputError, match="may not combine patternProperties"):
        check_params_schema(schema)


def test_a_property_named_pattern_is_no_pattern() -> None:
    schema = {"properties": {"pattern": {"type": "string"}}}
    assert check_params_schema(schema) is schema
    assert prepare_input(schema, {"pattern": "(a)\\1"}) == {"pattern": "(a)\\1"}


# --- uniqueItems ----------------------------------------------------------------------


UNIQUE = {"properties": {"rows": {"type": "array", "uniqueItems": True}}}


def test_unique_items_on_8000_objects_is_fast() -> None:
    """jsonschema's fallback compares every pair of unsortable items: 66 s for these."""
    rows = [{"id": i, "tags": ["x", i]} for i in range(8000)]
    # Tenths of a second (a loaded CI machine: more); the pairwise comparison took 66 s.
    assert elapsed(prepare_input, UNIQUE, {"rows": rows}) < 2
    with pytest.raises(InputError, match="non-unique"):
        prepare_input(UNIQUE, {"rows": [*rows, {"tags": ["x", 7], "id": 7}]})


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),  # the same number
        ([1, True], True),  # a boolean is no number
        ([0, False], True),
        ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], False),  # key order does not matter
        ([[1, 2], [2, 1]], True),  # item order does
        ([{"a": [1]}, {"a": [True]}], True),
        ([None, "null"], True),
        (["a", "a"], False),
        ([{"a": None}, {"a": None}], False),
    ],
)
def test_unique_items_compares_as_json_schema_does(items: list[Any], unique: bool) -> None:
    if unique:
        prepare_input(UNIQUE, {"rows": items})
    else:
        with pytest.raises(InputError, match="non-unique"):
            prepare_input(UNIQUE, {"rows": items})


# --- caps and the time budget ---------------------------------------------------------


def test_arrays_and_objects_are_capped() -> None:
    limits = InputLimits(max_items=3)
    prepare_input(None, {"a": [1, 2, 3]}, limits)
    with pytest.raises(InputError, match=r"array has more than 3 items \(at \$.a: 4\)"):
        prepare_input(None, {"a": [1, 2, 3, 4]}, limits)
    with pytest.raises(InputError, match=r"object has more than 3 items"):
        prepare_input(None, {"a": {"1": 1, "2": 2, "3": 3, "4": 4}}, limits)


def test_nesting_is_capped() -> None:
    limits = InputLimits(max_depth=3)
    prepare_input(None, {"a": [[1]]}, limits)
    with pytest.raises(InputError, match="nested more than 3 levels"):
        prepare_input(None, {"a": [[[1]]]}, limits)


def _exponential_schema(levels: int) -> dict[str, Any]:
    """Each level checks the next twice: 2**levels keyword calls for any input."""
    defs: dict[str, Any] = {
        f"l{i}": {"allOf": [{"$ref": f"#/$defs/l{i + 1}"}, {"$ref": f"#/$defs/l{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"l{levels}"] = {"type": "object"}
    return {"$defs": defs, "properties": {"x": {"$ref": "#/$defs/l0"}}}


def test_validation_stops_at_its_time_budget() -> None:
    schema = _exponential_schema(40)
    limits = InputLimits(validation_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(InputError, match=r"took more than 0\.2 s"):
        prepare_input(schema, {"x": {}}, limits)
    assert time.monotonic() - started < 1


def test_a_schema_too_slow_for_even_an_empty_input_is_refused_at_upload() -> None:
    schema = _exponential_schema(40)
    schema["allOf"] = [{"$ref": "#/$defs/l0"}]  # applies to the input object itself
    with pytest.raises(InputError, match=r"takes more than 0\.2 s"):
        check_params_schema(schema, InputLimits(validation_timeout=0.2))


# --- $schema, size and shape ------------------------------------------------------------

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("uri", [DRAFT_2020_12, "http://json-schema.org/draft-07/schema#"])
def test_schema_below_the_root_is_refused(uri: str) -> None:
    """jsonschema switches to the validator a $schema names: Python's re again (0.6 s
    for 22 a's, doubling with each more)."""
    schema = {"type": "object", "properties": {"s": {"$schema": uri, "pattern": "^(a+)+$"}}}
    with pytest.raises(InputError, match=r"\$schema only at its root"):
        check_params_schema(schema)
    with pytest.raises(InputError, match=r"names \$schema below its root"):
        prepare_input(schema, {"s": EVIL_INPUT})  # a version stored before the check


def test_a_root_schema_keyword_keeps_re2_through_a_ref_to_the_root() -> None:
    schema = {
        "$schema": DRAFT_2020_12,
        "type": "object",
        "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}, "child": {"$ref": "#"}},
    }
    check_params_schema(schema)
    started = time.monotonic()
    with pytest.raises(InputError, match="does not match"):
        prepare_input(schema, {"child": {"child": {"s": EVIL_INPUT}}})
    assert time.monotonic() - started < 0.2


def test_another_root_schema_is_refused() -> None:
    with pytest.raises(InputError, match=r"\$schema only at its root"):
        check_params_schema({"$schema": "http://json-schema.org/draft-07/schema#"})


def test_a_schema_of_more_than_500_objects_and_arrays_is_refused_at_once() -> None:
    """The meta-schema's check takes about a millisecond per subschema, uninterrupted."""
    check_params_schema({"type": "object", "properties": {f"p{i}": {} for i in range(498)}})
    schema = {"type": "object", "properties": {f"p{i}": {} for i in range(3000)}}
    started = time.monotonic()
    with pytest.raises(InputError, match="more than 500 objects and arrays"):
        check_params_schema(schema)
    assert time.monotonic() - started < 0.1


def test_a_pattern_over_1024_characters_is_refused() -> None:
    check_params_schema({"properties": {"s": {"pattern": "a" * 1024}}})
    with pytest.raises(InputError, match="a pattern of 1025 characters, more than 1024"):
        check_params_schema({"properties": {"s": {"pattern": "a" * 1025}}})
