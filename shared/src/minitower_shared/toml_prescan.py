"""Bound the cost of parsing untrusted TOML before the standard library's parser sees it.

tomllib is quadratic in the parts of a dotted key (``a.a.a ... = 1``: 60 KB cost 3.4 GiB)
and recursive in the nesting of arrays and inline tables (5,000 levels: RecursionError).
One linear pass over the text, skipping strings and comments, counts what makes it
expensive and refuses a document past the limits below; whatever it lets through
tomllib parses in linear time and memory. The scan is no validator: text it cannot make
sense of (an unterminated string, say) is left for tomllib to refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TomlLimits", "TomlTooComplex", "prescan_toml"]


class TomlTooComplex(ValueError):
    """The document is past one of the limits; the message says which."""


@dataclass(frozen=True)
class TomlLimits:
    # Parts of one dotted key or table header: `a.b.c` has 3.
    max_key_parts: int = 8
    # Arrays and inline tables inside each other.
    max_depth: int = 16
    # Keys, table headers and array items in the whole document.
    max_values: int = 2_000


# What the scan reacts to; everything else (bare keys, numbers, spaces) is skipped by
# the regex engine without a Python step per character.
_INTERESTING = re.compile(r"\"\"\"|'''|\n[\s]*|[\"'#\[\]{}=,.]")
# Unrolled loops (runs of plain characters between escapes): the regex engine keeps no
# backtracking state per character, so a 64 KiB string costs no memory to skip.
_BASIC_STRING_REST = re.compile(r'[^"\\\n]*(?:\\.[^"\\\n]*)*"', re.DOTALL)
# The closing quotes may be preceded by one or two quotes of content: `"""a"""""`.
_MULTILINE_BASIC_REST = re.compile(r'[^"\\]*(?:(?:\\.|"{1,2}(?!"))[^"\\]*)*"{3,5}', re.DOTALL)


def prescan_toml(text: str, limits: TomlLimits | None = None) -> None:
    """Raise TomlTooComplex if parsing `text` could cost more than linear time."""
    limits = limits or TomlLimits()
    # The brackets open around values ("[" array, "{" inline table); table headers are
    # not values and are not on it.
    stack: list[str] = []
    in_key = True  # a key starts each line at the top level
    in_header = False
    key_parts = 1
    values = 0
    pos = 0
    length = len(text)
    while pos < length:
        found = _INTERESTING.search(text, pos)
        if found is None:
            return
        token = found.group()
        pos = found.end()
        if token[0] == "\n":
            if not stack:
                in_key, in_header, key_parts = True, False, 1
        elif token == "#":
            newline = text.find("\n", pos)
            if newline < 0:
                return
            pos = newline
        elif token in ('"', "'", '"""', "'''"):
            end = _string_end(text, pos, token)
            if end < 0:
                return  # unterminated: tomllib says where
            pos = end
        elif token == ".":
            if in_key:
                key_parts += 1
                if key_parts > limits.max_key_parts:
                    raise TomlTooComplex(f"a dotted key has more than {limits.max_key_parts} parts")
        elif token == "=":
            if in_key and not in_header:
                in_key = False
                values += 1
        elif token == "[":
            if in_key and not stack:
                # A table header, `[a.b]` or `[[a.b]]`: its name is a key.
                if not in_header:
                    in_header = True
                    values += 1
            else:
                stack.append("[")
                in_key = False
                values += 1
        elif token == "{":
            stack.append("{")
            in_key, key_parts = True, 1
        elif token == ",":
            if stack:
                values += 1
                if stack[-1] == "{":
                    in_key, key_parts = True, 1
        elif token in ("]", "}") and stack:
            # (A header's "]" is not on the stack: in_header holds until the line ends.)
            stack.pop()
            in_key = False
        if len(stack) > limits.max_depth:
            raise TomlTooComplex(
                f"arrays and inline tables are nested more than {limits.max_depth} levels deep"
            )
        if values > limits.max_values:
            raise TomlTooComplex(f"more than {limits.max_values} keys and array items")


def _string_end(text: str, pos: int, opening: str) -> int:
    """The index just past the string opened before `pos`, or -1 if it never closes."""
    if opening == "'":
        end = text.find("'", pos)
        newline = text.find("\n", pos)
        return -1 if end < 0 or 0 <= newline < end else end + 1
    if opening == "'''":
        end = text.find("'''", pos)
        if end < 0:
            return -1
        end += 3
        # Up to two quotes of content may touch the closing ones: `'''a'''''`.
        extra = 0
        while extra < 2 and text.startswith("'", end):
            end += 1
            extra += 1
        return end
    pattern = _BASIC_STRING_REST if opening == '"' else _MULTILINE_BASIC_REST
    match = pattern.match(text, pos)
    return -1 if match is None else match.end()
