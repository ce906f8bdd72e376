"""Operators' maintenance commands of ``minitowerd``: backup, restore, prune.

Each command's logic lives in its own module; ``minitower_api.cli`` only registers them.
They raise :class:`MaintenanceError` for anything the operator has to fix, with a message
that fits on one line."""


class MaintenanceError(Exception):
    """A refusal or failure the operator can act on; its message is one line."""
