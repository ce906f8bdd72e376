"""App versions: immutable uploaded archives, vetted before anything is stored."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from minitower_api.deps import Caller, CallerDep, PageDep, Services, ServicesDep, VersionNo, paged
from minitower_api.errors import HttpProblem, insufficient_storage, invalid, not_found, responses
from minitower_api.objects import Spooled, StoreFull, TooLarge, artifact_key
from minitower_api.params import (
    MAX_PARAMS_SCHEMA_BYTES,
    InputError,
    InputLimits,
    check_params_schema,
)
from minitower_api.routers.apps import require_app
from minitower_api.settings import MAX_RUN_TIMEOUT, ApiSettings
from minitower_api.views import version_public
from minitower_shared.archives import ArchiveListing, UnsafeArchiveError, inspect_archive
from minitower_shared.models import AppVersion
from minitower_shared.schemas import (
    MAX_JSON_DEPTH,
    VersionList,
    VersionPublic,
    check_plain_json,
)
from minitower_shared.store import apps as app_store
from minitower_shared.store import audit
from minitower_shared.store import objects as object_store
from minitower_shared.store import secrets as secret_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.towerfile import TowerfileError, parameters_schema, parse_towerfile

router = APIRouter(prefix="/api/v1/apps/{app}/versions", tags=["versions"])

_STORE_FULL = (
    "the server's object store is out of space; nothing was kept: retry once an "
    "operator has freed space"
)


class _Manifest:
    """What a version is made of, from the Towerfile and the form (the form wins)."""

    def __init__(
        self,
        listing: ArchiveListing,
        settings: ApiSettings,
        entrypoint: str | None,
        timeout_seconds: int | None,
        params_schema: str | None,
    ) -> None:
        towerfile = None
        if listing.towerfile_text is not None:
            try:
                towerfile = parse_towerfile(
                    listing.towerfile_text, max_bytes=settings.max_towerfile_bytes
                )
            except TowerfileError as exc:
                raise invalid(str(exc)) from exc
        chosen = entrypoint or (towerfile.script if towerfile else None)
        if not chosen:
            raise invalid(
                "no entrypoint: include a Towerfile with [app] script, or send the "
                "'entrypoint' form field"
            )
        chosen = chosen.removeprefix("./")
        if chosen not in listing.files:
            raise invalid(f"entrypoint {chosen!r} is not a file in the archive")
        self.entrypoint = chosen
        timeout = timeout_seconds
        if timeout is None and towerfile is not None:
            timeout = towerfile.timeout_seconds
        if timeout is None:
            timeout = int(settings.default_run_timeout)
        if not 0 < timeout <= MAX_RUN_TIMEOUT:
            raise invalid(f"timeout_seconds must be between 1 and {MAX_RUN_TIMEOUT}")
        self.timeout_seconds = timeout
        self.params_schema: dict[str, Any] | None = None
        if params_schema is not None:
            if len(params_schema.encode(errors="surrogatepass")) > MAX_PARAMS_SCHEMA_BYTES:
                raise invalid(
                    f"params_schema is larger than the limit of {MAX_PARAMS_SCHEMA_BYTES} bytes"
                )
            try:
                self.params_schema = check_params_schema(
                    _parse_plain_json(params_schema), InputLimits.from_settings(settings)
                )
            except InputError as exc:
                raise invalid(str(exc), exc.details) from exc
            except ValueError as exc:  # json.JSONDecodeError included
                raise invalid(f"params_schema is not valid JSON: {exc}") from exc
        elif towerfile is not None and towerfile.parameters:
            self.params_schema = parameters_schema(towerfile.parameters)
        self.import_paths = list(towerfile.import_paths) if towerfile else []
        self.retry_policy = towerfile.retry if towerfile else None
        self.secrets = list(towerfile.secrets) if towerfile else []


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_plain_json(text: str) -> Any:
    """Strict JSON: no NaN or infinities, bounded nesting (the schema is validated and
    applied recursively later), and a parser stack overflow is a client error too."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    check_plain_json(value)
    return value


def _vet_upload(
    services: Services, artifact: UploadFile, settings: ApiSettings
) -> tuple[Spooled, ArchiveListing]:
    try:
        spooled = services.spool.receive(artifact.file, max_bytes=settings.max_artifact_bytes)
    except TooLarge as exc:
        raise HttpProblem(
            413,
            "payload_too_large",
            f"artifact is larger than MINITOWER_MAX_ARTIFACT_BYTES "
            f"({settings.max_artifact_bytes} bytes)",
        ) from exc
    except StoreFull as exc:
        services.metrics.storage_full.labels("objects").inc()
        raise insufficient_storage(_STORE_FULL) from exc
    try:
        listing = inspect_archive(
            spooled.path,
            max_unpacked_bytes=settings.max_unpacked_bytes,
            max_towerfile_bytes=settings.max_towerfile_bytes,
        )
    except BaseException as exc:
        # Whatever went wrong (an unexpected error too), the temporary file must go.
        spooled.path.unlink(missing_ok=True)
        if isinstance(exc, UnsafeArchiveError):
            raise invalid(f"artifact refused: {exc}") from exc
        raise
    return spooled, listing


