"""secrets per environment, and the secrets a version declares

Revision ID: 0006_secrets
Revises: 0005_schedules
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64

revision: str = "0006_secrets"
down_revision: str | None = "0005_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secret",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.String(), nullable=False),
        sa.Column("set_by_token_id", INT64, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.ForeignKeyConstraint(["set_by_token_id"], ["team_token.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "environment", "name"),
    )
    op.create_table(
        "app_version_secrets",
        sa.Column("app_version_id", INT64, nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["app_version_id"], ["app_version.id"]),
        sa.PrimaryKeyConstraint("app_version_id"),
    )


def downgrade() -> None:
    op.drop_table("app_version_secrets")
    op.drop_table("secret")
