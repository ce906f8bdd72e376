"""``minitower deploy``: package a folder by its Towerfile and upload it as a version."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from minitower_cli.client import ApiClient
from minitower_cli.commands.schedules import sync_towerfile_schedule
from minitower_cli.context import JsonOption, state
from minitower_cli.errors import UsageError
from minitower_cli.output import Output, human_bytes
from minitower_cli.packaging import Package, build_package
from minitower_cli.project import Project, ProjectError, load_project
from minitower_shared.schemas import AppPublic, VersionList, VersionPublic


class _ProgressReader(io.BytesIO):
    """The archive, reporting each chunk httpx reads from it to a progress bar."""

    def __init__(self, data: bytes, advance: Any) -> None:
        super().__init__(data)
        self._advance = advance

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self._advance(len(chunk))
        return chunk


def deploy(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="The app's folder (holding its Towerfile)")
    ] = Path("."),
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only package: list the files and the archive's SHA-256"),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Upload DIR as its app's next version.

    Reads DIR's Towerfile, packages exactly the files its [app].source names into a
    deterministic .tar.gz (same files, same SHA-256), creates the app if it does not exist
    yet, and uploads the archive."""
    st = state(ctx)
    output = st.output
    try:
        project = load_project(directory)
        package = build_package(project)
    except ProjectError as exc:
        raise UsageError(str(exc)) from exc
    for warning in project.warnings:
        output.warn(warning)
    summary = (
        f"packaged {package.file_count} files from {directory} "
        f"({human_bytes(package.unpacked_bytes)}, archive {human_bytes(len(package.data))}, "
        f"sha256 {package.sha256})"
    )
    if dry_run:
        if json_out:
            output.json(
                {
                    "app": project.app_slug,
                    "files": project.files,
                    "sha256": package.sha256,
                    "archive_bytes": len(package.data),
                }
            )
            return
        output.status(summary)
        for name in project.files:
            output.plain(name)
        return
    client = st.client()
    output.status(summary)
    created = _ensure_app(client, project, output)
    latest = _latest_sha(client, project.app_slug) if not created else None
    version = _upload(client, project.app_slug, package, output)
    # After the upload: a schedule's input is checked against the new version.
    scheduled = sync_towerfile_schedule(
        client, project.app_slug, project.towerfile.schedule, project.towerfile.timezone
    )
    if scheduled is not None:
        output.status(scheduled)
    if json_out:
        output.json(version)
        return
    _show_version(output, project, version, same_as=latest)


def _ensure_app(client: ApiClient, project: Project, output: Output) -> bool:
    slug = project.app_slug
    if client.exists(f"/api/v1/apps/{slug}"):
        return False
    client.post(
        AppPublic, "/api/v1/apps", json={"slug": slug, "description": project.towerfile.description}
    )
    output.status(f"created app {slug}")
    return True


def _latest_sha(client: ApiClient, slug: str) -> tuple[int, str] | None:
    versions = client.get(VersionList, f"/api/v1/apps/{slug}/versions", params={"limit": 1})
    latest = versions.versions[0] if versions.versions else None
    return (latest.version_no, latest.artifact_sha256) if latest else None


def _upload(client: ApiClient, slug: str, package: Package, output: Output) -> VersionPublic:
    path = f"/api/v1/apps/{slug}/versions"
    files = {"artifact": (f"{slug}.tar.gz", package.data, "application/gzip")}
    if not output.err.is_terminal:
        return client.post(VersionPublic, path, files=files)
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=output.err,
        transient=True,
    ) as progress:
        task = progress.add_task("upload", total=len(package.data))
        reader = _ProgressReader(package.data, lambda n: progress.advance(task, n))
        upload = {"artifact": (f"{slug}.tar.gz", reader, "application/gzip")}
        return client.post(VersionPublic, path, files=upload)


def _show_version(
    output: Output, project: Project, version: VersionPublic, same_as: tuple[int, str] | None
) -> None:
    slug = project.app_slug
    number = version.version_no
    headline = Text.assemble(("deployed ", "green"), (f"{slug} version {number}", "bold green"))
    if same_as is not None and same_as[1] == version.artifact_sha256:
        headline.append(f" (same content as version {same_as[0]})", style="bright_black")
    output.out.print(headline)
    output.details(
        [
            ("entrypoint", version.entrypoint),
            ("timeout", f"{version.timeout_seconds} s"),
            ("parameters", describe_parameters(version.params_schema or {}) or "none"),
            ("sha256", version.artifact_sha256),
            ("size", human_bytes(version.artifact_size)),
        ]
    )
    output.status(Text(f"run it: minitower run {slug} --wait", style="bright_black"))


def describe_parameters(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    parts = []
    for name, prop in properties.items():
        kind = prop.get("type", "any") if isinstance(prop, dict) else "any"
        if isinstance(prop, dict) and "default" in prop:
            parts.append(f"{name} ({kind}, default {_json(prop['default'])})")
        elif name in required:
            parts.append(f"{name} ({kind}, required)")
        else:
            parts.append(f"{name} ({kind})")
    return ", ".join(parts)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
