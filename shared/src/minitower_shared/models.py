"""The database schema: one SQLModel table per entity of the seed's data model.

Invariants that must never be broken live in the schema itself (unique and partial
unique indexes), so that a bug in a store function fails loudly instead of corrupting
history.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Integer, LargeBinary, UniqueConstraint, text, true
from sqlmodel import Field, SQLModel, col

from minitower_shared.clock import utcnow
from minitower_shared.dialect import INT64, partial_where
from minitower_shared.states import ACTIVE_ATTEMPT_STATUSES, AttemptStatus

# Spelled with literal values, in one fixed order: SQLite uses a partial index only for a
# query whose WHERE clause repeats the index's condition, and a bound parameter
# (``status IN (?, ?, ?)``) never does. Queries use ``active_attempt()`` below.
ACTIVE_ATTEMPT_CONDITION = "status IN ({})".format(
    ", ".join(f"'{s.value}'" for s in AttemptStatus if s in ACTIVE_ATTEMPT_STATUSES)
)
_ACTIVE_ATTEMPT = partial_where(ACTIVE_ATTEMPT_CONDITION)
LIVE_RUN_CONDITION = "status IN ('leased', 'running', 'cancelling')"
_LIVE_RUN = partial_where(LIVE_RUN_CONDITION)
# PostgreSQL spells a boolean test as the column itself (see dialect.partial_where).
_DELAYED_RUN = partial_where(
    "status = 'queued' AND delayed = 1", postgresql_condition="status = 'queued' AND delayed"
)


class Team(SQLModel, table=True):
    __tablename__ = "team"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=32)
    name: str = Field(max_length=200)
    # Whether the team's runs may go to shared runners (registered with the operator's
    # token), or only to runners bound to the team. An operator's switch
    # (``minitowerd team-shared-runners``).
    allow_shared_runners: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    # scrypt of the team's console/login password (passwords.py); None: no password
    # sign-in for this team, only tokens.
    password_hash: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class TeamToken(SQLModel, table=True):
    __tablename__ = "team_token"

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True)
    name: str = Field(default="", max_length=200)
    role: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Environment(SQLModel, table=True):
    __tablename__ = "environment"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    name: str = Field(max_length=64)
    # Runs of this team's environment that may be leased at once; None = no limit.
    max_concurrent_runs: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class App(SQLModel, table=True):
    __tablename__ = "app"
    __table_args__ = (UniqueConstraint("team_id", "slug"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    slug: str = Field(max_length=32)
    description: str = Field(default="", max_length=2000)
    disabled: bool = False
    # Runs of this app that may be leased at once; None = no limit.
    max_concurrent_runs: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AppVersion(SQLModel, table=True):
    __tablename__ = "app_version"
    __table_args__ = (UniqueConstraint("app_id", "version_no"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="app.id")
    version_no: int
    artifact_object_key: str = Field(max_length=200, index=True)
    artifact_sha256: str = Field(max_length=64)
    artifact_size: int
    entrypoint: str = Field(max_length=500)
    timeout_seconds: int
    params_schema: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    import_paths: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The Towerfile's [app.retry] table: the defaults of this version's runs.
    retry_policy: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class RunnerRegistrationToken(SQLModel, table=True):
    """A team admin's secret that registers runners bound to the team."""

    __tablename__ = "runner_registration_token"

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True)
    name: str = Field(default="", max_length=200)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Runner(SQLModel, table=True):
    __tablename__ = "runner"

    id: int | None = Field(default=None, primary_key=True)
    # None: a shared runner (the operator's registration token), which serves every team
    # that allows shared runners; else the only team whose runs it is handed.
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    name: str = Field(unique=True, max_length=200)
    environment: str = Field(default="default", max_length=64)
    labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    token_hash: str = Field(unique=True, max_length=64)
    status: str = Field(default="online", max_length=16)
    last_seen_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    __tablename__ = "run"
    __table_args__ = (
        UniqueConstraint("app_id", "run_no"),
        Index("ix_run_team_id", "team_id", "id"),
        Index("ix_run_schedule", "schedule_id", "id"),
        # Lease-time concurrency counts read only the live runs, never the history.
        Index("ix_run_live", "app_id", "environment_id", **_LIVE_RUN),
        # Delayed runs become eligible in not_before order (see store.queue).
        Index("ix_run_delayed", "not_before", **_DELAYED_RUN),
    )

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    app_id: int = Field(foreign_key="app.id")
    environment_id: int = Field(foreign_key="environment.id")
    # The environment's name, copied from the row it names (which never changes), so
    # that the lease query is one walk of ix_run_queue with no join.
    environment: str = Field(max_length=64)
    app_version_id: int = Field(foreign_key="app_version.id")
    run_no: int
    status: str = Field(default="queued", max_length=16)
    input: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    priority: int = 0
    max_retries: int = 0
    retry_count: int = 0
    # The retry policy (see minitower_shared.retry): which endings are retried and how
    # long a retry waits. Copied at creation, so a later Towerfile never changes it.
    retry_on: list[str] = Field(
        default_factory=lambda: ["lost"], sa_column=Column(JSON, nullable=False)
    )
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 3600.0
    # Not leased before this time (a delayed run, or a retry's backoff). ``delayed`` is
    # true until the time has come: it keeps waiting runs out of the lease walk of
    # ix_run_queue, whose cost must not grow with them.
    not_before: datetime | None = None
    delayed: bool = False
    # A schedule's run: its schedule and the cron time it stands for.
    # No foreign key: a deleted schedule leaves its runs, and their schedule_id, in history.
    schedule_id: int | None = None
    scheduled_for: datetime | None = None
    # overlap = "queue": not leased before this earlier run of its schedule has ended.
    after_run_id: int | None = None
    cancel_requested: bool = False
    queued_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error_message: str | None = None
    # The run this one reruns. Not a foreign key: pruning may delete the origin, and a
    # rerun must outlive it (the link then leads to a 404, which says so).
    rerun_of: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class RunAttempt(SQLModel, table=True):
    __tablename__ = "run_attempt"
    __table_args__ = (
        UniqueConstraint("run_id", "attempt_no"),
        # At most one live attempt per run and per runner, enforced by the database.
        Index("ux_attempt_active_run", "run_id", unique=True, **_ACTIVE_ATTEMPT),
        Index("ux_attempt_active_runner", "runner_id", unique=True, **_ACTIVE_ATTEMPT),
        Index("ix_attempt_active_expiry", "lease_expires_at", **_ACTIVE_ATTEMPT),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    runner_id: int = Field(foreign_key="runner.id", index=True)
    attempt_no: int
    lease_token_hash: str = Field(unique=True, max_length=64)
    lease_expires_at: datetime
    status: str = Field(default="leased", max_length=16)
    # What the runner reported, kept apart from ``status`` so a repeated result can be
    # recognised even when a cancel mapped it to another status.
    reported_status: str | None = Field(default=None, max_length=16)
    exit_code: int | None = None
    error_message: str | None = None
    leased_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The UTF-8 bytes of the attempt's stored log lines, and whether the cap
    # (MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT) has cut them off: kept with each batch, in
    # its transaction, so that every API process of the database holds one budget.
    log_bytes: int = 0
    log_truncated: bool = False


class RunLog(SQLModel, table=True):
    __tablename__ = "run_log"
    __table_args__ = (UniqueConstraint("attempt_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    attempt_id: int = Field(foreign_key="run_attempt.id")
    seq: int
    stream: str = Field(max_length=8)
    line: str
    logged_at: datetime


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("team_id", "app_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    app_id: int = Field(foreign_key="app.id")
    key: str = Field(max_length=200)
    run_id: int = Field(foreign_key="run.id")
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ReaperPass(SQLModel, table=True):
    """One row per reaper process (``MINITOWER_REAPER_NAME``, else ``hostname:pid``): when
    it last finished a pass and what its passes did, so the API can tell a stalled reaper
    from a quiet one and expose the reaper's work as counters. The counters only grow;
    their sum over all rows is what ``/metrics`` exposes."""

    __tablename__ = "reaper_pass"

    name: str = Field(primary_key=True, max_length=200)
    last_pass_at: datetime
    last_pass_duration_ms: float = 0.0
    passes: int = 0
    leases_expired: int = 0
    runs_retried: int = 0
    runs_buried: int = 0
    runs_cancelled: int = 0
    runners_marked_offline: int = 0


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random id; only its SHA-256 is stored. The
    session acts as one team token: revoking that token ends the session too."""

    __tablename__ = "console_session"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True, max_length=64)
    team_id: int = Field(foreign_key="team.id", index=True)
    token_id: int = Field(foreign_key="team_token.id", index=True)
    # True when the session minted its token at a password sign-in: signing out revokes
    # it too. A pasted token belongs to its owner and stays valid.
    owns_token: bool = False
    csrf_secret: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class LoginFailure(SQLModel, table=True):
    """A failed password sign-in, counted against the team slug it named and against the
    client address it came from (``kind``: ``slug`` or ``address``). Kept for the sign-in
    rate window only, in the database so that every API process counts the same ones."""

    __tablename__ = "login_failure"
    __table_args__ = (Index("ix_login_failure_key", "kind", "key", "failed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=8)
    key: str = Field(max_length=200)
    failed_at: datetime = Field(index=True)


def active_attempt() -> Any:
    """``run_attempt.status`` is one of the active statuses, in the words of the partial
    indexes, so the query planner can use them."""
    return text(f"run_attempt.{ACTIVE_ATTEMPT_CONDITION}")


# The lease looks at the apps with eligible (not delayed) queued runs of the runner's
# environment, one seek per app, and within an app walks this index in pick order
# (priority first, then age): runs of an app at its concurrency limit, and delayed runs,
# are never walked (see store.queue).
Index(
    "ix_run_queue",
    col(Run.environment),
    col(Run.delayed),
    col(Run.app_id),
    col(Run.priority).desc(),
    col(Run.queued_at),
    col(Run.id),
    **partial_where("status = 'queued'"),
)


class Schedule(SQLModel, table=True):
    """A cron schedule of an app: the scheduler creates a run at each due time."""

    __tablename__ = "schedule"
    __table_args__ = (
        Index("ix_schedule_app", "app_id", "id"),
        # The scheduler's one question: which enabled schedules are due.
        Index(
            "ix_schedule_due",
            "next_fire_at",
            **partial_where("enabled = 1", postgresql_condition="enabled"),
        ),
        Index("ux_schedule_name", "app_id", "name", unique=True, **partial_where("name != ''")),
    )

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    app_id: int = Field(foreign_key="app.id")
    name: str = Field(default="", max_length=64)
    cron: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    input: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    version_no: int | None = None
    environment: str = Field(default="default", max_length=64)
    priority: int = 0
    # Overrides of the version's retry policy; None = the version's value.
    retry: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    overlap: str = Field(default="allow", max_length=8)
    catchup: str = Field(default="none", max_length=8)
    enabled: bool = True
    next_fire_at: datetime | None = None
    last_fired_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ScheduleFire(SQLModel, table=True):
    """One due time of a schedule, handled once: the unique key is what makes two
    schedulers (or one restarted mid-tick) unable to fire the same time twice. Written in
    the transaction that creates its run."""

    __tablename__ = "schedule_fire"
    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_for"),)

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = Field(foreign_key="schedule.id")
    scheduled_for: datetime
    # "fired" (run_id names the run) or "skipped" (reason says why).
    outcome: str = Field(max_length=8)
    run_id: int | None = None
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class SchedulerPass(SQLModel, table=True):
    """One row per scheduler process, like ``reaper_pass``: its last tick and totals."""

    __tablename__ = "scheduler_pass"

    name: str = Field(primary_key=True, max_length=200)
    last_tick_at: datetime
    last_tick_duration_ms: float = 0.0
    ticks: int = 0
    runs_fired: int = 0
    fires_skipped: int = 0


# --- Audit log (store/audit.py) ---


class AuditEvent(SQLModel, table=True):
    """One change made with a team token, a console session or an operator secret.
    Append-only: nothing updates a row; only ``minitowerd prune`` deletes the rows older
    than MINITOWER_AUDIT_RETENTION. Written in the transaction of the change it records,
    so a change rolled back leaves no row."""

    __tablename__ = "audit_event"
    __table_args__ = (
        # The team's log, newest first (GET /api/v1/audit pages by id).
        Index("ix_audit_event_team", "team_id", "id"),
        # Prune's question: which rows are older than the retention.
        Index("ix_audit_event_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    # None: an operator's action that concerns no team (a shared runner's registration).
    # No foreign key: the log outlives what it names.
    team_id: int | None = None
    # "token", "console", "operator", "registration_token" or "password" (store/audit.py)
    actor_kind: str = Field(max_length=32)
    actor_token_id: int | None = None
    actor_name: str = Field(default="", max_length=200)
    action: str = Field(max_length=64)
    object_type: str = Field(max_length=32)
    object_id: str = Field(max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    request_id: str | None = Field(default=None, max_length=128)
    client_address: str | None = Field(default=None, max_length=200)


# --- Webhooks (failure notifications): the subscriptions, the outbox, the attempts. ---


class Webhook(SQLModel, table=True):
    """A team's subscription: events of ``events`` (optionally of one app) are POSTed to
    ``url``, signed with ``secret``. The secret is kept recoverable (the sender signs
    with it); it is never shown again after creation."""

    __tablename__ = "webhook"
    __table_args__ = (Index("ix_webhook_team", "team_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    app_id: int | None = Field(default=None, foreign_key="app.id")
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=200)
    format: str = Field(default="json", max_length=8)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookEvent(SQLModel, table=True):
    """One event, written in the transaction of the change that caused it (the outbox).
    ``public_id`` is the id receivers see, the same on every retry. ``payload`` is the
    delivery body's ``data``, a snapshot taken at the change."""

    __tablename__ = "webhook_event"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=40, unique=True)
    team_id: int = Field(foreign_key="team.id")
    type: str = Field(max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event to one webhook: pending until a 2xx (delivered) or until it is older
    than MINITOWER_WEBHOOK_MAX_AGE (failed). A delivery loop claims it by setting
    ``claimed_until``/``claim_token`` in a conditional UPDATE."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_webhook", "webhook_id", "id"),
        # The delivery loop's one question: which pending deliveries are due.
        Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            **partial_where("status = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id")
    event_id: int = Field(foreign_key="webhook_event.id")
    # pending, delivered or failed
    status: str = Field(default="pending", max_length=10)
    attempts: int = 0
    next_attempt_at: datetime
    claimed_until: datetime | None = None
    claim_token: str | None = Field(default=None, max_length=40)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class WebhookAttempt(SQLModel, table=True):
    """One POST of a delivery, successful or not: what the deliveries route lists."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_webhook", "webhook_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id")
    webhook_id: int = Field(foreign_key="webhook.id")
    attempt_no: int
    started_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    succeeded: bool


# --- secrets (issue 14) ----------------------------------------------------------------


class Secret(SQLModel, table=True):
    """A team's secret in one environment. ``ciphertext`` is a Fernet token (secrets.py of
    minitower_shared) over the value bound to (team, environment, name): a token copied
    into another row does not decrypt there. The value itself is never stored."""

    __tablename__ = "secret"
    __table_args__ = (UniqueConstraint("team_id", "environment", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id")
    environment: str = Field(max_length=64)
    name: str = Field(max_length=64)
    ciphertext: str
    # The team token that last set it (the token's name is read through it).
    set_by_token_id: int | None = Field(default=None, foreign_key="team_token.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AppVersionSecrets(SQLModel, table=True):
    """The Towerfile's ``[app] secrets``: names a version's runs need from their
    environment. A side table rather than a column of ``app_version`` so the secrets
    block stays one contiguous piece of this file."""

    __tablename__ = "app_version_secrets"

    app_version_id: int = Field(foreign_key="app_version.id", primary_key=True)
    names: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


# --- the PostgreSQL object store (issue 16) --------------------------------------------


class StoredObject(SQLModel, table=True):
    """An object of the PostgreSQL object store (MINITOWER_OBJECT_STORE=postgres), under
    the same content-addressed key as a file of the local store would have. Its bytes
    are the ``object_chunk`` rows; both are written in one transaction, so an object is
    either whole or absent. Unused (empty) with the local store."""

    __tablename__ = "stored_object"

    key: str = Field(primary_key=True, max_length=200)
    sha256: str = Field(max_length=64)
    size: int
    created_at: datetime = Field(default_factory=utcnow)


class ObjectChunk(SQLModel, table=True):
    """One piece of a stored object: ``seq`` 0, 1, … in order, each at most the store's
    chunk size, so neither a write nor a read ever holds the whole object."""

    __tablename__ = "object_chunk"

    key: str = Field(foreign_key="stored_object.key", primary_key=True, max_length=200)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


# SQLite's integers are 64-bit and the API accepts ids and counts up to 2**63 - 1: every
# integer column is 64-bit on PostgreSQL too (the migrations use the same type).
for _table in SQLModel.metadata.tables.values():
    for _column in _table.columns:
        if type(_column.type) is Integer:
            _column.type = INT64
