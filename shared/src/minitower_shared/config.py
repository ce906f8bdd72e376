"""Helpers shared by the services' settings."""

import logging

from pydantic import ValidationError


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


def configure_logging(level: str) -> None:
    """Plain one-line records on stderr for the long-running services."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Alembic announces its context on every revision check (/ready, start-up): noise.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
