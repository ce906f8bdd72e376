"""Request dependencies: the database, the caller's identity, pagination."""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from minitower_api.errors import forbidden, invalid, unauthorized
from minitower_api.follow_watch import FollowWatch
from minitower_api.login_attempts import LoginAttempts
from minitower_api.longpoll import QueueSignal
from minitower_api.metrics import Metrics
from minitower_api.objects import ObjectStore, Spool
from minitower_api.run_signals import RunSignals
from minitower_api.settings import ApiSettings
from minitower_api.storage_errors import sqlite_condition
from minitower_api.stream_slots import StreamSlots
from minitower_shared.clock import utcnow
from minitower_shared.db import read_session, write_session
from minitower_shared.schemas import MAX_INT64
from minitower_shared.states import TokenRole
from minitower_shared.store import audit as audit_store
from minitower_shared.store import runners as runner_store
from minitower_shared.store import teams as team_store
from minitower_shared.store.audit import AuditActor
from minitower_shared.store.runners import RunnerIdentity
from minitower_shared.store.teams import TeamIdentity, TokenIdentity
from minitower_shared.tokens import hash_token, same_secret

log = logging.getLogger("minitower.api")


@dataclass
class Services:
    """Everything a request handler needs, built once per process in ``create_app``."""

    settings: ApiSettings
    engine: Engine
    spool: Spool
    objects: ObjectStore
    signal: QueueSignal
    metrics: Metrics
    run_signals: RunSignals
    follow_watch: FollowWatch
    long_polls: StreamSlots
    followers: StreamSlots
    login_attempts: LoginAttempts
    # When this process started (monotonic): /ready allows a reaper this long to appear.
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def write(self) -> Iterator[Session]:
        with write_session(self.engine) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with read_session(self.engine) as session:
            yield session


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# the threadpool, and each such hop costs more than the work itself.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="A team token (mtk_…) or runner token (mtr_…)")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise unauthorized("missing bearer token: send Authorization: Bearer <token>")
    return credentials.credentials


@dataclass(frozen=True)
class Caller:
    team: TeamIdentity
    token: TokenIdentity
    # How the token was presented: as a bearer token, or by a console session acting as
    # it (console/session.py). The audit log tells the two apart.
    via: str = audit_store.TOKEN

    @property
    def team_id(self) -> int:
        return self.team.id

    @property
    def is_admin(self) -> bool:
        return self.token.role == TokenRole.ADMIN

    @property
    def actor(self) -> AuditActor:
        """Who the audit log says made the caller's changes."""
        return AuditActor(
            kind=self.via, team_id=self.team_id, token_id=self.token.id, name=self.token.name
        )


def current_caller(services: ServicesDep, credentials: BearerDep) -> Caller:
    token_hash = hash_token(bearer_token(credentials))
    with services.read() as session:
        found = team_store.find_credential(session, token_hash)
    if found is None:
        raise unauthorized("invalid or revoked team token")
    token = found.token
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= team_store.LAST_USED_RESOLUTION:
        try:
            with services.write() as session:
                team_store.touch_token(session, token, now)
        except OperationalError as exc:
            # Bookkeeping only: a read must not fail because the write lock is held
            # (a long backup, a stuck writer); a later request records the use.
            if sqlite_condition(exc) is None:
                raise
            log.warning("token use not recorded: database busy or full")
    return Caller(team=found.team, token=token)


CallerDep = Annotated[Caller, Depends(current_caller)]


async def current_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise forbidden("this needs an admin token")
    return caller


AdminDep = Annotated[Caller, Depends(current_admin)]


async def runner_token_hash(credentials: BearerDep) -> str:
    return hash_token(bearer_token(credentials))


# Runner calls are the hot path: the runner is looked up inside the route's own
# transaction (``require_runner``) rather than in one of its own.
RunnerTokenDep = Annotated[str, Depends(runner_token_hash)]


def require_runner(
    session: Session, token_hash: str, *, lock: bool = False, lock_run: int | None = None
) -> RunnerIdentity:
    runner = runner_store.find_runner_by_token(session, token_hash, lock=lock, lock_run=lock_run)
    if runner is None:
        raise unauthorized("invalid runner token; register again")
    return runner


async def lease_token_hash(
    x_lease_token: Annotated[
        str, Header(min_length=1, description="The lease token the lease call returned")
    ],
) -> str:
    return hash_token(x_lease_token)


LeaseTokenDep = Annotated[str, Depends(lease_token_hash)]


# Ids in paths are bounded like the database's integers: a larger number cannot name
# anything, and SQLite refuses to even compare with it.
RunId = Annotated[int, Path(ge=1, le=MAX_INT64, description="The run's id")]
TokenId = Annotated[int, Path(ge=1, le=MAX_INT64, description="The token's id")]
VersionNo = Annotated[int, Path(ge=1, le=MAX_INT64, description="The version's number")]


CURSOR_PATTERN = "^[0-9]{1,18}$"


def parse_cursor(cursor: str | None) -> int | None:
    """A ``next_cursor`` this API returned: a decimal integer in the database's range."""
    if cursor is None:
        return None
    # str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > MAX_INT64:
        raise invalid("cursor: not a cursor this API returned")
    return int(cursor)


@dataclass(frozen=True)
class Page:
    limit: int
    cursor: int | None
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Page size")] = 50,
    cursor: Annotated[
        str | None,
        Query(
            description="The next_cursor of the previous page",
            # Documented narrower than checked (any id up to 2**63-1): a cursor is an id.
            json_schema_extra={"pattern": CURSOR_PATTERN},
        ),
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_INT64, description="Rows to skip (instead of a cursor)")
    ] = 0,
) -> Page:
    return Page(limit=limit, cursor=parse_cursor(cursor), offset=offset)


PageDep = Annotated[Page, Depends(page_params)]
Row = TypeVar("Row")


def paged(
    rows: list[Row], page: Page, cursor_of: Callable[[Row], object]
) -> tuple[list[Row], str | None]:
    """Cut the ``page.limit + 1`` rows a store function returned to one page, and the
    cursor that continues after it (None on the last page)."""
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    return rows, str(cursor_of(rows[-1]))


def require_operator_secret(given: BearerDep, configured: SecretStr | None, name: str) -> None:
    """Check a request against an operator secret from the environment variable ``name``;
    an unset secret disables what it guards."""
    if configured is None:
        raise forbidden(f"disabled on this server: {name} is not set")
    if not same_secret(bearer_token(given), configured.get_secret_value()):
        raise unauthorized(f"invalid token: this needs {name}")
