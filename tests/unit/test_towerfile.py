"""Towerfile parsing, validation and the parameter JSON Schema."""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from minitower_shared.towerfile import (
    Parameter,
    ParamType,
    Towerfile,
    TowerfileError,
    parameters_schema,
    parse_towerfile,
)

MINIMAL = '[app]\nname = "etl"\nscript = "main.py"\n'


def parse(text: str) -> Towerfile:
    return parse_towerfile(textwrap.dedent(text))


def error(text: str) -> str:
    with pytest.raises(TowerfileError) as caught:
        parse(text)
    return str(caught.value)


def with_parameter(body: str) -> str:
    return MINIMAL + "[[parameters]]\n" + textwrap.dedent(body)


def parse_value(toml_value: str) -> Any:
    return tomllib.loads(f"v = {toml_value}")["v"]


# --- accepted Towerfiles ---------------------------------------------------------------


def test_parses_a_full_towerfile() -> None:
    towerfile = parse(
        """
        [app]
        name = "nightly-etl"
        script = "./src/main.py"
        source = ["src/**", "requirements.txt"]
        import_paths = ["src", "./lib/"]
        description = "Loads the warehouse"

        [app.timeout]
        seconds = 600

        [[parameters]]
        name = "DAYS"
        description = "How far back"
        type = "integer"
        default = 3

        [[parameters]]
        name = "target"
        """
    )
    assert towerfile == Towerfile(
        name="nightly-etl",
        script="src/main.py",
        source=("src/**", "requirements.txt"),
        import_paths=("src", "lib"),
        description="Loads the warehouse",
        timeout_seconds=600,
        parameters=(
            Parameter("DAYS", "How far back", "integer", 3, has_default=True),
            Parameter("target", "", "string", None, has_default=False),
        ),
    )


def test_applies_defaults() -> None:
    assert parse(MINIMAL) == Towerfile(
        name="etl",
        script="main.py",
        source=("**",),
        import_paths=(),
        description="",
        timeout_seconds=None,
        parameters=(),
    )


def test_an_empty_timeout_table_means_no_timeout() -> None:
    assert parse(MINIMAL + "[app.timeout]\n").timeout_seconds is None


def test_the_root_is_a_valid_import_path() -> None:
    assert parse(MINIMAL.replace("[app]\n", '[app]\nimport_paths = ["."]\n')).import_paths == (".",)


def test_the_timeout_can_be_an_inline_table() -> None:
    text = MINIMAL.replace("[app]\n", "[app]\ntimeout = { seconds = 5 }\n")
    assert parse(text).timeout_seconds == 5


@pytest.mark.parametrize(
    ("declaration", "param_type", "default"),
    [
        ('type = "string"\ndefault = ""', "string", ""),
        ('default = "x"', "string", "x"),
        ('type = "number"\ndefault = 1', "number", 1),
        ('type = "number"\ndefault = -2.5', "number", -2.5),
        ('type = "integer"\ndefault = 0', "integer", 0),
        ('type = "boolean"\ndefault = false', "boolean", False),
    ],
)
def test_accepts_defaults_of_the_declared_type(
    declaration: str, param_type: ParamType, default: Any
) -> None:
    (parameter,) = parse(with_parameter(f'name = "P"\n{declaration}\n')).parameters
    assert parameter == Parameter("P", "", param_type, default, has_default=True)
    assert type(parameter.default) is type(default)


def test_parameter_order_is_kept() -> None:
    text = MINIMAL + "".join(f'[[parameters]]\nname = "{n}"\n' for n in ("b", "a", "_c9"))
    assert [p.name for p in parse(text).parameters] == ["b", "a", "_c9"]


# --- refused Towerfiles: document shape ------------------------------------------------


def test_refuses_invalid_toml() -> None:
    message = error('[app\nname = "x"\n')
    assert message.startswith("Towerfile: invalid TOML: ")
    assert "line 1" in message


def test_refuses_a_missing_app_table() -> None:
    assert error("[[parameters]]\nname = 'x'\n") == "Towerfile: the [app] table is missing"


def test_refuses_an_app_that_is_not_a_table() -> None:
    assert error('app = "etl"\n') == "Towerfile: [app] must be a table"


def test_names_an_unknown_top_level_key_with_a_suggestion() -> None:
    assert error(MINIMAL + "[[parameter]]\nname = 'x'\n") == (
        "Towerfile: unknown key at the top level: 'parameter' (did you mean 'parameters'?)"
    )


def test_names_every_unknown_top_level_key() -> None:
    assert error(MINIMAL + "[zzz]\n[tool]\n") == (
        "Towerfile: unknown keys at the top level: 'tool', 'zzz'"
    )


