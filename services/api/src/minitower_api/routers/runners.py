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
from minitower_api.errors import responses
from minitower_api.views import runner_public
from minitower_shared.clock import utcnow
from minitower_shared.schemas import RunnerList, RunnerRegister, RunnerRegistered
from minitower_shared.store import runners as runner_store
from minitower_shared.tokens import RUNNER_TOKEN_PREFIX, hash_token, new_token

router = APIRouter(prefix="/api/v1", tags=["runners"])


@router.post(
    "/runners/register",
    status_code=201,
    response_model=RunnerRegistered,
    responses={
        **responses(403),
        200: {"model": RunnerRegistered, "description": "the name was registered: a new token"},
    },
)
def register_runner(
    body: RunnerRegister, services: ServicesDep, credentials: BearerDep, response: Response
) -> RunnerRegistered:
    """Register a runner. The same name again answers 200 with a new token; the old
    token stops working at once."""
    require_operator_secret(
        credentials,
        services.settings.runner_registration_token,
        "MINITOWER_RUNNER_REGISTRATION_TOKEN",
    )
    token = new_token(RUNNER_TOKEN_PREFIX)
    with services.write() as session:
        runner, created = runner_store.register_runner(
            session,
            name=body.name,
            environment=body.environment,
            labels=dict(body.labels),
            token_hash=hash_token(token),
            now=utcnow(),
        )
    if not created:
        response.status_code = 200
    assert runner.id is not None
    return RunnerRegistered(
        runner_id=runner.id, name=runner.name, environment=runner.environment, token=token
    )


@router.get("/admin/runners", response_model=RunnerList, responses=responses(403))
def list_runners(admin: AdminDep, services: ServicesDep, page: PageDep) -> RunnerList:
    """Every registered runner with its liveness (admins only). Runners serve every
    team; ``current_run_id`` is shown only when the run is the caller's team's."""
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
