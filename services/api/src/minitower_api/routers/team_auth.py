"""Team sign-in without a token: public signup (when enabled), password login, and the
public list of sign-in ways. The reference MiniTower's routes, with its shapes."""

from fastapi import APIRouter, Request

from minitower_api.deps import Services, ServicesDep
from minitower_api.errors import HttpProblem, conflict, forbidden, invalid, responses
from minitower_api.passwords import hash_password, verify_password
from minitower_shared.models import Team
from minitower_shared.schemas import AuthOptions, LoginResult, TeamLogin, TeamSignup
from minitower_shared.states import TokenRole
from minitower_shared.store import audit
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditActor, AuditObject
from minitower_shared.tokens import TEAM_TOKEN_PREFIX, hash_token, new_token

router = APIRouter(prefix="/api/v1", tags=["teams"])

BAD_CREDENTIALS = "invalid slug or password"


def check_password_length(services: Services, password: str) -> None:
    minimum = services.settings.min_password_length
    if len(password) < minimum:
        raise invalid(
            f"password: must be at least {minimum} characters (MINITOWER_MIN_PASSWORD_LENGTH)"
        )


def client_address(request: Request) -> str:
    # Behind a proxy that uvicorn trusts (FORWARDED_ALLOW_IPS), this is the client's
    # address from X-Forwarded-For; otherwise the peer's.
    return request.client.host if request.client else "unknown"


def authenticate_team(services: Services, slug: str, password: str, address: str) -> Team:
    """The team whose password this is, or 401 (the same answer for an unknown slug, a
    team without a password and a wrong password), or 429 once the slug or the address
    has failed too often."""
    attempts = services.login_attempts
    with services.read() as session:
        throttled = attempts.check(session, slug, address)
        if throttled is not None:
            raise HttpProblem(
                429,
                "rate_limited",
                f"{throttled.reason}: try again in {throttled.retry_after_seconds} s",
                headers={"Retry-After": str(throttled.retry_after_seconds)},
            )
        team = team_store.get_team_by_slug(session, slug)
    stored = team.password_hash if team is not None else None
    if not verify_password(password, stored) or team is None:
        with services.write() as session:
            attempts.failed(session, slug, address)
        raise HttpProblem(401, "unauthorized", BAD_CREDENTIALS)
    with services.write() as session:
        attempts.succeeded(session, slug)
    return team


def issue_admin_token(services: Services, team_id: int, name: str) -> tuple[str, int]:
    """A fresh admin token of the team (a password is the team's own credential, as
    the bootstrap token is the operator's): the secret and its id. The audit log records
    the sign-in as ``team.login`` by the password, naming the token."""
    token = new_token(TEAM_TOKEN_PREFIX)
    with services.write() as session:
        record = team_store.create_token(
            session, team_id=team_id, token_hash=hash_token(token), role=TokenRole.ADMIN, name=name
        )
        assert record.id is not None
        audit.record(
            session,
            AuditActor(kind=audit.PASSWORD, team_id=team_id, name=name),
            "team.login",
            AuditObject("token", record.id),
        )
    return token, record.id


@router.get("/auth/options", response_model=AuthOptions, responses=responses())
def auth_options(services: ServicesDep) -> AuthOptions:
    """Which sign-in ways this server offers (no token needed)."""
    settings = services.settings
    return AuthOptions(
        signup_enabled=settings.public_signup_enabled,
        bootstrap_enabled=settings.bootstrap_token is not None,
        min_password_length=settings.min_password_length,
    )


@router.post(
    "/teams/signup", status_code=201, response_model=LoginResult, responses=responses(403, 409)
)
def signup(body: TeamSignup, services: ServicesDep) -> LoginResult:
    """Create a team with a password and get its first admin token. Only when
    MINITOWER_PUBLIC_SIGNUP_ENABLED=true (403 otherwise)."""
    if not services.settings.public_signup_enabled:
        raise forbidden("team signup is disabled: MINITOWER_PUBLIC_SIGNUP_ENABLED is not true")
    check_password_length(services, body.password)
    # Hashed before the write lock is taken: it costs tens of milliseconds.
    password_hash = hash_password(body.password)
    token = new_token(TEAM_TOKEN_PREFIX)
    with services.write() as session:
        if team_store.get_team_by_slug(session, body.slug) is not None:
            raise conflict(f"a team named {body.slug!r} already exists", code="slug_taken")
        team = team_store.create_team(session, slug=body.slug, name=body.name)
        assert team.id is not None
        team_store.set_team_password(session, team.id, password_hash)
        team_store.get_or_create_environment(session, team.id, "default")
        record = team_store.create_token(
            session,
            team_id=team.id,
            token_hash=hash_token(token),
            role=TokenRole.ADMIN,
            name="signup",
        )
        assert record.id is not None
        audit.record(
            session,
            AuditActor(kind=audit.PASSWORD, team_id=team.id, name="signup"),
            "team.signup",
            AuditObject("team", team.id),
            {"slug": team.slug, "token_id": record.id},
        )
    assert record.id is not None
    return LoginResult(
        team_id=team.id, slug=team.slug, token=token, token_id=record.id, role=record.role
    )


@router.post(
    "/teams/login",
    status_code=201,
    response_model=LoginResult,
    responses={
        **responses(),
        429: {"description": "rate_limited: too many failed sign-ins; see Retry-After"},
    },
)
def login(body: TeamLogin, services: ServicesDep, request: Request) -> LoginResult:
    """Sign in with the team's slug and password: a fresh admin token. An unknown slug
    and a wrong password get the same 401; failures are rate-limited per slug and per
    client address (MINITOWER_LOGIN_ATTEMPTS_PER_SLUG/_PER_ADDRESS)."""
    team = authenticate_team(services, body.slug, body.password, client_address(request))
    assert team.id is not None
    token, token_id = issue_admin_token(services, team.id, "login")
    return LoginResult(
        team_id=team.id, slug=team.slug, token=token, token_id=token_id, role="admin"
    )
