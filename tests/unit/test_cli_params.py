"""``minitower run``'s input: ``--input`` JSON and ``-p key=value`` converted to the
parameter's declared type."""

from __future__ import annotations

from typing import Any

import pytest

from minitower_cli.errors import UsageError
from minitower_cli.params import build_input, convert
from minitower_shared.towerfile import parameters_schema, parse_towerfile

SCHEMA = parameters_schema(
    parse_towerfile(
        """
[app]
name = "hello"
script = "main.py"

[[parameters]]
name = "name"
default = "world"

[[parameters]]
name = "count"
type = "integer"
default = 1

[[parameters]]
name = "ratio"
type = "number"
default = 0.5

[[parameters]]
name = "loud"
type = "boolean"
default = false
"""
    ).parameters
)


def test_only_given_keys_are_sent() -> None:
    assert build_input(None, [], SCHEMA) == ({}, [])
    assert build_input(None, ["name=you"], SCHEMA) == ({"name": "you"}, [])


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("name=3", {"name": "3"}),
        ("name=", {"name": ""}),
        ("name=a=b", {"name": "a=b"}),
        ("count=3", {"count": 3}),
        ("count=-12", {"count": -12}),
        ("ratio=2", {"ratio": 2}),
        ("ratio=2.5", {"ratio": 2.5}),
        ("ratio=1e3", {"ratio": 1000.0}),
        ("loud=true", {"loud": True}),
        ("loud=YES", {"loud": True}),
        ("loud=0", {"loud": False}),
        ("loud=off", {"loud": False}),
    ],
)
def test_values_take_the_declared_type(pair: str, expected: dict[str, Any]) -> None:
    assert build_input(None, [pair], SCHEMA) == (expected, [])


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("count=abc", "-p count=abc: count takes an integer; 'abc' is not an integer"),
        ("count=1.5", "count takes an integer; '1.5' is not an integer"),
        ("ratio=x", "ratio takes a number; 'x' is not a number"),
        ("ratio=nan", "ratio takes a number; 'nan' is not a finite number"),
        ("loud=maybe", "loud takes true or false; 'maybe' is not true or false"),
        ("novalue", "-p 'novalue': expected key=value"),
        ("=x", "-p '=x': expected key=value"),
    ],
)
def test_bad_values_are_named(pair: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_input(None, [pair], SCHEMA)
    assert message in caught.value.message


def test_input_json_and_pairs_merge() -> None:
    assert build_input('{"name": "a", "extra": [1]}', ["count=2"], SCHEMA) == (
        {"name": "a", "extra": [1], "count": 2},
        [],
    )
    assert build_input('{"count": 5}', ["count=2"], SCHEMA)[0] == {"count": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "--input is not valid JSON"),
        ("[1]", "--input must be a JSON object"),
        ('{"a": NaN}', "--input is not valid JSON"),
    ],
)
def test_bad_input_json(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_input(text, [], SCHEMA)


def test_undeclared_keys_warn_or_fail_when_the_schema_is_closed() -> None:
    value, warnings = build_input(None, ["other=1"], SCHEMA, app="hello version 2")
    assert value == {"other": "1"}
    assert warnings == [
        "hello version 2 declares no parameter 'other' (its parameters: count, loud, name, "
        "ratio); sending it as a string"
    ]
    closed = {**SCHEMA, "additionalProperties": False}
    with pytest.raises(UsageError, match="has no parameter 'other'"):
        build_input(None, ["other=1"], closed, app="hello")
    # No schema at all: nothing to check against, strings as given.
    assert build_input(None, ["x=1"], None) == ({"x": "1"}, [])


def test_other_schema_types() -> None:
    assert convert("o", '{"a": 1}', {"type": "object"}) == {"a": 1}
    assert convert("l", "[1, 2]", {"type": "array"}) == [1, 2]
    assert convert("n", "null", {"type": ["integer", "null"]}) is None
    assert convert("n", "4", {"type": ["integer", "null"]}) == 4
    assert convert("s", "x", {"type": ["integer", "string"]}) == "x"
    assert convert("a", "anything", {}) == "anything"
    with pytest.raises(UsageError, match="takes a JSON object"):
        convert("o", "[1]", {"type": "object"})
