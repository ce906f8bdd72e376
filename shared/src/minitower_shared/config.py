"""Helpers shared by the services' settings."""

import sys
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

_Settings = TypeVar("_Settings")


def describe_settings_error(exc: ValidationError) -> list[str]:
    """One line per problem, naming the environment variable an operator has to fix."""
    lines = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["loc"]:
            variable = "MINITOWER_" + "_".join(str(part) for part in err["loc"]).upper()
            lines.append(f"{variable}: {message}")
        else:
            lines.append(message)
    return lines


def load_settings(factory: Callable[[], _Settings], program: str) -> _Settings:
    """The settings, or exit 2 with one line per bad variable (never a traceback)."""
    try:
        return factory()
    except ValidationError as exc:
        for line in describe_settings_error(exc):
            print(f"{program}: configuration error: {line}", file=sys.stderr)
        raise SystemExit(2) from exc
