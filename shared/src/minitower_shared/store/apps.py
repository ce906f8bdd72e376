"""Apps and their immutable versions."""

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from minitower_shared.db import serialize
from minitower_shared.models import App, AppVersion, Team


def create_app(session: Session, *, team_id: int, slug: str, description: str) -> App | None:
    """None when the team already has an app with this slug."""
    if get_app(session, team_id, slug) is not None:
        return None
    app = App(team_id=team_id, slug=slug, description=description)
    session.add(app)
    session.flush()
    return app


def get_app(session: Session, team_id: int, slug: str) -> App | None:
    return session.exec(select(App).where(App.team_id == team_id, App.slug == slug)).first()


def list_apps(
    session: Session, team_id: int, *, after_id: int, limit: int, offset: int = 0
) -> list[App]:
    return list(
        session.exec(
            select(App)
            .where(App.team_id == team_id, col(App.id) > after_id)
            .order_by(col(App.id))
            .offset(offset)
            .limit(limit)
        )
    )


def update_app(
    session: Session,
    app: App,
    *,
    description: str | None,
    disabled: bool | None,
    now: datetime,
    max_concurrent_runs: int | None = None,
    set_max_concurrent_runs: bool = False,
) -> App:
    """``set_max_concurrent_runs`` says whether ``max_concurrent_runs`` was given (None
    then lifts the limit)."""
    if set_max_concurrent_runs:
        app.max_concurrent_runs = max_concurrent_runs
    if description is not None:
        app.description = description
    if disabled is not None:
        app.disabled = disabled
    app.updated_at = now
    session.add(app)
    session.flush()
    return app


def create_version(
    session: Session,
    *,
    app: App,
    artifact_object_key: str,
    artifact_sha256: str,
    artifact_size: int,
    entrypoint: str,
    timeout_seconds: int,
    params_schema: dict[str, Any] | None,
    import_paths: list[str],
    retry_policy: dict[str, Any] | None = None,
) -> AppVersion:
    """Numbers versions 1, 2, … per app; the caller's write lock (on PostgreSQL, the
    app's advisory lock) makes the count safe."""
    serialize(session, f"app-versions:{app.id}")
    last = session.exec(
        select(func.max(AppVersion.version_no)).where(AppVersion.app_id == app.id)
    ).one()
    assert app.id is not None
    version = AppVersion(
        app_id=app.id,
        version_no=(last or 0) + 1,
        artifact_object_key=artifact_object_key,
        artifact_sha256=artifact_sha256,
        artifact_size=artifact_size,
        entrypoint=entrypoint,
        timeout_seconds=timeout_seconds,
        params_schema=params_schema,
        import_paths=import_paths,
        retry_policy=retry_policy,
    )
    session.add(version)
    session.flush()
    return version


def get_version(session: Session, app_id: int, version_no: int) -> AppVersion | None:
    return session.exec(
        select(AppVersion).where(AppVersion.app_id == app_id, AppVersion.version_no == version_no)
    ).first()


def latest_version(session: Session, app_id: int) -> AppVersion | None:
    return session.exec(
        select(AppVersion)
        .where(AppVersion.app_id == app_id)
        .order_by(col(AppVersion.version_no).desc())
        .limit(1)
    ).first()


def list_versions(
    session: Session, app_id: int, *, before_no: int | None, limit: int, offset: int = 0
) -> list[AppVersion]:
    query = select(AppVersion).where(AppVersion.app_id == app_id)
    if before_no is not None:
        query = query.where(AppVersion.version_no < before_no)
    query = query.order_by(col(AppVersion.version_no).desc()).offset(offset).limit(limit)
    return list(session.exec(query))


def object_key_in_use(session: Session, object_key: str) -> bool:
    return (
        session.exec(
            select(AppVersion.id).where(AppVersion.artifact_object_key == object_key).limit(1)
        ).first()
        is not None
    )


def app_label(session: Session, app_id: int) -> str | None:
    """``team_slug/app_slug`` of an app (both slugs are fixed at creation)."""
    row = session.exec(
        select(Team.slug, App.slug)
        .join(Team, col(Team.id) == col(App.team_id))
        .where(App.id == app_id)
    ).first()
    return None if row is None else f"{row[0]}/{row[1]}"
