"""Parameter schemas sent by clients, and run input checked against them."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from minitower_api.params import InputError, check_params_schema, prepare_input
from minitower_shared.towerfile import parameters_schema, parse_towerfile

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "days": {"type": "integer", "default": 7},
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
        "dry_run": {"type": "boolean"},
    },
    "required": ["name"],
}


# --- InputError ------------------------------------------------------------------------


def test_input_error_carries_message_and_details() -> None:
    error = InputError("bad", details=[{"path": "$", "message": "m"}])
    assert isinstance(error, ValueError)
    assert str(error) == error.message == "bad"
    assert error.details == [{"path": "$", "message": "m"}]


def test_input_error_details_default_to_an_empty_list() -> None:
    assert InputError("bad").details == []


# --- check_params_schema ---------------------------------------------------------------


@pytest.mark.parametrize("schema", [{}, {"type": "object"}, SCHEMA, {"properties": {}}])
def test_accepts_object_schemas(schema: dict[str, Any]) -> None:
    assert check_params_schema(schema) is schema


def test_accepts_a_towerfile_schema() -> None:
    towerfile = parse_towerfile(
        '[app]\nname = "a"\nscript = "m.py"\n[[parameters]]\nname = "N"\ntype = "number"\n'
    )
    schema = parameters_schema(towerfile.parameters)
    assert check_params_schema(schema) == schema


@pytest.mark.parametrize("schema", [None, [], "{}", 3, True, False])
def test_refuses_schemas_that_are_not_objects(schema: Any) -> None:
    with pytest.raises(InputError) as caught:
        check_params_schema(schema)
    assert caught.value.message == "params_schema must be a JSON object"


@pytest.mark.parametrize(
    ("schema", "where", "problem"),
    [
        ({"type": "objekt"}, "$.type", "'objekt' is not valid under any of the given schemas"),
        ({"properties": {"a": {"type": 5}}}, "$.properties.a.type", "5 is not valid under any"),
        ({"properties": {"a": 5}}, "$.properties.a", "5 is not of type 'object', 'boolean'"),
        ({"required": "name"}, "$.required", "'name' is not of type 'array'"),
        ({"minProperties": -1}, "$.minProperties", "-1 is less than the minimum of 0"),
    ],
)
def test_refuses_invalid_json_schemas(schema: dict[str, Any], where: str, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        check_params_schema(schema)
    message = caught.value.message
    assert message.startswith(f"params_schema is not a valid JSON Schema (at {where}): ")
    assert problem in message


@pytest.mark.parametrize("schema_type", ["array", "string", "null", ["object", "null"]])
def test_refuses_schemas_for_non_objects(schema_type: Any) -> None:
    with pytest.raises(InputError) as caught:
        check_params_schema({"type": schema_type})
    assert caught.value.message == (
        'params_schema must describe an object: its "type" must be "object"'
    )


# --- prepare_input ---------------------------------------------------------------------


def test_without_a_schema_input_is_copied_unchanged() -> None:
    data: dict[str, Any] = {"anything": {"nested": [1]}, "n": 1}
    prepared = prepare_input(None, data)
    assert prepared == data
    assert prepared is not data
    prepared["anything"]["nested"].append(2)
    assert data == {"anything": {"nested": [1]}, "n": 1}


def test_fills_missing_keys_from_defaults() -> None:
    assert prepare_input(SCHEMA, {"name": "x"}) == {"name": "x", "days": 7, "tags": ["a"]}


def test_given_values_win_over_defaults() -> None:
    data = {"name": "x", "days": 1, "tags": []}
    assert prepare_input(SCHEMA, data) == data


def test_a_null_value_is_given_not_missing() -> None:
    schema = {"properties": {"v": {"default": 1}}}
    assert prepare_input(schema, {"v": None}) == {"v": None}


def test_does_not_mutate_the_input_or_share_defaults() -> None:
    data = {"name": "x"}
    prepared = prepare_input(SCHEMA, data)
    prepared["tags"].append("b")
    assert data == {"name": "x"}
    assert SCHEMA["properties"]["tags"]["default"] == ["a"]
    assert prepare_input(SCHEMA, {"name": "y"})["tags"] == ["a"]


def test_additional_properties_are_allowed() -> None:
    assert prepare_input(SCHEMA, {"name": "x", "extra": 1})["extra"] == 1


def test_defaults_come_only_from_top_level_properties() -> None:
    schema = {
        "properties": {
            "opts": {"type": "object", "properties": {"depth": {"default": 2}}},
            "flag": True,
        },
        "$defs": {"unused": {"properties": {"x": {"default": 1}}}},
    }
    assert prepare_input(schema, {"opts": {}}) == {"opts": {}}


def test_defaults_are_validated_too() -> None:
    schema = {"properties": {"n": {"type": "integer", "default": "seven"}}}
    with pytest.raises(InputError) as caught:
        prepare_input(schema, {})
    assert caught.value.details == [{"path": "$.n", "message": "'seven' is not of type 'integer'"}]


def test_refuses_input_that_does_not_match() -> None:
    with pytest.raises(InputError) as caught:
        prepare_input(SCHEMA, {"name": 5})
    assert caught.value.message == (
        "input does not match the version's parameters: 5 is not of type 'string'"
    )
    assert caught.value.details == [{"path": "$.name", "message": "5 is not of type 'string'"}]


def test_reports_a_missing_required_key_at_the_root() -> None:
    with pytest.raises(InputError) as caught:
        prepare_input(SCHEMA, {})
    assert caught.value.message == (
        "input does not match the version's parameters: 'name' is a required property"
    )
    assert caught.value.details == [{"path": "$", "message": "'name' is a required property"}]


def test_reports_every_error_sorted_by_path() -> None:
    data = {"tags": ["ok", 1, None], "dry_run": "yes", "days": 1.5}
    with pytest.raises(InputError) as caught:
        prepare_input(SCHEMA, data)
    assert caught.value.details == [
        {"path": "$", "message": "'name' is a required property"},
        {"path": "$.days", "message": "1.5 is not of type 'integer'"},
        {"path": "$.dry_run", "message": "'yes' is not of type 'boolean'"},
        {"path": "$.tags[1]", "message": "1 is not of type 'string'"},
        {"path": "$.tags[2]", "message": "None is not of type 'string'"},
    ]
    assert caught.value.message == (
        "input does not match the version's parameters: 'name' is a required property"
    )


def test_booleans_are_not_integers() -> None:
    with pytest.raises(InputError, match="True is not of type 'integer'"):
        prepare_input(SCHEMA, {"name": "x", "days": True})


def test_resolves_local_references() -> None:
    schema = {
        "$defs": {"count": {"type": "integer", "minimum": 1}},
        "properties": {"n": {"$ref": "#/$defs/count", "default": 1}},
    }
    assert prepare_input(schema, {}) == {"n": 1}
    with pytest.raises(InputError) as caught:
        prepare_input(schema, {"n": 0})
    assert caught.value.details == [{"path": "$.n", "message": "0 is less than the minimum of 1"}]


def test_never_fetches_remote_references(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[Any] = []

    def record(request: Any, *args: Any, **kwargs: Any) -> Any:
        fetched.append(request)
        raise AssertionError("the API must not fetch schemas over the network")

    monkeypatch.setattr(urllib.request, "urlopen", record)
    schema = {"properties": {"n": {"$ref": "http://169.254.169.254/latest/meta-data"}}}
    with pytest.raises(InputError) as caught:
        prepare_input(schema, {"n": 1})
    assert caught.value.message.startswith(
        "the version's parameter schema has an unresolvable $ref: "
    )
    assert "169.254.169.254" in caught.value.message
    assert fetched == []


def test_works_with_a_towerfile_schema() -> None:
    towerfile = parse_towerfile(
        """
        [app]
        name = "a"
        script = "m.py"
        [[parameters]]
        name = "TARGET"
        [[parameters]]
        name = "RATE"
        type = "number"
        default = 1
        """
    )
    schema = parameters_schema(towerfile.parameters)
    assert prepare_input(schema, {"TARGET": "db"}) == {"TARGET": "db", "RATE": 1}
    with pytest.raises(InputError) as caught:
        prepare_input(schema, {"RATE": "fast"})
    assert caught.value.details == [
        {"path": "$", "message": "'TARGET' is a required property"},
        {"path": "$.RATE", "message": "'fast' is not of type 'number'"},
    ]


@pytest.mark.parametrize("ref", ["https://example.invalid/schema.json", "#/$defs/missing"])
def test_a_schema_whose_ref_does_not_resolve_locally_is_refused_at_upload(ref: str) -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": ref}}}
    with pytest.raises(InputError, match="does not resolve within it"):
        check_params_schema(schema)


def test_a_schema_with_a_local_ref_is_accepted() -> None:
    schema = {
        "type": "object",
        "$defs": {"name": {"type": "string"}},
        "properties": {"x": {"$ref": "#/$defs/name"}},
    }
    assert check_params_schema(schema) == schema
    assert prepare_input(schema, {"x": "a"}) == {"x": "a"}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "$ref": "#"},
        {"type": "object", "allOf": [{"$ref": "#"}]},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    ],
)
def test_a_schema_that_refers_to_itself_endlessly_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="endlessly"):
        check_params_schema(schema)
    with pytest.raises(InputError, match="endlessly"):
        prepare_input(schema, {})
