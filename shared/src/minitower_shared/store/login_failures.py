"""Failed password sign-ins in a sliding window, per team slug and per client address
(``minitower_api.login_attempts`` decides with them). Rows older than the window are
deleted as new ones come, so the table holds one window's failures at most."""

from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, select
from sqlmodel import Session, col

from minitower_shared.clock import as_utc
from minitower_shared.models import LoginFailure

SLUG = "slug"
ADDRESS = "address"
# The longest key kept: a slug is at most 200 characters (TeamLogin), an address far less.
KEY_CHARS = 200

_RECENT = (
    select(col(LoginFailure.failed_at))
    .where(
        col(LoginFailure.kind) == bindparam("kind"),
        col(LoginFailure.key) == bindparam("key"),
        col(LoginFailure.failed_at) > bindparam("since"),
    )
    .order_by(col(LoginFailure.failed_at).desc())
    .limit(bindparam("limit"))
)
_EXPIRED = delete(LoginFailure).where(col(LoginFailure.failed_at) <= bindparam("since"))
_FORGIVEN = delete(LoginFailure).where(
    col(LoginFailure.kind) == bindparam("kind"), col(LoginFailure.key) == bindparam("key")
)


def retry_after(
    session: Session, kind: str, key: str, *, limit: int, window: timedelta, now: datetime
) -> timedelta | None:
    """How long until ``key`` may try again: None while it has fewer than ``limit``
    failures within ``window`` before ``now``. One seek of ix_login_failure_key."""
    params = {"kind": kind, "key": key[:KEY_CHARS], "since": now - window, "limit": limit}
    times = session.connection().execute(_RECENT, params).scalars().all()
    if len(times) < limit:
        return None
    return max(as_utc(times[-1]) + window - now, timedelta(milliseconds=1))


def record_failure(
    session: Session, keys: list[tuple[str, str]], *, window: timedelta, now: datetime
) -> None:
    """One failure for each ``(kind, key)``; failures that have left the window, of any
    key, go."""
    connection = session.connection()
    connection.execute(_EXPIRED, {"since": now - window})
    rows = [{"kind": kind, "key": key[:KEY_CHARS], "failed_at": now} for kind, key in keys]
    connection.execute(insert(LoginFailure), rows)


def forgive(session: Session, kind: str, key: str) -> None:
    """Forget every failure of ``key``."""
    session.connection().execute(_FORGIVEN, {"kind": kind, "key": key[:KEY_CHARS]})
