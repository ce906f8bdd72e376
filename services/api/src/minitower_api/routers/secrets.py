"""A team's secrets per environment, and their delivery to a run's runner.

Values are encrypted at rest (minitower_shared.secret_box) and leave the API only through
``GET /api/v1/runs/{run_id}/secrets``, to the runner holding that run's live lease: the
team's routes show names and who set them, never a value, not even to admins. Nothing
here logs or echoes a value (SecretValue's errors do not quote it)."""

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from minitower_api.deps import (
    AdminDep,
    CallerDep,
    LeaseTokenDep,
    RunId,
    RunnerTokenDep,
    ServicesDep,
)
from minitower_api.errors import HttpProblem, invalid, not_found, responses
from minitower_api.routers.leases import lease_key, live_attempt
from minitower_shared.clock import utcnow
from minitower_shared.models import Run, Secret
from minitower_shared.schemas import (
    ENVIRONMENT_PATTERN,
    RunSecrets,
    SecretList,
    SecretPublic,
    SecretValue,
)
from minitower_shared.secret_box import (
    NOT_CONFIGURED,
    SECRET_NAME_PATTERN,
    SecretBox,
    SecretRef,
    UndecryptableSecret,
    secret_name_problem,
)
from minitower_shared.store import audit
from minitower_shared.store import secrets as secret_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditObject

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])
delivery = APIRouter(prefix="/api/v1/runs", tags=["runner"])
log = logging.getLogger("minitower.api")

SecretName = Annotated[
    str,
    Path(
        pattern=SECRET_NAME_PATTERN,
        description="1-64 of A-Z 0-9 _, not starting with a digit nor with MINITOWER_",
    ),
]
EnvironmentQuery = Annotated[
    str, Query(pattern=ENVIRONMENT_PATTERN, description="The environment (default: default)")
]
_NO_STORE = {"Cache-Control": "no-store"}


def secret_public(secret: Secret, token_name: str | None) -> SecretPublic:
    return SecretPublic(
        name=secret.name,
        environment=secret.environment,
        set_by_token_id=secret.set_by_token_id,
        set_by_token_name=token_name,
        created_at=secret.created_at,
        updated_at=secret.updated_at,
    )


def _checked_name(name: str) -> str:
    problem = secret_name_problem(name)
    if problem is not None:
        raise invalid(problem)
    return name


def _box(services: ServicesDep) -> SecretBox:
    box = services.settings.secret_box()
    if box is None:
        raise HttpProblem(409, "secrets_not_configured", NOT_CONFIGURED)
    return box


@router.get("", response_model=SecretList, responses=responses())
def list_secrets(
    caller: CallerDep,
    services: ServicesDep,
    environment: Annotated[
        str | None,
        Query(pattern=ENVIRONMENT_PATTERN, description="Only this environment's secrets"),
    ] = None,
) -> SecretList:
    """Names, environments and who last set each secret; never a value."""
    with services.read() as session:
        rows = secret_store.list_secrets(session, caller.team_id, environment)
    return SecretList(secrets=[secret_public(r.secret, r.set_by_token_name) for r in rows])


@router.put(
    "/{name}",
    response_model=SecretPublic,
    status_code=200,
    responses={
        **responses(403, 409),
        201: {"model": SecretPublic, "description": "created (200: an existing one replaced)"},
    },
)
def put_secret(
    name: SecretName,
    body: SecretValue,
    caller: AdminDep,
    services: ServicesDep,
    response: Response,
    environment: EnvironmentQuery = "default",
) -> SecretPublic:
    """Admin tokens only. Create (201) or replace (200) the secret ``name`` of
    ``environment``. 409 ``secrets_not_configured`` while the server has no
    MINITOWER_SECRETS_KEY."""
    box = _box(services)
    ref = SecretRef(caller.team_id, environment, _checked_name(name))
    ciphertext = box.encrypt(ref, body.value)
    with services.write() as session:
        team_store.get_or_create_environment(session, caller.team_id, environment)
        secret, created = secret_store.put_secret(
            session,
            team_id=caller.team_id,
            environment=environment,
            name=name,
            ciphertext=ciphertext,
            token_id=caller.token.id,
            now=utcnow(),
        )
        # The name and the environment, never the value (nor its length).
        audit.record(
            session,
            caller.actor,
            "secret.set",
            AuditObject("secret", f"{environment}/{name}"),
            {"name": name, "environment": environment, "created": created},
        )
    response.status_code = 201 if created else 200
    return secret_public(secret, caller.token.name)


@router.delete("/{name}", status_code=204, responses=responses(403))
def delete_secret(
    name: SecretName,
    caller: AdminDep,
    services: ServicesDep,
    environment: EnvironmentQuery = "default",
) -> Response:
    """Admin tokens only. Runs that already fetched it keep their copy."""
    with services.write() as session:
        if not secret_store.delete_secret(session, caller.team_id, environment, name):
            raise not_found(f"no secret {name} in environment {environment!r}")
        audit.record(
            session,
            caller.actor,
            "secret.delete",
            AuditObject("secret", f"{environment}/{name}"),
            {"name": name, "environment": environment},
        )
    return Response(status_code=204)


@delivery.get(
    "/{run_id}/secrets",
    response_model=RunSecrets,
    responses={
        **responses(410),
        200: {
            "description": "the run's declared secrets; never cached",
            "headers": {"Cache-Control": {"schema": {"type": "string"}, "description": "no-store"}},
        },
    },
)
def run_secrets(
    run_id: RunId,
    runner_token: RunnerTokenDep,
    lease: LeaseTokenDep,
    services: ServicesDep,
    response: Response,
) -> RunSecrets:
    """For the runner holding the run's live lease (410 otherwise, like the other lease
    routes): the secrets the run's version declares (Towerfile ``[app] secrets``), from
    the run's team and environment. Names the environment lacks are in ``missing``; the
    runner fails the run naming them."""
    response.headers.update(_NO_STORE)
    with services.read() as session:
        live_attempt(session, lease_key(session, runner_token, run_id, lease), utcnow())
        run = session.get(Run, run_id)
        assert run is not None
        names = secret_store.declared_names(session, run.app_version_id)
        rows = secret_store.secrets_named(session, run.team_id, run.environment, names)
    box = services.settings.secret_box()
    values: dict[str, str] = {}
    for row in rows:
        if box is None:
            break
        try:
            values[row.name] = box.decrypt(
                SecretRef(run.team_id, run.environment, row.name), row.ciphertext
            )
        except UndecryptableSecret as exc:
            # Counted as missing: the run fails naming it, and the operator sees why here.
            log.error("secret not delivered", extra={"run_id": run_id, "error": str(exc)})
    return RunSecrets(
        environment=run.environment,
        secrets=values,
        missing=[name for name in names if name not in values],
    )
