"""The HTTP API's request and response bodies (contract: docs/api-v1.md).

Kept apart from the tables so that clients (the runner, the CLI) can import the wire
shapes without the database layer. Timestamps are aware UTC datetimes in Python and
travel as RFC 3339 strings (``WireTime``).
"""

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from minitower_shared.clock import as_utc, rfc3339
from minitower_shared.retry import (
    MAX_BACKOFF,
    MAX_DELAY_SECONDS,
    MAX_RETRIES,
    POLICY_KEYS,
    RetryReason,
)
from minitower_shared.secret_box import MAX_SECRET_VALUE_BYTES
from minitower_shared.states import AttemptStatus, RunnerStatus, RunStatus
from minitower_shared.webhook_urls import MAX_URL_LENGTH

SLUG_PATTERN = r"^[a-z][a-z0-9-]{2,31}$"
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
RUNNER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
MAX_LOG_LINE_CHARS = 64 * 1024
MAX_LOG_BATCH = 5000
# SQLite integers are 64-bit signed: a larger number cannot name or store anything.
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
# Deep enough for any real run input or parameter schema, shallow enough that validating,
# copying and serialising it never comes near Python's recursion limit.
MAX_JSON_DEPTH = 32


def _integral_number(value: Any) -> Any:
    """JSON Schema's ``integer`` (what the OpenAPI document promises) is any number
    without a fractional part, so ``5.0`` is 5; strings and booleans stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer of a request body with bounds of its own.
JsonInt = Annotated[int, BeforeValidator(_integral_number)]
# Documented bounds of the 64-bit integers of request bodies: up to 2**53 - 1, the
# integers every JSON parser holds exactly (a client's float 2**63 is not 2**63 - 1).
# The server accepts the whole 64-bit range.
JSON_SAFE_INT = 2**53 - 1


# A timestamp of a response: read from the database (naive, UTC) or from the wire (an
# offset), held as aware UTC, written as clock.rfc3339 writes it. The document says so in
# both directions; the serializer alone would make the response's schema a bare string.
WireTime = Annotated[
    datetime,
    AfterValidator(as_utc),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

_INTEGRAL = BeforeValidator(_integral_number)
# An integer of a request body: 64-bit on the server, documented as JSON-safe.
Int64 = Annotated[
    int,
    Field(
        ge=MIN_INT64,
        le=MAX_INT64,
        json_schema_extra={"minimum": -JSON_SAFE_INT, "maximum": JSON_SAFE_INT},
    ),
    _INTEGRAL,
]
NonNegativeInt64 = Annotated[
    int,
    Field(ge=0, le=MAX_INT64, json_schema_extra={"minimum": 0, "maximum": JSON_SAFE_INT}),
    _INTEGRAL,
]
PositiveInt64 = Annotated[
    int,
    Field(ge=1, le=MAX_INT64, json_schema_extra={"minimum": 1, "maximum": JSON_SAFE_INT}),
    _INTEGRAL,
]
# Bounded integers and seconds of request bodies, with their bounds inside the type so
# that an optional field (``X | None``) keeps them in the OpenAPI document too.
RetryCount = Annotated[int, Field(ge=0, le=MAX_RETRIES), _INTEGRAL]
ConcurrencyLimit = Annotated[int, Field(ge=1, le=10_000), _INTEGRAL]
Priority = Annotated[int, Field(ge=-1000, le=1000), _INTEGRAL]
DelaySeconds = Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS)]
BackoffFactor = Annotated[float, Field(ge=1, le=MAX_BACKOFF)]
RetryReasons = Annotated[
    list[RetryReason], Field(max_length=3, json_schema_extra={"uniqueItems": True})
]


class Strict(BaseModel):
    """Request bodies refuse unknown keys, so a typo is an error rather than a default,
    and take JSON types as they are (``"5"`` or ``true`` is not an integer), as the
    OpenAPI document says. NaN and infinities are not JSON either."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def check_plain_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ValueError unless ``value`` survives a JSON round trip unchanged: no NaN or
    infinity (Python's json module reads them, then they come back as null), no string
    that is not valid Unicode (lone surrogates), and at most ``max_depth`` levels of
    nesting. Iterative, so hostile nesting cannot exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            children = list(item.values()) if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinite numbers are not JSON")
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("strings must be valid Unicode (no lone surrogates)") from None


# --- errors ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["run 42 not found"])
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- operator endpoints -----------------------------------------------------------------


class HealthStatus(BaseModel):
    status: str
    reaper: str | None = Field(
        default=None,
        description="/ready only: whether a reaper made a pass within MINITOWER_REAPER_STALL_AFTER",
        examples=["ok", "stalled: last pass 95 s ago", "no pass recorded"],
    )
    scheduler: str | None = Field(
        default=None,
        description="/ready only: whether a scheduler ticked within "
        "MINITOWER_SCHEDULER_STALL_AFTER",
        examples=["ok", "stalled: last tick 95 s ago", "no tick recorded"],
    )


# Longer passwords are refused before hashing, so that a hash's cost stays bounded.
MAX_PASSWORD_CHARS = 1024


class BootstrapTeam(Strict):
    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(
        default=None,
        max_length=MAX_PASSWORD_CHARS,
        description="Set (or reset) the team's sign-in password; at least "
        "MINITOWER_MIN_PASSWORD_LENGTH characters",
    )


class TeamSignup(Strict):
    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=MAX_PASSWORD_CHARS)


