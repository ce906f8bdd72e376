"""``manifest.json`` of a backup directory: what it holds and how to check it."""

import json
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from minitower_api.maintenance import MaintenanceError

FORMAT = "minitower-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "minitower.db"
OBJECTS = "objects"


def minitower_version() -> str:
    try:
        return version("minitower-api")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


@dataclass(frozen=True)
class Manifest:
    created_at: str
    minitower_version: str
    schema_revision: str | None
    db_sha256: str
    db_bytes: int
    objects_count: int
    objects_bytes: int
    runs: int
    versions: int
    log_lines: int
    missing_objects: list[str]

    def write(self, folder: Path) -> Path:
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}
        path = folder / MANIFEST
        path.write_text(json.dumps(body, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        try:
            body: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise MaintenanceError(f"{folder} is not a MiniTower backup: no {MANIFEST}") from None
        except (OSError, ValueError) as exc:
            raise MaintenanceError(f"cannot read {path}: {exc}") from exc
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise MaintenanceError(f"{path} is not a MiniTower backup manifest")
        if body.get("format_version") != FORMAT_VERSION:
            raise MaintenanceError(
                f"{path} has format version {body.get('format_version')!r}; this MiniTower "
                f"reads version {FORMAT_VERSION} only"
            )
        fields = set(cls.__dataclass_fields__)
        missing = sorted(fields - set(body))
        if missing:
            raise MaintenanceError(f"{path} lacks {', '.join(missing)}")
        return cls(**{name: body[name] for name in fields})
