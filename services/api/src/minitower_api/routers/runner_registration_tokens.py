"""A team's runner registration tokens: team admins mint, list and revoke them. A runner
registered with one is bound to the team and is handed only the team's runs."""

from typing import Annotated

from fastapi import APIRouter, Path

from minitower_api.deps import AdminDep, PageDep, ServicesDep, paged
from minitower_api.errors import not_found, responses
from minitower_api.views import registration_token_public
from minitower_shared.clock import utcnow
from minitower_shared.schemas import (
    MAX_INT64,
    RunnerRegistrationTokenCreate,
    RunnerRegistrationTokenCreated,
    RunnerRegistrationTokenList,
    RunnerRegistrationTokenPublic,
)
from minitower_shared.store import audit
from minitower_shared.store import runner_registration as registration_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.tokens import RUNNER_REGISTRATION_TOKEN_PREFIX, hash_token, new_token

router = APIRouter(prefix="/api/v1/runner-registration-tokens", tags=["runners"])

RegistrationTokenId = Annotated[
    int, Path(ge=1, le=MAX_INT64, description="The registration token's id")
]


@router.post(
    "",
    status_code=201,
    response_model=RunnerRegistrationTokenCreated,
    responses=responses(403),
)
def create_registration_token(
    admin: AdminDep, services: ServicesDep, body: RunnerRegistrationTokenCreate | None = None
) -> RunnerRegistrationTokenCreated:
    """Mint a registration token for runners bound to the caller's team (admins only).
    The secret is shown only in this answer and stored only as its hash."""
    body = body or RunnerRegistrationTokenCreate()
    token = new_token(RUNNER_REGISTRATION_TOKEN_PREFIX)
    with services.write() as session:
        record = registration_store.create_registration_token(
            session,
            team_id=admin.team_id,
            name=body.name,
            token_hash=hash_token(token),
            now=utcnow(),
        )
        assert record.id is not None
        audit.record(
            session,
            admin.actor,
            "runner_registration_token.create",
            AuditObject("runner_registration_token", record.id),
            {"name": record.name},
        )
    return RunnerRegistrationTokenCreated(
        registration_token_id=record.id,
        name=record.name,
        token=token,
        created_at=record.created_at,
    )


@router.get("", response_model=RunnerRegistrationTokenList, responses=responses(403))
def list_registration_tokens(
    admin: AdminDep, services: ServicesDep, page: PageDep
) -> RunnerRegistrationTokenList:
    """The team's registration tokens, revoked ones included; never their secrets."""
    with services.read() as session:
        tokens = registration_store.list_registration_tokens(
            session,
            admin.team_id,
            after_id=page.cursor or 0,
            limit=page.limit + 1,
            offset=page.offset,
        )
    tokens, next_cursor = paged(tokens, page, lambda token: token.id)
    return RunnerRegistrationTokenList(
        registration_tokens=[registration_token_public(t) for t in tokens],
        next_cursor=next_cursor,
    )


@router.delete(
    "/{registration_token_id}",
    response_model=RunnerRegistrationTokenPublic,
    responses=responses(403),
)
def revoke_registration_token(
    registration_token_id: RegistrationTokenId, admin: AdminDep, services: ServicesDep
) -> RunnerRegistrationTokenPublic:
    """Revoke a registration token at once: no runner registers with it any more.
    Runners already registered keep their own tokens. Another team's token is 404."""
    with services.write() as session:
        token = registration_store.get_registration_token(
            session, admin.team_id, registration_token_id
        )
        if token is None:
            raise not_found(f"registration token {registration_token_id} not found")
        already = token.revoked_at is not None
        token = registration_store.revoke_registration_token(session, token, utcnow())
        if not already:  # revoking again changes nothing
            audit.record(
                session,
                admin.actor,
                "runner_registration_token.revoke",
                AuditObject("runner_registration_token", registration_token_id),
            )
    return registration_token_public(token)