class TeamLogin(Strict):
    # Any string up to the bound: a slug that cannot exist gets the same answer as a
    # wrong password, never a hint.
    slug: str = Field(max_length=200)
    password: str = Field(max_length=MAX_PASSWORD_CHARS)


class LoginResult(BaseModel):
    team_id: int
    slug: str
    token: str
    token_id: int
    role: str


class AuthOptions(BaseModel):
    signup_enabled: bool
    bootstrap_enabled: bool
    password_login_enabled: bool = True
    min_password_length: int


class BootstrapResult(BaseModel):
    team_id: int
    slug: str
    token: str
    role: str


class RunnerRegister(Strict):
    name: str = Field(pattern=RUNNER_NAME_PATTERN)
    environment: str = Field(default="default", pattern=ENVIRONMENT_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)

    @field_validator("labels")
    @classmethod
    def _small_plain_labels(cls, value: dict[str, str]) -> dict[str, str]:
        check_plain_json(value)
        if any(len(k) > 100 or len(v) > 500 for k, v in value.items()):
            raise ValueError("label keys are at most 100 characters, values at most 500")
        return value


class RunnerRegistered(BaseModel):
    runner_id: int
    name: str
    environment: str
    token: str
    # None: a shared runner (registered with the operator's token); else the team it is
    # bound to, whose runs alone it is handed.
    team_id: int | None = None


class RunnerPublic(BaseModel):
    runner_id: int
    name: str
    environment: str
    status: RunnerStatus
    labels: dict[str, Any]
    last_seen_at: WireTime | None
    current_run_id: int | None
    # True: registered with the operator's token, serves every team that allows shared
    # runners. False: bound to the caller's team (other teams' runners are not listed).
    shared: bool = True


class RunnerList(BaseModel):
    runners: list[RunnerPublic]
    next_cursor: str | None


# --- team endpoints ---------------------------------------------------------------------


class Me(BaseModel):
    team_id: int
    team_slug: str
    token_id: int
    role: str
    # Whether the team's runs may go to shared runners (an operator's setting).
    allow_shared_runners: bool = True


class RunnerRegistrationTokenCreate(Strict):
    name: str = Field(default="", max_length=200)


class RunnerRegistrationTokenCreated(BaseModel):
    registration_token_id: int
    name: str
    # Shown only in this answer: the runner's MINITOWER_RUNNER_REGISTRATION_TOKEN.
    token: str
    created_at: WireTime


class RunnerRegistrationTokenPublic(BaseModel):
    registration_token_id: int
    name: str
    created_at: WireTime
    last_used_at: WireTime | None
    revoked_at: WireTime | None


class RunnerRegistrationTokenList(BaseModel):
    registration_tokens: list[RunnerRegistrationTokenPublic]
    next_cursor: str | None


class TokenCreate(Strict):
    name: str = Field(default="", max_length=200)
    role: Literal["admin", "member"] = "member"


