"""A team's environments and their concurrency limits.

An environment's settings live on the team's ``environment`` row, which a run names from
its creation: the limit covers the team's runs there, not other teams' runs that share
the environment's runners."""

from typing import Annotated

from fastapi import APIRouter, Path

from minitower_api.deps import AdminDep, CallerDep, ServicesDep
from minitower_api.errors import responses
from minitower_api.views import environment_public
from minitower_shared.schemas import (
    ENVIRONMENT_PATTERN,
    EnvironmentList,
    EnvironmentPublic,
    EnvironmentUpdate,
)
from minitower_shared.store import audit
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject

router = APIRouter(prefix="/api/v1/environments", tags=["environments"])

EnvironmentName = Annotated[str, Path(pattern=ENVIRONMENT_PATTERN)]


@router.get("", response_model=EnvironmentList, responses=responses())
def list_environments(caller: CallerDep, services: ServicesDep) -> EnvironmentList:
    """The environments the team's runs have used (or that an admin configured)."""
    with services.read() as session:
        rows = team_store.list_environments(session, caller.team_id)
    return EnvironmentList(environments=[environment_public(e) for e in rows])


@router.patch("/{name}", response_model=EnvironmentPublic, responses=responses(403))
def update_environment(
    name: EnvironmentName, body: EnvironmentUpdate, caller: AdminDep, services: ServicesDep
) -> EnvironmentPublic:
    """Admin tokens only. ``max_concurrent_runs`` caps how many of the team's runs in the
    environment are leased at once (null lifts the cap); the environment is created if
    the team has not used it yet."""
    with services.write() as session:
        environment = team_store.get_or_create_environment(session, caller.team_id, name)
        environment = team_store.set_environment_limit(
            session, environment, body.max_concurrent_runs
        )
        audit.record(
            session,
            caller.actor,
            "environment.update",
            AuditObject("environment", name),
            {"max_concurrent_runs": body.max_concurrent_runs},
        )
        return environment_public(environment)
