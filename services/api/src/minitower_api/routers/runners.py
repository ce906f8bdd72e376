"""Runner registration (registration token) and the admins' view of runners."""

from fastapi import APIRouter, Response

from minitower_api.deps import (
    AdminDep,
    BearerDep,
    PageDep,
    ServicesDep,
    paged,
    require_operator_secret,
)
from minitower_api.errors import conflict, responses, unauthorized
from minitower_api.views import runner_public
from minitower_shared.clock import utcnow
from minitower_shared.schemas import RunnerList, RunnerRegister, RunnerRegistered
from minitower_shared.store import audit
from minitower_shared.store import runner_registration as registration_store
from minitower_shared.store import runners as runner_store
from minitower_shared.store.audit import AuditActor, AuditObject
from minitower_shared.tokens import (
    RUNNER_REGISTRATION_TOKEN_PREFIX,
    RUNNER_TOKEN_PREFIX,
    hash_token,
    new_token,
)

router = APIRouter(prefix="/api/v1", tags=["runners"])


@router.post(
    "/runners/register",
    status_code=201,
    response_model=RunnerRegistered,
    responses={
        **responses(403, 409),
        200: {"model": RunnerRegistered, "description": "registered again: a new token"},
    },
)
def register_runner(
    body: RunnerRegister, services: ServicesDep, credentials: BearerDep, response: Response
) -> RunnerRegistered:
    """Register a runner, with the operator's MINITOWER_RUNNER_REGISTRATION_TOKEN (a
    shared runner) or a team's runner registration token (a runner bound to that team).
    The same name again answers 200 with a new token; the old token stops working at
    once. A name registered with another binding (shared, or another team's) is 409."""
    given = credentials.credentials if credentials is not None else ""
    now = utcnow()
    token = new_token(RUNNER_TOKEN_PREFIX)
    by_team = given.startswith(RUNNER_REGISTRATION_TOKEN_PREFIX)
    if not by_team:
        require_operator_secret(
            credentials,
            services.settings.runner_registration_token,
            "MINITOWER_RUNNER_REGISTRATION_TOKEN",
        )
    with services.write() as session:
        team_id: int | None = None
        actor = audit.OPERATOR_ACTOR
        if by_team:
            registration = registration_store.find_active_registration_token(
                session, hash_token(given)
            )
            if registration is None:
                raise unauthorized("invalid or revoked runner registration token")
            team_id = registration.team_id
            registration_store.record_use(session, registration, now)
            actor = AuditActor(
                kind=audit.REGISTRATION_TOKEN,
                team_id=team_id,
                token_id=registration.id,
                name=registration.name,
            )
        if runner_store.bound_elsewhere(session, name=body.name, team_id=team_id) is not None:
            raise conflict(
                f"runner name {body.name!r} is registered with another binding "
                "(shared or another team's); choose another name",
                code="name_taken",
            )
        runner, created = runner_store.register_runner(
            session,
            name=body.name,
            environment=body.environment,
            labels=dict(body.labels),
            token_hash=hash_token(token),
            now=now,
            team_id=team_id,
        )
        assert runner.id is not None
        audit.record(
            session,
            actor,
            "runner.register",
            AuditObject("runner", runner.id),
            {"name": runner.name, "environment": runner.environment, "again": not created},
        )
    if not created:
        response.status_code = 200
    assert runner.id is not None
    return RunnerRegistered(
        runner_id=runner.id,
        name=runner.name,
        environment=runner.environment,
        token=token,
        team_id=runner.team_id,
    )


@router.get("/admin/runners", response_model=RunnerList, responses=responses(403))
def list_runners(admin: AdminDep, services: ServicesDep, page: PageDep) -> RunnerList:
    """The shared runners and the team's own, with their liveness (admins only);
    ``current_run_id`` is shown only when the run is the caller's team's."""
    with services.read() as session:
        rows = runner_store.list_runners_with_current_run(
            session,
            team_id=admin.team_id,
            after_id=page.cursor or 0,
            limit=page.limit + 1,
            offset=page.offset,
        )
    rows, next_cursor = paged(rows, page, lambda row: row[0].id)
    return RunnerList(
        runners=[runner_public(r, run_id) for r, run_id in rows], next_cursor=next_cursor
    )