class TokenCreated(BaseModel):
    token_id: int
    token: str
    name: str
    role: str


class TokenPublic(BaseModel):
    token_id: int
    name: str
    role: str
    created_at: WireTime
    last_used_at: WireTime | None
    revoked_at: WireTime | None


class TokenList(BaseModel):
    tokens: list[TokenPublic]
    next_cursor: str | None


class AppCreate(Strict):
    slug: str = Field(pattern=SLUG_PATTERN)
    # null is the reference CLI's "no description" and means the same as "".
    description: str | None = Field(default="", max_length=2000)


class AppUpdate(Strict):
    description: str | None = Field(default=None, max_length=2000)
    disabled: bool | None = None
    max_concurrent_runs: ConcurrencyLimit | None = Field(
        default=None,
        description="Runs of the app leased at once; null (given explicitly) = no limit",
    )


class AppPublic(BaseModel):
    app_id: int
    slug: str
    description: str
    disabled: bool
    max_concurrent_runs: int | None = None
    created_at: WireTime
    updated_at: WireTime


class AppList(BaseModel):
    apps: list[AppPublic]
    next_cursor: str | None


class VersionPublic(BaseModel):
    version_id: int
    version_no: int
    entrypoint: str
    timeout_seconds: int
    params_schema: dict[str, Any] | None
    import_paths: list[str]
    artifact_sha256: str
    artifact_size: int
    retry_policy: dict[str, Any] | None = Field(
        default=None, description="The Towerfile's [app.retry]: defaults of the version's runs"
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="The Towerfile's [app] secrets: names its runs need from their environment",
    )
    created_at: WireTime


class VersionList(BaseModel):
    versions: list[VersionPublic]
    next_cursor: str | None


class RetryFields(Strict):
    """A retry policy's fields; each left out (or null) takes the version's value
    (its Towerfile ``[app.retry]``), else the default shown. Durations are seconds."""

    max_retries: RetryCount | None = Field(default=None, description="default 0")
    retry_on: RetryReasons | None = Field(
        default=None,
        description='Endings retried: lost (lease expired), failed, timeout; default ["lost"]',
    )
    retry_delay: DelaySeconds | None = Field(
        default=None, description="Wait before the first retry (s)"
    )
    retry_backoff: BackoffFactor | None = Field(
        default=None, description="Factor of each further wait; default 2"
    )
    retry_max_delay: DelaySeconds | None = Field(
        default=None, description="Cap of the wait (s); default 3600"
    )

    @field_validator("retry_on")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("retry_on lists a reason more than once")
        return value

    def retry_overrides(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "retry_on": self.retry_on,
            "retry_delay": self.retry_delay,
            "retry_backoff": self.retry_backoff,
            "retry_max_delay": self.retry_max_delay,
        }


def _never_null(*keys: str) -> Callable[[dict[str, Any]], None]:
    """A model's document for optional fields that may be left out but are refused as
    null: the null variant and the null default come off those properties."""

    def edit(schema: dict[str, Any]) -> None:
        for key in keys:
            field = schema["properties"][key]
            variants = [v for v in field.pop("anyOf") if v.get("type") != "null"]
            field.update(variants[0])
            field.pop("default", None)

    return edit


