"""Operator endpoint: create a team (or get back into one) with the bootstrap token."""

from fastapi import APIRouter, Response

from minitower_api.deps import BearerDep, ServicesDep, require_operator_secret
from minitower_api.errors import responses
from minitower_api.passwords import hash_password
from minitower_api.routers.team_auth import check_password_length
from minitower_shared.schemas import BootstrapResult, BootstrapTeam
from minitower_shared.states import TokenRole
from minitower_shared.store import audit
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.tokens import TEAM_TOKEN_PREFIX, hash_token, new_token

router = APIRouter(prefix="/api/v1/bootstrap", tags=["operations"])


@router.post(
    "/team",
    status_code=201,
    response_model=BootstrapResult,
    responses={
        **responses(403),
        200: {"model": BootstrapResult, "description": "the team existed: a fresh admin token"},
    },
)
def bootstrap_team(
    body: BootstrapTeam, services: ServicesDep, credentials: BearerDep, response: Response
) -> BootstrapResult:
    """Create a team and its first admin token. The same slug again answers 200 with a
    fresh admin token: the operator's way back in. A ``password`` sets (or resets) the
    team's sign-in password (POST /api/v1/teams/login, the console)."""
    require_operator_secret(
        credentials, services.settings.bootstrap_token, "MINITOWER_BOOTSTRAP_TOKEN"
    )
    password_hash = None
    if body.password is not None:
        check_password_length(services, body.password)
        password_hash = hash_password(body.password)
    token = new_token(TEAM_TOKEN_PREFIX)
    with services.write() as session:
        team = team_store.get_team_by_slug(session, body.slug)
        created = team is None
        if team is None:
            team = team_store.create_team(session, slug=body.slug, name=body.name)
            assert team.id is not None
            team_store.get_or_create_environment(session, team.id, "default")
        else:
            response.status_code = 200
        assert team.id is not None
        if password_hash is not None:
            team_store.set_team_password(session, team.id, password_hash)
        record = team_store.create_token(
            session,
            team_id=team.id,
            token_hash=hash_token(token),
            role=TokenRole.ADMIN,
            name="bootstrap",
        )
        audit.record(
            session,
            audit.OPERATOR_ACTOR,
            "team.bootstrap",
            AuditObject("team", team.id),
            {
                "slug": team.slug,
                "created": created,
                "token_id": record.id,
                "password_set": password_hash is not None,
            },
            team_id=team.id,
        )
    return BootstrapResult(team_id=team.id, slug=team.slug, token=token, role="admin")
