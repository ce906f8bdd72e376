"""Human durations for settings: ``30``, ``0.5s``, ``500ms``, ``2m``, ``1h``.

pydantic parses plain numbers and ISO 8601 durations but not ``2s``, which is what
operators write in environment files, so settings use :data:`Seconds`.
"""

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Return ``value`` in seconds; raise ValueError for anything that is not a duration."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use seconds or a suffix, e.g. 30, 0.5s, 500ms, 2m, 1h"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError("a duration must be a number of seconds or a string like '30s'")
    # NaN passes every comparison below (``nan < 0`` is false) and infinity overflows
    # timedelta arithmetic far from the setting that caused it: refuse both here.
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]
# For intervals and lifetimes, where zero would mean a busy loop or a lease that is
# expired the moment it is granted.
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
LogLevel = Literal["debug", "info", "warning", "error"]


def parse_optional_duration(value: Any) -> float | None:
    """A duration, or None for ``off`` (or an empty value): a threshold that can be off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off")):
        return None
    return parse_duration(value)


# A threshold: a duration, 0 for "always", or ``off``.
OptionalSeconds = Annotated[float | None, BeforeValidator(parse_optional_duration)]
