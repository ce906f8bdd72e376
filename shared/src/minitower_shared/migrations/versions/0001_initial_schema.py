"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64, partial_where

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "runner",
        sa.Column("id", INT64, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "team",
        sa.Column("id", INT64, nullable=False),
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "app",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "slug"),
    )
    op.create_table(
        "environment",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "name"),
    )
    op.create_table(
        "team_token",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("team_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_token_team_id"), ["team_id"], unique=False)

    op.create_table(
        "app_version",
        sa.Column("id", INT64, nullable=False),
        sa.Column("app_id", INT64, nullable=False),
        sa.Column("version_no", INT64, nullable=False),
        sa.Column("artifact_object_key", sa.String(length=200), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_size", INT64, nullable=False),
        sa.Column("entrypoint", sa.String(length=500), nullable=False),
        sa.Column("timeout_seconds", INT64, nullable=False),
        sa.Column("params_schema", sa.JSON(), nullable=True),
        sa.Column("import_paths", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["app.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "version_no"),
    )
    with op.batch_alter_table("app_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_app_version_artifact_object_key"), ["artifact_object_key"], unique=False
        )

    op.create_table(
        "run",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("app_id", INT64, nullable=False),
        sa.Column("environment_id", INT64, nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("app_version_id", INT64, nullable=False),
        sa.Column("run_no", INT64, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("priority", INT64, nullable=False),
        sa.Column("max_retries", INT64, nullable=False),
        sa.Column("retry_count", INT64, nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", INT64, nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["app.id"],
        ),
        sa.ForeignKeyConstraint(
            ["app_version_id"],
            ["app_version.id"],
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environment.id"],
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "run_no"),
    )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_run_queue",
            ["environment", sa.literal_column("priority DESC"), "queued_at", "id"],
            unique=False,
            **partial_where("status = 'queued'"),
        )
        batch_op.create_index("ix_run_team_id", ["team_id", "id"], unique=False)

    op.create_table(
        "idempotency_key",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("app_id", INT64, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("run_id", INT64, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["app.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run.id"],
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "app_id", "key"),
    )
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_key_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "run_attempt",
        sa.Column("id", INT64, nullable=False),
        sa.Column("run_id", INT64, nullable=False),
        sa.Column("runner_id", INT64, nullable=False),
        sa.Column("attempt_no", INT64, nullable=False),
        sa.Column("lease_token_hash", sa.String(length=64), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reported_status", sa.String(length=16), nullable=True),
        sa.Column("exit_code", INT64, nullable=True),
        sa.Column("error_message", sa.String(), nullable=True),
        sa.Column("leased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run.id"],
        ),
        sa.ForeignKeyConstraint(
            ["runner_id"],
            ["runner.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lease_token_hash"),
        sa.UniqueConstraint("run_id", "attempt_no"),
    )
    with op.batch_alter_table("run_attempt", schema=None) as batch_op:
        batch_op.create_index(
            "ix_attempt_active_expiry",
            ["lease_expires_at"],
            unique=False,
            **partial_where("status IN ('leased', 'running', 'cancelling')"),
        )
        batch_op.create_index(batch_op.f("ix_run_attempt_runner_id"), ["runner_id"], unique=False)
        batch_op.create_index(
            "ux_attempt_active_run",
            ["run_id"],
            unique=True,
            **partial_where("status IN ('leased', 'running', 'cancelling')"),
        )
        batch_op.create_index(
            "ux_attempt_active_runner",
            ["runner_id"],
            unique=True,
            **partial_where("status IN ('leased', 'running', 'cancelling')"),
        )

    op.create_table(
        "run_log",
        sa.Column("id", INT64, nullable=False),
        sa.Column("attempt_id", INT64, nullable=False),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("line", sa.String(), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["run_attempt.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("attempt_id", "seq"),
    )


def downgrade() -> None:

    op.drop_table("run_log")
    with op.batch_alter_table("run_attempt", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_attempt_active_runner",
            sqlite_where=sa.text("status IN ('leased', 'running', 'cancelling')"),
        )
        batch_op.drop_index(
            "ux_attempt_active_run",
            sqlite_where=sa.text("status IN ('leased', 'running', 'cancelling')"),
        )
        batch_op.drop_index(batch_op.f("ix_run_attempt_runner_id"))
        batch_op.drop_index(
            "ix_attempt_active_expiry",
            sqlite_where=sa.text("status IN ('leased', 'running', 'cancelling')"),
        )

    op.drop_table("run_attempt")
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_key_created_at"))

    op.drop_table("idempotency_key")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_team_id")
        batch_op.drop_index("ix_run_queue", sqlite_where=sa.text("status = 'queued'"))

    op.drop_table("run")
    with op.batch_alter_table("app_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_version_artifact_object_key"))

    op.drop_table("app_version")
    with op.batch_alter_table("team_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_token_team_id"))

    op.drop_table("team_token")
    op.drop_table("environment")
    op.drop_table("app")
    op.drop_table("team")
    op.drop_table("runner")
