"""Teams, their API tokens and their environments."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from minitower_shared.db import serialize
from minitower_shared.models import Environment, Team, TeamToken
from minitower_shared.states import TokenRole

# Recording every use of a token would turn each read request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def get_team_by_slug(session: Session, slug: str) -> Team | None:
    return session.exec(select(Team).where(Team.slug == slug)).first()


def create_team(session: Session, *, slug: str, name: str) -> Team:
    team = Team(slug=slug, name=name)
    session.add(team)
    session.flush()
    return team


def create_token(
    session: Session, *, team_id: int, token_hash: str, role: TokenRole, name: str
) -> TeamToken:
    token = TeamToken(team_id=team_id, token_hash=token_hash, role=role.value, name=name)
    session.add(token)
    session.flush()
    return token


def find_active_token(session: Session, token_hash: str) -> TeamToken | None:
    return session.exec(
        select(TeamToken).where(
            TeamToken.token_hash == token_hash, col(TeamToken.revoked_at).is_(None)
        )
    ).first()


_TEAM: Table = Team.__table__  # type: ignore[attr-defined]
_TOKEN: Table = TeamToken.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TeamIdentity:
    """The caller's team, as requests need it."""

    id: int
    slug: str
    name: str
    allow_shared_runners: bool

    @classmethod
    def of(cls, team: Team) -> "TeamIdentity":
        assert team.id is not None
        return cls(team.id, team.slug, team.name, team.allow_shared_runners)


@dataclass(frozen=True)
class TokenIdentity:
    """The token a request came with."""

    id: int
    team_id: int
    name: str
    role: str
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: TeamToken) -> "TokenIdentity":
        assert token.id is not None
        return cls(token.id, token.team_id, token.name, token.role, token.last_used_at)


@dataclass(frozen=True)
class Credential:
    team: TeamIdentity
    token: TokenIdentity


# Built once: every team request starts with this lookup (store/lifecycle.py says why).
_CREDENTIAL = (
    core_select(
        _TOKEN.c.id,
        _TOKEN.c.team_id,
        _TOKEN.c.name,
        _TOKEN.c.role,
        _TOKEN.c.last_used_at,
        _TEAM.c.slug,
        _TEAM.c.name,
        _TEAM.c.allow_shared_runners,
    )
    .select_from(_TOKEN.join(_TEAM, _TEAM.c.id == _TOKEN.c.team_id))
    .where(_TOKEN.c.token_hash == bindparam("token_hash"), _TOKEN.c.revoked_at.is_(None))
)
_TOUCH = (
    update(_TOKEN)
    .where(_TOKEN.c.id == bindparam("the_token"))
    .values(last_used_at=bindparam("b_now"))
)


def find_credential(session: Session, token_hash: str) -> Credential | None:
    """The live (unrevoked) token with this hash, and its team."""
    row = session.connection().execute(_CREDENTIAL, {"token_hash": token_hash}).first()
    if row is None:
        return None
    token_id, team_id, token_name, role, last_used_at, slug, team_name, shared = row
    return Credential(
        team=TeamIdentity(team_id, slug, team_name, shared),
        token=TokenIdentity(token_id, team_id, token_name, role, last_used_at),
    )


def token_is_active(session: Session, token_id: int) -> bool:
    """False once the token is revoked: a stream opened with it must end."""
    token = session.get(TeamToken, token_id)
    return token is not None and token.revoked_at is None


def inactive_tokens(session: Session, token_ids: list[int]) -> set[int]:
    """Which of the tokens are revoked (or gone): one query for all open streams."""
    if not token_ids:
        return set()
    active = set(
        session.exec(
            select(TeamToken.id).where(
                col(TeamToken.id).in_(token_ids), col(TeamToken.revoked_at).is_(None)
            )
        )
    )
    return set(token_ids) - active


def touch_token(session: Session, token: TokenIdentity, now: datetime) -> bool:
    """Record a use of ``token`` unless one was recorded recently; True if written."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return False
    session.connection().execute(_TOUCH, {"the_token": token.id, "b_now": now})
    return True


def list_tokens(
    session: Session, team_id: int, *, after_id: int, limit: int, offset: int = 0
) -> list[TeamToken]:
    return list(
        session.exec(
            select(TeamToken)
            .where(TeamToken.team_id == team_id, col(TeamToken.id) > after_id)
            .order_by(col(TeamToken.id))
            .offset(offset)
            .limit(limit)
        )
    )


def get_token(session: Session, team_id: int, token_id: int) -> TeamToken | None:
    token = session.get(TeamToken, token_id)
    return token if token is not None and token.team_id == team_id else None


def revoke_token(session: Session, token: TeamToken, now: datetime) -> TeamToken:
    """Idempotent: a revoked token keeps its first revocation time."""
    session.execute(
        update(TeamToken)
        .where(col(TeamToken.id) == token.id, col(TeamToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    session.refresh(token)
    return token


def get_or_create_environment(session: Session, team_id: int, name: str) -> Environment:
    query = select(Environment).where(Environment.team_id == team_id, Environment.name == name)
    env = session.exec(query).first()
    if env is None:
        # Looked up again under the lock (PostgreSQL): two first runs of a new
        # environment must not both insert it.
        serialize(session, f"environment:{team_id}:{name}")
        env = session.exec(query).first()
    if env is None:
        env = Environment(team_id=team_id, name=name)
        session.add(env)
        session.flush()
    return env


def environment_names(session: Session) -> set[str]:
    """Every environment name some team has used (one row per team and name: small)."""
    return set(session.exec(select(Environment.name).distinct()).all())


def set_team_password(session: Session, team_id: int, password_hash: str) -> None:
    session.execute(update(Team).where(col(Team.id) == team_id).values(password_hash=password_hash))


def list_environments(session: Session, team_id: int) -> list[Environment]:
    return list(
        session.exec(
            select(Environment).where(Environment.team_id == team_id).order_by(Environment.name)
        )
    )


def set_environment_limit(
    session: Session, environment: Environment, max_concurrent_runs: int | None
) -> Environment:
    environment.max_concurrent_runs = max_concurrent_runs
    session.add(environment)
    session.flush()
    return environment
