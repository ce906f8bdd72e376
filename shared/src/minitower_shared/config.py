"""Helpers shared by the services' settings."""

import logging
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


def configure_logging(level: str) -> None:
    """Plain one-line records on stderr for the long-running services."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Alembic announces its context on every revision check (/ready, start-up): noise.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
