"""console auth: team passwords, console sessions, rerun origin

Revision ID: 0004_console_auth
Revises: 0003_runner_binding
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64

revision: str = "0004_console_auth"
down_revision: str | None = "0003_runner_binding"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("team", sa.Column("password_hash", sa.String(length=200), nullable=True))
    op.add_column("run", sa.Column("rerun_of", INT64, nullable=True))
    op.create_table(
        "console_session",
        sa.Column("id", INT64, nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("token_id", INT64, nullable=False),
        sa.Column("owns_token", sa.Boolean(), nullable=False),
        sa.Column("csrf_secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.ForeignKeyConstraint(["token_id"], ["team_token.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_hash"),
    )
    op.create_index("ix_console_session_team_id", "console_session", ["team_id"])
    op.create_index("ix_console_session_token_id", "console_session", ["token_id"])


def downgrade() -> None:
    op.drop_index("ix_console_session_token_id", table_name="console_session")
    op.drop_index("ix_console_session_team_id", table_name="console_session")
    op.drop_table("console_session")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("rerun_of")
    with op.batch_alter_table("team") as batch:
        batch.drop_column("password_hash")
