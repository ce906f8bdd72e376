"""A team's secrets per environment, and the names a version declares.

Rows hold ciphertext only (minitower_shared.secret_box); the store never sees a key."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from minitower_shared.models import AppVersionSecrets, Secret, TeamToken


@dataclass(frozen=True)
class SecretListing:
    secret: Secret
    # The name of the token that last set it; None once that token's row is gone.
    set_by_token_name: str | None


def list_secrets(
    session: Session, team_id: int, environment: str | None = None
) -> list[SecretListing]:
    query = (
        select(Secret, TeamToken.name)
        .join(TeamToken, col(Secret.set_by_token_id) == TeamToken.id, isouter=True)
        .where(Secret.team_id == team_id)
        .order_by(col(Secret.environment), col(Secret.name))
    )
    if environment is not None:
        query = query.where(Secret.environment == environment)
    return [SecretListing(secret, name) for secret, name in session.exec(query).all()]


def get_secret(session: Session, team_id: int, environment: str, name: str) -> Secret | None:
    return session.exec(
        select(Secret).where(
            Secret.team_id == team_id, Secret.environment == environment, Secret.name == name
        )
    ).first()


def put_secret(
    session: Session,
    *,
    team_id: int,
    environment: str,
    name: str,
    ciphertext: str,
    token_id: int | None,
    now: datetime,
) -> tuple[Secret, bool]:
    """The secret after the write, and whether it was created (False: replaced)."""
    secret = get_secret(session, team_id, environment, name)
    created = secret is None
    if secret is None:
        secret = Secret(
            team_id=team_id, environment=environment, name=name, ciphertext="", created_at=now
        )
    secret.ciphertext = ciphertext
    secret.set_by_token_id = token_id
    secret.updated_at = now
    session.add(secret)
    session.flush()
    return secret, created


def delete_secret(session: Session, team_id: int, environment: str, name: str) -> bool:
    secret = get_secret(session, team_id, environment, name)
    if secret is None:
        return False
    session.delete(secret)
    session.flush()
    return True


def secrets_named(
    session: Session, team_id: int, environment: str, names: Iterable[str]
) -> list[Secret]:
    wanted = list(names)
    if not wanted:
        return []
    return list(
        session.exec(
            select(Secret).where(
                Secret.team_id == team_id,
                Secret.environment == environment,
                col(Secret.name).in_(wanted),
            )
        ).all()
    )


def any_secret(session: Session) -> Secret | None:
    """One row, for the start-up check that the configured key decrypts what is stored."""
    return session.exec(select(Secret).order_by(col(Secret.id)).limit(1)).first()


def all_secrets(session: Session) -> list[Secret]:
    return list(session.exec(select(Secret).order_by(col(Secret.id))).all())


def replace_ciphertext(session: Session, secret_id: int, old: str, new: str) -> bool:
    """Conditional on the row still holding ``old``: a concurrent PUT wins over rotation."""
    result = session.connection().execute(
        update(Secret)
        .where(col(Secret.id) == secret_id, col(Secret.ciphertext) == old)
        .values(ciphertext=new)
    )
    return bool(result.rowcount)


def declared_names(session: Session, app_version_id: int) -> list[str]:
    row = session.get(AppVersionSecrets, app_version_id)
    return list(row.names) if row is not None else []


def declare(session: Session, app_version_id: int, names: Iterable[str]) -> None:
    wanted = list(names)
    if wanted:
        session.add(AppVersionSecrets(app_version_id=app_version_id, names=wanted))
        session.flush()
