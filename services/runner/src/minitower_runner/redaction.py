"""Secret values out of a run's log lines, before they leave the runner.

A value is replaced with ``***`` wherever it appears in one stream's output, also when it
spans consecutive lines: a multi-line value, or one printed in pieces across lines. Lines
are matched joined without their line breaks, and each value likewise without its own, so
``"ab\\ncd"`` printed as two lines and ``"abcd"`` printed as ``ab`` then ``cd`` are both
found. A line that ends with the beginning of a value is held back until the next line of
its stream shows whether the value goes on, or until ``flush`` (the log shipper flushes
at its flush interval and at the end): a value split across writes further apart than
that is not joined up.

Values shorter than MIN_REDACTED_CHARS (after removing line breaks) are not redacted:
masking every ``1`` or ``on`` in the output would make logs unreadable and tells an
attacker the value anyway. Joining lines can over-redact (text that only matches across
a line break); it never under-redacts a value printed whole.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

MASK = "***"
MIN_REDACTED_CHARS = 4


def _without_breaks(value: str) -> str:
    return value.replace("\r", "").replace("\n", "")


def _failure_table(needle: str) -> list[int]:
    """KMP: for each prefix, the length of its longest proper prefix that is also a suffix."""
    table = [0] * len(needle)
    k = 0
    for i in range(1, len(needle)):
        while k and needle[i] != needle[k]:
            k = table[k - 1]
        if needle[i] == needle[k]:
            k += 1
        table[i] = k
    return table


@dataclass
class _Line:
    text: str
    # Masked character ranges, in the line's own coordinates.
    masked: list[tuple[int, int]] = field(default_factory=list)

    def render(self) -> str:
        if not self.masked:
            return self.text
        merged: list[tuple[int, int]] = []
        for start, stop in sorted(self.masked):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((start, stop))
        parts: list[str] = []
        end = 0
        for start, stop in merged:
            parts += [self.text[end:start], MASK]
            end = stop
        parts.append(self.text[end:])
        return "".join(parts)


class Redactor:
    def __init__(self, values: Iterable[str]) -> None:
        needles = {_without_breaks(v) for v in values}
        self._needles = sorted((n for n in needles if len(n) >= MIN_REDACTED_CHARS), key=len)
        self._tables = {n: _failure_table(n) for n in self._needles}
        self._held: dict[str, list[_Line]] = {}

    @property
    def holding(self) -> bool:
        return any(self._held.values())

    def feed(self, stream: str, line: str, *, cut: bool = False) -> list[str]:
        """The lines of ``stream`` that can go now, redacted (maybe none, maybe several).
        ``cut``: the line was cut short and its rest dropped, so a value it ends the
        beginning of will never go on: that beginning is masked and nothing is held."""
        if not self._needles:
            return [line]
        held = self._held.setdefault(stream, [])
        held.append(_Line(line))
        offsets: list[int] = []
        total = 0
        for item in held:
            offsets.append(total)
            total += len(item.text)
        text = "".join(item.text for item in held)
        for needle in self._needles:
            at = text.find(needle)
            while at != -1:
                self._mark(held, offsets, at, at + len(needle))
                at = text.find(needle, at + 1)
        overlap = max(self._overlap(text, needle) for needle in self._needles)
        if cut and overlap:
            self._mark(held, offsets, total - overlap, total)
        if cut or overlap == 0:
            release = len(held)
        else:
            # Keep the line where the possible start of a value begins, and those after.
            start = total - overlap
            release = max(i for i, offset in enumerate(offsets) if offset <= start)
        out = [item.render() for item in held[:release]]
        del held[:release]
        return out

    def flush(self) -> list[tuple[str, str]]:
        """Every held line, redacted, as (stream, line)."""
        out = [(stream, item.render()) for stream, lines in self._held.items() for item in lines]
        self._held.clear()
        return out

    @staticmethod
    def _mark(held: list[_Line], offsets: list[int], start: int, stop: int) -> None:
        for item, offset in zip(held, offsets, strict=True):
            lo, hi = max(start, offset), min(stop, offset + len(item.text))
            if lo < hi:
                item.masked.append((lo - offset, hi - offset))

    def _overlap(self, text: str, needle: str) -> int:
        """The longest proper prefix of ``needle`` that ``text`` ends with."""
        table = self._tables[needle]
        q = 0
        for ch in text[len(text) - (len(needle) - 1) :] if len(text) >= len(needle) else text:
            while q and needle[q] != ch:
                q = table[q - 1]
            if needle[q] == ch:
                q += 1
            if q == len(needle):
                q = table[q - 1]
        return q
