"""Database rows to wire shapes."""

from minitower_shared.models import (
    App,
    AppVersion,
    Environment,
    RunAttempt,
    RunLog,
    Runner,
    RunnerRegistrationToken,
    TeamToken,
)
from minitower_shared.schemas import (
    AppPublic,
    AttemptPublic,
    EnvironmentPublic,
    LogLinePublic,
    QueuedEnvironment,
    RunnerPublic,
    RunnerRegistrationTokenPublic,
    RunPublic,
    RunsSummary,
    TokenPublic,
    VersionPublic,
)
from minitower_shared.states import LEASED_RUN_STATUSES, TERMINAL_RUN_STATUSES, RunStatus
from minitower_shared.store.runs import RunView, TeamRunSummary


def app_public(app: App) -> AppPublic:
    assert app.id is not None
    return AppPublic(
        app_id=app.id,
        slug=app.slug,
        description=app.description,
        disabled=app.disabled,
        max_concurrent_runs=app.max_concurrent_runs,
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


def version_public(version: AppVersion, secrets: list[str]) -> VersionPublic:
    assert version.id is not None
    return VersionPublic(
        version_id=version.id,
        version_no=version.version_no,
        entrypoint=version.entrypoint,
        timeout_seconds=version.timeout_seconds,
        params_schema=version.params_schema,
        import_paths=version.import_paths,
        artifact_sha256=version.artifact_sha256,
        artifact_size=version.artifact_size,
        retry_policy=version.retry_policy,
        secrets=secrets,
        created_at=version.created_at,
    )


def run_public(view: RunView) -> RunPublic:
    run = view.run
    assert run.id is not None
    return RunPublic(
        run_id=run.id,
        app_id=run.app_id,
        app_slug=view.app_slug,
        run_no=run.run_no,
        version_no=view.version_no,
        environment=view.environment,
        status=run.status,
        input=run.input,
        priority=run.priority,
        max_retries=run.max_retries,
        retry_count=run.retry_count,
        retry_on=run.retry_on,
        retry_delay=run.retry_delay,
        retry_backoff=run.retry_backoff,
        retry_max_delay=run.retry_max_delay,
        not_before=run.not_before,
        schedule_id=run.schedule_id,
        scheduled_for=run.scheduled_for,
        cancel_requested=run.cancel_requested,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        exit_code=run.exit_code,
        error_message=run.error_message,
        rerun_of=run.rerun_of,
    )


def token_public(token: TeamToken) -> TokenPublic:
    assert token.id is not None
    return TokenPublic(
        token_id=token.id,
        name=token.name,
        role=token.role,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def attempt_public(attempt: RunAttempt, runner_name: str) -> AttemptPublic:
    return AttemptPublic(
        attempt_no=attempt.attempt_no,
        runner_name=runner_name,
        status=attempt.status,
        exit_code=attempt.exit_code,
        error_message=attempt.error_message,
        leased_at=attempt.leased_at,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
    )


def log_public(log: RunLog, attempt_no: int) -> LogLinePublic:
    return LogLinePublic(
        seq=log.seq,
        attempt_no=attempt_no,
        stream=log.stream,
        line=log.line,
        logged_at=log.logged_at,
    )


def runner_public(runner: Runner, current_run_id: int | None) -> RunnerPublic:
    assert runner.id is not None
    return RunnerPublic(
        runner_id=runner.id,
        name=runner.name,
        environment=runner.environment,
        status=runner.status,
        labels=runner.labels,
        last_seen_at=runner.last_seen_at,
        current_run_id=current_run_id,
        shared=runner.team_id is None,
    )


def registration_token_public(token: RunnerRegistrationToken) -> RunnerRegistrationTokenPublic:
    assert token.id is not None
    return RunnerRegistrationTokenPublic(
        registration_token_id=token.id,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def runs_summary_public(summary: TeamRunSummary) -> RunsSummary:
    return RunsSummary(
        total_runs=sum(summary.by_status.values()),
        active_runs=summary.count(LEASED_RUN_STATUSES),
        queued_runs=summary.count(frozenset({RunStatus.QUEUED})),
        terminal_runs=summary.count(TERMINAL_RUN_STATUSES),
        by_status=summary.by_status,
        last_24h_by_status=summary.last_day_by_status,
        queued_by_environment=[
            QueuedEnvironment(
                environment=name,
                queued=figures.depth,
                oldest_queued_at=figures.oldest_queued_at,
            )
            for name, figures in sorted(summary.queued_by_environment.items())
        ],
        runners_online=summary.runners_online,
        recent_failures=[run_public(view) for view in summary.recent_failures],
    )


def environment_public(environment: Environment) -> EnvironmentPublic:
    return EnvironmentPublic(
        name=environment.name,
        max_concurrent_runs=environment.max_concurrent_runs,
        created_at=environment.created_at,
    )