class RunCreate(RetryFields):
    """A retry field left out takes the version's value; null is refused."""

    model_config = ConfigDict(json_schema_extra=_never_null(*POLICY_KEYS))

    input: dict[str, Any] = Field(default_factory=dict)
    version_no: PositiveInt64 | None = None
    priority: JsonInt = Field(default=0, ge=-1000, le=1000)
    environment: str = Field(default="default", pattern=ENVIRONMENT_PATTERN)
    scheduled_for: AwareDatetime | None = Field(
        default=None,
        strict=False,
        description="RFC 3339 with an offset: the run stays queued, not leased before then",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_null_retry_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in POLICY_KEYS:
                if key in data and data[key] is None:
                    raise ValueError(f"{key} may be left out, but not null")
            when = data.get("scheduled_for")
            if when is not None and not isinstance(when, str):
                raise ValueError("scheduled_for must be an RFC 3339 string")
        return data

    @field_validator("scheduled_for")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("scheduled_for is out of range once converted to UTC") from None

    @field_validator("input")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_plain_json(value)
        return value


class RunPublic(BaseModel):
    run_id: int
    app_id: int
    app_slug: str
    run_no: int
    version_no: int
    environment: str
    status: RunStatus
    input: dict[str, Any]
    priority: int
    max_retries: int
    retry_count: int
    retry_on: list[str] = Field(default_factory=lambda: ["lost"])
    retry_delay: float = 0.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 3600.0
    not_before: WireTime | None = Field(
        default=None, description="Not leased before this time (delayed run, retry backoff)"
    )
    schedule_id: int | None = Field(default=None, description="The schedule that made the run")
    scheduled_for: WireTime | None = Field(
        default=None, description="The time the run stands for (its schedule's fire time)"
    )
    cancel_requested: bool
    queued_at: WireTime
    started_at: WireTime | None
    finished_at: WireTime | None
    exit_code: int | None
    error_message: str | None
    rerun_of: int | None = Field(
        default=None, description="The run this one reruns (POST /runs/{run_id}/rerun)"
    )


class RunRerun(Strict):
    version_no: PositiveInt64 | None = Field(
        default=None, description="Default: the origin's version"
    )


class QueuedEnvironment(BaseModel):
    environment: str
    queued: int
    oldest_queued_at: WireTime


class RunsSummary(BaseModel):
    """The reference's four counts, and what the console's overview shows."""

    total_runs: int
    active_runs: int
    queued_runs: int
    terminal_runs: int
    by_status: dict[str, int]
    last_24h_by_status: dict[str, int]
    queued_by_environment: list[QueuedEnvironment]
    runners_online: int
    recent_failures: list[RunPublic]


class RunList(BaseModel):
    runs: list[RunPublic]
    next_cursor: str | None


class AttemptPublic(BaseModel):
    attempt_no: int
    runner_name: str
    status: AttemptStatus
    exit_code: int | None
    error_message: str | None
    leased_at: WireTime
    started_at: WireTime | None
    finished_at: WireTime | None


class AttemptList(BaseModel):
    attempts: list[AttemptPublic]


class LogLinePublic(BaseModel):
    seq: int
    attempt_no: int
    stream: str
    line: str
    logged_at: WireTime


class LogPage(BaseModel):
    logs: list[LogLinePublic]
    next_seq: int


class LogStreamEnd(BaseModel):
    """The log stream's last event: the run's final status, or null when it is gone."""

    status: RunStatus | None


class EnvironmentUpdate(Strict):
    max_concurrent_runs: ConcurrencyLimit | None = Field(
        description="Runs of the environment leased at once; null = no limit"
    )


class EnvironmentPublic(BaseModel):
    name: str
    max_concurrent_runs: int | None
    created_at: WireTime


class EnvironmentList(BaseModel):
    environments: list[EnvironmentPublic]


Overlap = Literal["allow", "skip", "queue"]
Catchup = Literal["none", "latest", "all"]
SCHEDULE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ScheduleFields(RetryFields):
    """What a schedule's runs are made of; shared by create and update."""

    @field_validator("input", check_fields=False)
    @classmethod
    def _plain_json(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_plain_json(value)
        return value


class ScheduleCreate(ScheduleFields):
    cron: str = Field(max_length=200, examples=["0 3 * * *", "@daily"])
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Berlin"])
    input: dict[str, Any] = Field(default_factory=dict)
    version_no: PositiveInt64 | None = Field(
        default=None, description="null = the latest version when it fires"
    )
    environment: str = Field(default="default", pattern=ENVIRONMENT_PATTERN)
    priority: Priority = 0
    overlap: Overlap = "allow"
    catchup: Catchup = "none"
    enabled: bool = True
    name: str = Field(default="", pattern=r"^$|" + SCHEDULE_NAME_PATTERN)


class ScheduleUpdate(ScheduleFields):
    """Only the keys given change; ``version_no: null`` means the latest version, a retry
    field set to null the version's value; the other fields cannot be null."""

    model_config = ConfigDict(
        json_schema_extra=_never_null(
            "cron",
            "timezone",
            "input",
            "environment",
            "priority",
            "overlap",
            "catchup",
            "enabled",
            "name",
        )
    )

    cron: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    input: dict[str, Any] | None = None
    version_no: PositiveInt64 | None = None
    environment: str | None = Field(default=None, pattern=ENVIRONMENT_PATTERN)
    priority: Priority | None = None
    overlap: Overlap | None = None
    catchup: Catchup | None = None
    enabled: bool | None = None
    name: str | None = Field(default=None, pattern=r"^$|" + SCHEDULE_NAME_PATTERN)


class SchedulePublic(BaseModel):
    schedule_id: int
    app_slug: str
    name: str
    cron: str
    timezone: str
    input: dict[str, Any]
    version_no: int | None
    environment: str
    priority: int
    retry: dict[str, Any] = Field(description="The retry fields this schedule overrides")
    overlap: str
    catchup: str
    enabled: bool
    next_fire_at: WireTime | None
    last_fired_at: WireTime | None
    created_at: WireTime
    updated_at: WireTime


class ScheduleList(BaseModel):
    schedules: list[SchedulePublic]
    next_cursor: str | None


# --- runner endpoints -------------------------------------------------------------------


ServerTime = Annotated[
    WireTime | None,
    Field(
        description="The server's clock when it answered (to the millisecond): a runner "
        "times the lease from it (lease_expires_at minus server_time) rather than from "
        "the whole-second Date header",
    ),
]


class LeaseRequest(Strict):
    wait_seconds: float = Field(default=0, ge=0, le=30)
    start: bool = Field(
        default=False,
        description="Start the attempt in the same call (leased → running, as POST "
        "/api/v1/runs/{run_id}/start would): the grant then says started: true, and the "
        "runner skips the start call",
    )


class LeaseGranted(BaseModel):
    run_id: int
    run_no: int
    app_id: int
    app_slug: str
    version_no: int
    entrypoint: str
    timeout_seconds: int
    input: dict[str, Any]
    import_paths: list[str]
    artifact_sha256: str
    attempt_id: int
    attempt_no: int
    lease_token: str
    lease_expires_at: WireTime
    # The run's team: runners keep the venvs of different teams apart.
    team_id: int = 0
    secrets: list[str] = Field(
        default_factory=list,
        description="The names the run's version declares (Towerfile [app] secrets): the "
        "runner fetches their values with GET /api/v1/runs/{run_id}/secrets only when there "
        "are some",
    )
    started: bool = Field(
        default=False,
        description="True when the lease asked to start the attempt (start: true): it is "
        "running already, and POST result takes the attempt's last log lines (logs)",
    )
    server_time: ServerTime = None


class StartResult(BaseModel):
    attempt_no: int
    status: AttemptStatus
    lease_expires_at: WireTime
    cancel_requested: bool
    server_time: ServerTime = None


class HeartbeatResult(BaseModel):
    lease_expires_at: WireTime
    cancel_requested: bool
    server_time: ServerTime = None


class LogLineIn(Strict):
    seq: NonNegativeInt64
    stream: Literal["stdout", "stderr"]
    line: str = Field(max_length=MAX_LOG_LINE_CHARS)
    logged_at: datetime | None = Field(
        default=None, strict=False, description="RFC 3339; the server's time when omitted"
    )

    @field_validator("line")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        check_plain_json(value)
        return value

    @field_validator("logged_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """Stored in UTC; a time without an offset is taken as UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("logged_at is out of range once converted to UTC") from None


class LogBatch(Strict):
    logs: list[LogLineIn] = Field(max_length=MAX_LOG_BATCH)


class LogsAccepted(BaseModel):
    accepted: int
    dropped: int = Field(
        default=0,
        description="Lines accepted but not stored: the attempt reached the server's log "
        "cap (MINITOWER_MAX_LOG_BYTES_PER_ATTEMPT). Do not resend them.",
    )


class ResultReport(Strict):
    status: Literal["completed", "failed", "cancelled"]
    exit_code: Int64 | None = None
    error_message: str | None = Field(default=None, max_length=10_000)
    logs: list[LogLineIn] = Field(
        default_factory=list,
        max_length=MAX_LOG_BATCH,
        description="The attempt's last log lines, stored before the result exactly as "
        "POST /api/v1/runs/{run_id}/logs would store them (one call instead of two). "
        "Ignored when the attempt has already ended: a repeated result carries lines "
        "stored the first time.",
    )


class ResultAccepted(BaseModel):
    run_id: int
    attempt_no: int
    status: AttemptStatus
    run_status: RunStatus


# --- Audit log (GET /api/v1/audit) ---


class AuditEventPublic(BaseModel):
    audit_id: int
    at: WireTime
    team_id: int | None
    actor_kind: str = Field(
        description="token, console (a console session acting as its token), operator, "
        "registration_token or password"
    )
    actor_token_id: int | None
    actor_name: str
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]
    request_id: str | None
    client_address: str | None


class AuditEventList(BaseModel):
    events: list[AuditEventPublic]
    next_cursor: str | None


# --- webhooks -----------------------------------------------------------------------------

WebhookEventType = Literal[
    "run.failed", "run.dead", "run.completed", "run.cancelled", "schedule.skipped"
]
WebhookFormat = Literal["json", "slack"]


class WebhookCreate(Strict):
    url: str = Field(
        min_length=1, max_length=MAX_URL_LENGTH, examples=["https://hooks.example.com/minitower"]
    )
    events: list[WebhookEventType] = Field(min_length=1, max_length=10)
    app: str | None = Field(
        default=None, pattern=SLUG_PATTERN, description="Only this app's events (null: all)"
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="The signing secret; omitted: one is generated and shown once",
    )
    format: WebhookFormat = "json"


class WebhookUpdate(Strict):
    """Only the keys given change; ``app: null`` widens the webhook to every app. The
    secret cannot be read back; set a new one here to rotate it."""

    model_config = ConfigDict(json_schema_extra=_never_null("url", "events", "format", "enabled"))

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    events: list[WebhookEventType] | None = Field(default=None, min_length=1, max_length=10)
    app: str | None = Field(default=None, pattern=SLUG_PATTERN)
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    format: WebhookFormat | None = None
    enabled: bool | None = None


class WebhookPublic(BaseModel):
    webhook_id: int
    url: str
    events: list[str]
    app: str | None
    format: str
    enabled: bool
    created_at: WireTime
    updated_at: WireTime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Shown only in this answer")


class WebhookList(BaseModel):
    webhooks: list[WebhookPublic]
    next_cursor: str | None


class WebhookDeliveryAttempt(BaseModel):
    attempt_id: int
    event_id: str
    event_type: str
    attempt_no: int
    delivery_status: str = Field(description="pending, delivered or failed")
    started_at: WireTime
    duration_ms: float
    status_code: int | None
    error: str | None
    succeeded: bool


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDeliveryAttempt]
    next_cursor: str | None


class WebhookTestQueued(BaseModel):
    event_id: str
    type: str


# --- secrets ----------------------------------------------------------------------------


class SecretValue(Strict):
    """A secret's value. Error messages about it never quote it."""

    value: str = Field(
        description=f"At most {MAX_SECRET_VALUE_BYTES} bytes of UTF-8, no NUL character"
    )

    @field_validator("value")
    @classmethod
    def _fits_the_environment(cls, value: str) -> str:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("the value is not valid Unicode (a lone surrogate)") from None
        if size > MAX_SECRET_VALUE_BYTES:
            raise ValueError(
                f"the value is {size} bytes of UTF-8, more than the limit of "
                f"{MAX_SECRET_VALUE_BYTES}"
            )
        if "\0" in value:
            raise ValueError("the value contains a NUL character, which no environment holds")
        return value


class SecretPublic(BaseModel):
    """A secret's metadata: its value never leaves the API except to a runner holding a
    live lease of a run that needs it."""

    name: str
    environment: str
    set_by_token_id: int | None
    set_by_token_name: str | None
    created_at: WireTime
    updated_at: WireTime


class SecretList(BaseModel):
    secrets: list[SecretPublic]


class RunSecrets(BaseModel):
    """The run's declared secrets, from its team's secrets in its environment."""

    environment: str
    secrets: dict[str, str]
    missing: list[str] = Field(
        description="Declared names the environment has no secret for: the runner fails the "
        "run naming them"
    )
