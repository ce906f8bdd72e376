"""The pre-scan that bounds what parsing a Towerfile can cost, and the Towerfile cap."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from minitower_shared.toml_prescan import TomlLimits, TomlTooComplex, prescan_toml
from minitower_shared.towerfile import MAX_TOWERFILE_BYTES, TowerfileError, parse_towerfile

EXAMPLES = Path(__file__).parents[2] / "examples"

# Each at most 64 KiB; against the bare tomllib the first took 3.4 GiB and the nested
# ones raised RecursionError.
HOSTILE = {
    "dotted key": "a." * 30000 + "b = 1",
    "dotted header": "[" + "a." * 30000 + "b]",
    "dotted key in an inline table": "x = {" + "a." * 30000 + "b = 1}",
    "nested arrays": "a = " + "[" * 5000 + "]" * 5000,
    "nested inline tables": "a = " + "{b=" * 5000 + "1" + "}" * 5000,
    "many keys": "a=1\n" * 16000,
    "many array items": "a = [" + "1," * 30000 + "]",
    "many tables": "".join(f"[t{i}]\n" for i in range(8000)),
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_towerfiles_are_refused_in_bounded_time_and_memory(text: str) -> None:
    assert len(text.encode()) <= MAX_TOWERFILE_BYTES
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TowerfileError, match="too complex to parse"):
            parse_towerfile(text)
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 0.5  # a few ms in fact; tracemalloc slows it down
    assert peak < 4 * 1024 * 1024


@pytest.mark.parametrize(
    "text",
    [
        "x = '" + "." * 60000 + "'",  # dots in strings are no key parts
        'x = "' + "[" * 60000 + '"',  # nor brackets
        "x = '''" + "{" * 60000 + "'''",
        'x = """' + "a.\n" * 20000 + '"""',
        "# " + "[" * 60000,  # nor in comments
        "x = 1.5\ny = 2.25\n" * 100,  # dots in values are no key parts
        "a.b.c.d.e.f.g.h = 1",  # 8 parts
        "x = " + "[" * 16 + "]" * 16,
        'x = "a\\"b.c.d.e.f.g.h.i.j"\n[a."b.c.d.e.f.g.h.i.j"]\n',
        'x = """a""""\n',  # a quote of content before the closing ones
    ],
)
def test_text_inside_strings_comments_and_values_does_not_count(text: str) -> None:
    prescan_toml(text)


def test_the_limits_are_exact() -> None:
    limits = TomlLimits(max_key_parts=3, max_depth=2, max_values=3)
    prescan_toml("a.b.c = [[1]]", limits)
    with pytest.raises(TomlTooComplex, match="more than 3 parts"):
        prescan_toml("a.b.c.d = 1", limits)
    with pytest.raises(TomlTooComplex, match="more than 2 levels"):
        prescan_toml("a = [[[1]]]", limits)
    with pytest.raises(TomlTooComplex, match="more than 3 keys and array items"):
        prescan_toml("a = 1\nb = 2\nc = 3\nd = 4\n", limits)


def test_an_unterminated_string_is_left_to_tomllib() -> None:
    with pytest.raises(TowerfileError, match="invalid TOML"):
        parse_towerfile('[app]\nname = """never closed\n' + "a." * 30000)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*/Towerfile")), ids=str)
def test_the_examples_pass(example: Path) -> None:
    prescan_toml(example.read_text())
    parse_towerfile(example.read_text())


def test_a_towerfile_over_the_cap_is_refused_before_parsing() -> None:
    text = '[app]\nname = "x"\n' + "#" * MAX_TOWERFILE_BYTES
    with pytest.raises(TowerfileError, match=f"more than the limit of {MAX_TOWERFILE_BYTES}"):
        parse_towerfile(text)
    assert parse_towerfile(text, max_bytes=2 * MAX_TOWERFILE_BYTES).name == "x"


def test_unknown_keys_are_listed_up_to_five() -> None:
    text = "[app]\nname = 'x'\n" + "".join(f"k{i} = 1\n" for i in range(1000))
    with pytest.raises(TowerfileError) as caught:
        parse_towerfile(text)
    assert str(caught.value).endswith("and 995 more")
