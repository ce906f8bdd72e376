"""Teams' runner registration tokens, and which runs a runner may be handed.

A runner is bound to the team whose registration token it registered with, or shared
when it registered with the operator's token. The lease query asks ``runnable_by``
which runs it may take, so the boundary is one condition in one place.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from minitower_shared.models import Run, RunnerRegistrationToken, Team


def create_registration_token(
    session: Session, *, team_id: int, name: str, token_hash: str, now: datetime
) -> RunnerRegistrationToken:
    token = RunnerRegistrationToken(
        team_id=team_id, name=name, token_hash=token_hash, created_at=now
    )
    session.add(token)
    session.flush()
    return token


def list_registration_tokens(
    session: Session, team_id: int, *, after_id: int, limit: int, offset: int = 0
) -> list[RunnerRegistrationToken]:
    return list(
        session.exec(
            select(RunnerRegistrationToken)
            .where(
                RunnerRegistrationToken.team_id == team_id,
                col(RunnerRegistrationToken.id) > after_id,
            )
            .order_by(col(RunnerRegistrationToken.id))
            .offset(offset)
            .limit(limit)
        )
    )


def get_registration_token(
    session: Session, team_id: int, token_id: int
) -> RunnerRegistrationToken | None:
    """The team's token of that id; another team's is None, like a missing one."""
    token = session.get(RunnerRegistrationToken, token_id)
    return token if token is not None and token.team_id == team_id else None


def revoke_registration_token(
    session: Session, token: RunnerRegistrationToken, now: datetime
) -> RunnerRegistrationToken:
    """Idempotent: a revoked token keeps its first revocation time. Runners registered
    with it keep their own tokens (as after a rotation of the operator's token)."""
    session.execute(
        update(RunnerRegistrationToken)
        .where(
            col(RunnerRegistrationToken.id) == token.id,
            col(RunnerRegistrationToken.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )
    session.refresh(token)
    return token


def find_active_registration_token(
    session: Session, token_hash: str
) -> RunnerRegistrationToken | None:
    return session.exec(
        select(RunnerRegistrationToken).where(
            RunnerRegistrationToken.token_hash == token_hash,
            col(RunnerRegistrationToken.revoked_at).is_(None),
        )
    ).first()


def record_use(session: Session, token: RunnerRegistrationToken, now: datetime) -> None:
    session.execute(
        update(RunnerRegistrationToken)
        .where(col(RunnerRegistrationToken.id) == token.id)
        .values(last_used_at=now)
    )


def runnable_by(runner_team_id: int | None) -> Any:
    """The condition on ``run`` for the runs a runner may be handed: a bound runner only
    its team's; a shared one those of every team that allows shared runners."""
    if runner_team_id is not None:
        return col(Run.team_id) == runner_team_id
    denying = select(Team.id).where(col(Team.allow_shared_runners).is_(False))
    return col(Run.team_id).not_in(denying)


class SharedRunnersVerdict(Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    NO_SUCH_TEAM = "no_such_team"


@dataclass(frozen=True)
class SharedRunnersSetting:
    verdict: SharedRunnersVerdict
    team: Team | None


def set_allow_shared_runners(session: Session, slug: str, allow: bool) -> SharedRunnersSetting:
    """One conditional UPDATE: the verdict says whether the flag changed."""
    result = session.execute(
        update(Team)
        .where(col(Team.slug) == slug, col(Team.allow_shared_runners).is_not(allow))
        .values(allow_shared_runners=allow)
        .execution_options(synchronize_session=False)
    )
    team = session.exec(select(Team).where(Team.slug == slug)).first()
    if team is None:
        return SharedRunnersSetting(SharedRunnersVerdict.NO_SUCH_TEAM, None)
    session.refresh(team)
    changed = int(result.rowcount) > 0  # type: ignore[attr-defined]
    verdict = SharedRunnersVerdict.CHANGED if changed else SharedRunnersVerdict.UNCHANGED
    return SharedRunnersSetting(verdict, team)