def test_names_an_unknown_app_key_with_a_suggestion() -> None:
    assert error('[app]\nname = "etl"\nscirpt = "main.py"\n') == (
        "Towerfile: unknown key in [app]: 'scirpt' (did you mean 'script'?)"
    )


def test_names_an_unknown_timeout_key() -> None:
    assert error(MINIMAL + "[app.timeout]\nsecond = 5\n") == (
        "Towerfile: unknown key in [app.timeout]: 'second' (did you mean 'seconds'?)"
    )


def test_names_an_unknown_parameter_key() -> None:
    assert error(with_parameter('name = "P"\ndefualt = 1\n')) == (
        "Towerfile: unknown key in parameter 'P': 'defualt' (did you mean 'default'?)"
    )


# --- refused Towerfiles: [app] ---------------------------------------------------------


@pytest.mark.parametrize(
    "name_line", ["", 'name = ""', 'name = "   "', "name = 3", "name = ['etl']"]
)
def test_refuses_a_bad_name(name_line: str) -> None:
    assert error(f'[app]\n{name_line}\nscript = "main.py"\n') == (
        "Towerfile: [app].name must be a non-empty string"
    )


def test_script_may_be_left_to_the_upload() -> None:
    assert parse_towerfile('[app]\nname = "etl"\n').script is None


@pytest.mark.parametrize("script_line", ['script = ""', "script = 1", "script = ['a.py']"])
def test_refuses_an_empty_or_non_string_script(script_line: str) -> None:
    assert error(f'[app]\nname = "etl"\n{script_line}\n') == (
        "Towerfile: [app].script must be a non-empty string"
    )


@pytest.mark.parametrize("script", ["/main.py", "/"])
def test_refuses_an_absolute_script(script: str) -> None:
    assert error(f'[app]\nname = "etl"\nscript = "{script}"\n') == (
        f"Towerfile: [app].script must be a relative path, not {script!r}"
    )


@pytest.mark.parametrize("script", ["../main.py", "src/../../main.py", "a/.."])
def test_refuses_a_script_outside_the_app(script: str) -> None:
    assert error(f'[app]\nname = "etl"\nscript = "{script}"\n') == (
        f"Towerfile: [app].script must stay inside the app, not {script!r}"
    )


@pytest.mark.parametrize("script", [".", "./", "./."])
def test_refuses_a_script_that_names_the_root(script: str) -> None:
    assert error(f'[app]\nname = "etl"\nscript = "{script}"\n') == (
        f"Towerfile: [app].script must name a file, not {script!r}"
    )


@pytest.mark.parametrize("value", ['"**"', "[1]", '[""]', '["ok", 2]', "{ a = 1 }"])
def test_refuses_a_bad_source(value: str) -> None:
    assert error(MINIMAL + f"source = {value}\n") == (
        "Towerfile: [app].source must be a list of non-empty strings"
    )


@pytest.mark.parametrize("value", ['"src"', "[1]", '[""]'])
def test_refuses_import_paths_that_are_not_a_list_of_strings(value: str) -> None:
    assert error(MINIMAL + f"import_paths = {value}\n") == (
        "Towerfile: [app].import_paths must be a list of non-empty strings"
    )


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("/opt/lib", "must be a relative path, not '/opt/lib'"),
        ("../shared", "must stay inside the app, not '../shared'"),
    ],
)
def test_refuses_import_paths_outside_the_app(entry: str, reason: str) -> None:
    assert error(MINIMAL + f'import_paths = ["src", "{entry}"]\n') == (
        f"Towerfile: [app].import_paths entries {reason}"
    )


def test_refuses_a_non_string_description() -> None:
    assert error(MINIMAL + "description = 42\n") == "Towerfile: [app].description must be a string"


@pytest.mark.parametrize("value", ["30", '"30s"', "[30]"])
def test_refuses_a_timeout_that_is_not_a_table(value: str) -> None:
    assert error(MINIMAL + f"timeout = {value}\n") == (
        "Towerfile: [app].timeout must be a table, e.g. [app.timeout] with seconds = 600"
    )


@pytest.mark.parametrize("value", ["0", "-5", "1.5", '"60"', "true", "inf"])
def test_refuses_a_timeout_that_is_not_a_positive_integer(value: str) -> None:
    assert error(MINIMAL + f"[app.timeout]\nseconds = {value}\n") == (
        "Towerfile: [app.timeout].seconds must be a positive integer"
    )


# --- refused Towerfiles: [[parameters]] ------------------------------------------------


@pytest.mark.parametrize("value", ['"DAYS"', "[1, 2]", '["DAYS"]', "{ name = 'x' }"])
def test_refuses_parameters_that_are_not_an_array_of_tables(value: str) -> None:
    assert error(f"parameters = {value}\n" + MINIMAL) == (
        "Towerfile: parameters must be an array of tables ([[parameters]])"
    )


