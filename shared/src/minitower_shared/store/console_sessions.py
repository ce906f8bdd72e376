"""Console sessions: a signed-in browser acting as one team token.

A session is live while it is neither expired nor ended and its token is not revoked,
all checked in the one query that finds it, so revoking the token ends the session at
once.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from minitower_shared.models import ConsoleSession, Team, TeamToken


@dataclass(frozen=True)
class LiveSession:
    session: ConsoleSession
    team: Team
    token: TeamToken


def create_session(
    session: Session,
    *,
    session_hash: str,
    team_id: int,
    token_id: int,
    owns_token: bool,
    csrf_secret: str,
    now: datetime,
    expires_at: datetime,
) -> ConsoleSession:
    record = ConsoleSession(
        session_hash=session_hash,
        team_id=team_id,
        token_id=token_id,
        owns_token=owns_token,
        csrf_secret=csrf_secret,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(record)
    session.flush()
    return record


def find_live_session(session: Session, session_hash: str, now: datetime) -> LiveSession | None:
    row = session.exec(
        select(ConsoleSession, Team, TeamToken)
        .join(TeamToken, col(TeamToken.id) == col(ConsoleSession.token_id))
        .join(Team, col(Team.id) == col(ConsoleSession.team_id))
        .where(
            ConsoleSession.session_hash == session_hash,
            col(ConsoleSession.revoked_at).is_(None),
            col(ConsoleSession.expires_at) > now,
            col(TeamToken.revoked_at).is_(None),
        )
    ).first()
    return LiveSession(*row) if row is not None else None


def end_session(session: Session, record: ConsoleSession, now: datetime) -> bool:
    """End the session, and revoke its token if it minted it; False if already ended."""
    ended = session.execute(
        update(ConsoleSession)
        .where(col(ConsoleSession.id) == record.id, col(ConsoleSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    if not ended.rowcount:  # type: ignore[attr-defined]
        return False
    if record.owns_token:
        session.execute(
            update(TeamToken)
            .where(col(TeamToken.id) == record.token_id, col(TeamToken.revoked_at).is_(None))
            .values(revoked_at=now)
        )
    return True
