"""Helpers shared by the services' settings."""

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
