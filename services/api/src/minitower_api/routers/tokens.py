"""The caller's identity and the team's API tokens."""

from fastapi import APIRouter

from minitower_api.deps import CallerDep, PageDep, ServicesDep, TokenId, paged
from minitower_api.errors import forbidden, not_found, responses
from minitower_api.views import token_public
from minitower_shared.clock import utcnow
from minitower_shared.schemas import Me, TokenCreate, TokenCreated, TokenList, TokenPublic
from minitower_shared.states import TokenRole
from minitower_shared.store import audit
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject
from minitower_shared.tokens import TEAM_TOKEN_PREFIX, hash_token, new_token

router = APIRouter(prefix="/api/v1", tags=["tokens"])


@router.get("/me", response_model=Me, responses=responses())
def me(caller: CallerDep) -> Me:
    assert caller.token.id is not None
    return Me(
        team_id=caller.team_id,
        team_slug=caller.team.slug,
        token_id=caller.token.id,
        role=caller.token.role,
        allow_shared_runners=caller.team.allow_shared_runners,
    )


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=responses(403))
def create_token(
    caller: CallerDep, services: ServicesDep, body: TokenCreate | None = None
) -> TokenCreated:
    """Mint a team token; the secret is shown only in this answer. Only admins mint admins.
    No body at all mints an unnamed member token."""
    body = body or TokenCreate()
    role = TokenRole(body.role)
    if role == TokenRole.ADMIN and not caller.is_admin:
        raise forbidden("only an admin token can create admin tokens")
    token = new_token(TEAM_TOKEN_PREFIX)
    with services.write() as session:
        record = team_store.create_token(
            session, team_id=caller.team_id, token_hash=hash_token(token), role=role, name=body.name
        )
        assert record.id is not None
        audit.record(
            session,
            caller.actor,
            "token.create",
            AuditObject("token", record.id),
            {"role": record.role, "name": record.name},
        )
    assert record.id is not None
    return TokenCreated(token_id=record.id, token=token, name=record.name, role=record.role)


@router.get("/tokens", response_model=TokenList, responses=responses())
def list_tokens(caller: CallerDep, services: ServicesDep, page: PageDep) -> TokenList:
    """The team's tokens, revoked ones included; never their secrets."""
    with services.read() as session:
        tokens = team_store.list_tokens(
            session,
            caller.team_id,
            after_id=page.cursor or 0,
            limit=page.limit + 1,
            offset=page.offset,
        )
    tokens, next_cursor = paged(tokens, page, lambda token: token.id)
    return TokenList(
        tokens=[token_public(t) for t in tokens],
        next_cursor=next_cursor,
    )


@router.delete("/tokens/{token_id}", response_model=TokenPublic, responses=responses(403))
def revoke_token(token_id: TokenId, caller: CallerDep, services: ServicesDep) -> TokenPublic:
    """Revoke a token at once. Members may revoke member tokens only."""
    with services.write() as session:
        token = team_store.get_token(session, caller.team_id, token_id)
        if token is None:
            raise not_found(f"token {token_id} not found")
        if token.role == TokenRole.ADMIN and not caller.is_admin:
            raise forbidden("only an admin token can revoke admin tokens")
        already = token.revoked_at is not None
        token = team_store.revoke_token(session, token, utcnow())
        if not already:  # revoking again changes nothing
            audit.record(session, caller.actor, "token.revoke", AuditObject("token", token_id))
    return token_public(token)