@pytest.mark.parametrize(
    ("name_line", "shown"),
    [
        ("", "None"),
        ('name = ""', "''"),
        ('name = "1st"', "'1st'"),
        ('name = "my-param"', "'my-param'"),
        ('name = "has space"', "'has space'"),
        ('name = "café"', "'café'"),
        ('name = "x\\n"', "'x\\n'"),
        ("name = 7", "7"),
    ],
)
def test_refuses_parameter_names_that_are_not_env_var_names(name_line: str, shown: str) -> None:
    text = with_parameter('name = "OK"\n') + f"[[parameters]]\n{name_line}\n"
    assert error(text) == (
        "Towerfile: [[parameters]] entry 2 needs a name made of letters, digits and "
        f"underscores, not starting with a digit (got {shown})"
    )


def test_refuses_duplicate_parameter_names() -> None:
    text = with_parameter('name = "DAYS"\n') + '[[parameters]]\nname = "DAYS"\n'
    assert error(text) == "Towerfile: parameter 'DAYS' is declared more than once"


@pytest.mark.parametrize("value", ['"int"', '"String"', '"array"', "1"])
def test_refuses_unknown_parameter_types(value: str) -> None:
    assert error(with_parameter(f'name = "P"\ntype = {value}\n')) == (
        f"Towerfile: parameter 'P' has type {parse_value(value)!r}; "
        "the type must be one of string, number, integer, boolean"
    )


@pytest.mark.parametrize(
    ("param_type", "value"),
    [
        ("string", "1"),
        ("string", "true"),
        ("string", "1979-05-27"),
        ("number", "true"),
        ("number", '"1.5"'),
        ("integer", "1.5"),
        ("integer", "2.0"),
        ("integer", "false"),
        ("integer", '"3"'),
        ("boolean", "1"),
        ("boolean", '"true"'),
        ("string", '["a"]'),
        ("number", "{ v = 1 }"),
    ],
)
def test_refuses_defaults_of_another_type(param_type: str, value: str) -> None:
    text = with_parameter(f'name = "P"\ntype = "{param_type}"\ndefault = {value}\n')
    assert error(text) == (
        f"Towerfile: parameter 'P' has default {parse_value(value)!r}, which is not a {param_type}"
    )


def test_an_untyped_parameter_is_a_string() -> None:
    assert error(with_parameter('name = "P"\ndefault = 5\n')) == (
        "Towerfile: parameter 'P' has default 5, which is not a string"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_refuses_non_finite_number_defaults(value: str) -> None:
    text = with_parameter(f'name = "P"\ntype = "number"\ndefault = {value}\n')
    assert error(text) == (
        f"Towerfile: parameter 'P' has default {float(value)!r}; it must be finite"
    )


def test_refuses_a_non_string_parameter_description() -> None:
    assert error(with_parameter('name = "P"\ndescription = 1\n')) == (
        "Towerfile: parameter 'P': description must be a string"
    )


def test_towerfile_error_is_a_value_error() -> None:
    assert issubclass(TowerfileError, ValueError)


# --- parameters_schema -----------------------------------------------------------------


def test_schema_without_parameters_accepts_any_object() -> None:
    assert parameters_schema([]) == {"type": "object", "properties": {}}


def test_schema_describes_each_parameter() -> None:
    schema = parameters_schema(
        [
            Parameter("NAME", "Who to greet", "string", None, has_default=False),
            Parameter("RATE", "", "number", 0.5, has_default=True),
            Parameter("COUNT", "How many", "integer", 3, has_default=True),
            Parameter("DRY_RUN", "", "boolean", None, has_default=False),
            Parameter("EMPTY", "", "string", None, has_default=True),
        ]
    )
    assert schema == {
        "type": "object",
        "properties": {
            "NAME": {"type": "string", "description": "Who to greet"},
            "RATE": {"type": "number", "description": "", "default": 0.5},
            "COUNT": {"type": "integer", "description": "How many", "default": 3},
            "DRY_RUN": {"type": "boolean", "description": ""},
            "EMPTY": {"type": "string", "description": "", "default": None},
        },
        "required": ["NAME", "DRY_RUN"],
    }


def test_schema_is_valid_draft_2020_12_and_validates_input() -> None:
    towerfile = parse(
        with_parameter('name = "DAYS"\ntype = "integer"\ndefault = 1\n')
        + '[[parameters]]\nname = "TARGET"\n'
    )
    schema = parameters_schema(towerfile.parameters)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"TARGET": "db", "DAYS": 2, "extra": [1]})
    assert not validator.is_valid({"DAYS": 2})
    assert not validator.is_valid({"TARGET": "db", "DAYS": True})
