"""schedules, delayed runs, retry policies, concurrency limits

Revision ID: 0005_schedules
Revises: 0004_console_auth
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64, partial_where

revision: str = "0005_schedules"
down_revision: str | None = "0004_console_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE_RUN = sa.text("status IN ('leased', 'running', 'cancelling')")
_DELAYED_RUN = sa.text("status = 'queued' AND delayed = 1")
_LIVE_RUN_WHERE = partial_where("status IN ('leased', 'running', 'cancelling')")
_DELAYED_RUN_WHERE = partial_where(
    "status = 'queued' AND delayed = 1", postgresql_condition="status = 'queued' AND delayed"
)


def upgrade() -> None:
    op.create_table(
        "schedule",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("app_id", INT64, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("version_no", INT64, nullable=True),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("priority", INT64, nullable=False),
        sa.Column("retry", sa.JSON(), nullable=False),
        sa.Column("overlap", sa.String(length=8), nullable=False),
        sa.Column("catchup", sa.String(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.create_index("ix_schedule_app", ["app_id", "id"], unique=False)
        batch_op.create_index(
            "ix_schedule_due",
            ["next_fire_at"],
            unique=False,
            **partial_where("enabled = 1", postgresql_condition="enabled"),
        )
        batch_op.create_index(
            "ux_schedule_name", ["app_id", "name"], unique=True, **partial_where("name != ''")
        )
    op.create_table(
        "schedule_fire",
        sa.Column("id", INT64, nullable=False),
        sa.Column("schedule_id", INT64, nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("run_id", INT64, nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedule.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "scheduled_for"),
    )
    op.create_table(
        "scheduler_pass",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_tick_duration_ms", sa.Float(), nullable=False),
        sa.Column("ticks", INT64, nullable=False),
        sa.Column("runs_fired", INT64, nullable=False),
        sa.Column("fires_skipped", INT64, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrent_runs", INT64, nullable=True))
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrent_runs", INT64, nullable=True))
    with op.batch_alter_table("app_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retry_on", sa.JSON(), nullable=False, server_default=sa.text("'[\"lost\"]'"))
        )
        batch_op.add_column(
            sa.Column("retry_delay", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("retry_backoff", sa.Float(), nullable=False, server_default=sa.text("2"))
        )
        batch_op.add_column(
            sa.Column("retry_max_delay", sa.Float(), nullable=False, server_default=sa.text("3600"))
        )
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("delayed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("schedule_id", INT64, nullable=True))
        batch_op.add_column(sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("after_run_id", INT64, nullable=True))
    # Outside the batch: a batch that copies the table cannot rebuild a DESC index.
    op.drop_index("ix_run_queue", table_name="run", sqlite_where=sa.text("status = 'queued'"))
    op.create_index(
        "ix_run_queue",
        "run",
        [
            "environment",
            "delayed",
            "app_id",
            sa.literal_column("priority DESC"),
            "queued_at",
            "id",
        ],
        unique=False,
        **partial_where("status = 'queued'"),
    )
    op.create_index("ix_run_schedule", "run", ["schedule_id", "id"], unique=False)
    op.create_index(
        "ix_run_live", "run", ["app_id", "environment_id"], unique=False, **_LIVE_RUN_WHERE
    )
    op.create_index("ix_run_delayed", "run", ["not_before"], unique=False, **_DELAYED_RUN_WHERE)


def downgrade() -> None:
    op.drop_index("ix_run_delayed", table_name="run", sqlite_where=_DELAYED_RUN)
    op.drop_index("ix_run_live", table_name="run", sqlite_where=_LIVE_RUN)
    op.drop_index("ix_run_schedule", table_name="run")
    op.drop_index("ix_run_queue", table_name="run", sqlite_where=sa.text("status = 'queued'"))
    op.create_index(
        "ix_run_queue",
        "run",
        ["environment", sa.literal_column("priority DESC"), "queued_at", "id"],
        unique=False,
        **partial_where("status = 'queued'"),
    )
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+): a batch would copy the tables, and
    # dropping the old copy of a table other rows point at fails with foreign keys on.
    dropped = {
        "run": (
            "after_run_id",
            "scheduled_for",
            "schedule_id",
            "delayed",
            "not_before",
            "retry_max_delay",
            "retry_backoff",
            "retry_delay",
            "retry_on",
        ),
        "app_version": ("retry_policy",),
        "app": ("max_concurrent_runs",),
        "environment": ("max_concurrent_runs",),
    }
    for table, columns in dropped.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_table("scheduler_pass")
    op.drop_table("schedule_fire")
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.drop_index("ux_schedule_name", sqlite_where=sa.text("name != ''"))
        batch_op.drop_index("ix_schedule_due", sqlite_where=sa.text("enabled = 1"))
        batch_op.drop_index("ix_schedule_app")
    op.drop_table("schedule")