@router.post(
    "",
    status_code=201,
    response_model=VersionPublic,
    responses=responses(413, 507),
)
def upload_version(
    app: str,
    caller: CallerDep,
    services: ServicesDep,
    artifact: Annotated[UploadFile, File(description="The app's code as a .tar.gz")],
    entrypoint: Annotated[
        str | None, Form(description="Script to run; overrides the Towerfile's [app] script")
    ] = None,
    timeout_seconds: Annotated[
        int | None,
        Form(
            description="Run timeout; overrides the Towerfile's [app.timeout]",
            json_schema_extra={"minimum": 1, "maximum": MAX_RUN_TIMEOUT},
        ),
    ] = None,
    params_schema: Annotated[
        str | None, Form(description="JSON Schema of the run input; overrides [[parameters]]")
    ] = None,
) -> VersionPublic:
    """Upload a new immutable version. The archive is checked (no absolute paths, `..`,
    links leaving the root or device files) and must contain the entrypoint; the server
    computes its SHA-256. Nothing is kept when the upload is refused."""
    settings = services.settings
    with services.read() as session:
        require_app(session, caller.team_id, app)
    spooled, listing = _vet_upload(services, artifact, settings)
    try:
        manifest = _Manifest(listing, settings, entrypoint, timeout_seconds, params_schema)
    except BaseException:
        # A 400, but also any error nobody foresaw: nothing of the upload may stay behind.
        spooled.path.unlink(missing_ok=True)
        raise
    return _store_version(services, caller, app, spooled, manifest)


def _store_version(
    services: Services,
    caller: Caller,
    app: str,
    spooled: Spooled,
    manifest: _Manifest,
) -> VersionPublic:
    # Objects are shared by every version with the same content, so they are placed and
    # removed only under the write lock (and, on PostgreSQL, the object's own lock): an
    # upload of the same archive waits, and the clean-up below can never remove an
    # object another version is about to reference.
    key = artifact_key(spooled.sha256)
    created = False
    try:
        with services.write() as session:
            record = require_app(session, caller.team_id, app)
            object_store.hold(session, key)
            try:
                created = services.objects.commit(session, spooled, key)
            except StoreFull as exc:
                services.metrics.storage_full.labels("objects").inc()
                raise insufficient_storage(_STORE_FULL) from exc
            version = app_store.create_version(
                session,
                app=record,
                artifact_object_key=key,
                artifact_sha256=spooled.sha256,
                artifact_size=spooled.size,
                entrypoint=manifest.entrypoint,
                timeout_seconds=manifest.timeout_seconds,
                retry_policy=manifest.retry_policy,
                params_schema=manifest.params_schema,
                import_paths=manifest.import_paths,
            )
            audit.record(
                session,
                caller.actor,
                "version.upload",
                AuditObject("version", f"{record.slug}/{version.version_no}"),
                {"app": record.slug, "version_no": version.version_no, "sha256": spooled.sha256},
            )
            assert version.id is not None
            secret_store.declare(session, version.id, manifest.secrets)
    except BaseException:
        spooled.path.unlink(missing_ok=True)
        if created:
            with services.write() as session:
                object_store.hold(session, key)
                if not app_store.object_key_in_use(session, key):
                    services.objects.delete(session, key)
        raise
    return version_public(version, manifest.secrets)


@router.get("", response_model=VersionList, responses=responses())
def list_versions(app: str, caller: CallerDep, services: ServicesDep, page: PageDep) -> VersionList:
    """Newest first."""
    with services.read() as session:
        record = require_app(session, caller.team_id, app)
        assert record.id is not None
        versions = app_store.list_versions(
            session,
            record.id,
            before_no=page.cursor,
            limit=page.limit + 1,
            offset=page.offset,
        )
        versions, next_cursor = paged(versions, page, lambda version: version.version_no)
        declared = {v.id: secret_store.declared_names(session, _id(v)) for v in versions}
    return VersionList(
        versions=[version_public(v, declared[v.id]) for v in versions],
        next_cursor=next_cursor,
    )


@router.get("/{version_no}", response_model=VersionPublic, responses=responses())
def get_version(
    app: str, version_no: VersionNo, caller: CallerDep, services: ServicesDep
) -> VersionPublic:
    with services.read() as session:
        record = require_app(session, caller.team_id, app)
        assert record.id is not None
        version = app_store.get_version(session, record.id, version_no)
        if version is None:
            raise not_found(f"app {app!r} has no version {version_no}")
        return version_public(version, secret_store.declared_names(session, _id(version)))


def _id(version: AppVersion) -> int:
    assert version.id is not None
    return version.id
