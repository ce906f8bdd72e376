"""reaper passes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reaper_pass",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("last_pass_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_pass_duration_ms", sa.Float(), nullable=False),
        sa.Column("passes", INT64, nullable=False),
        sa.Column("leases_expired", INT64, nullable=False),
        sa.Column("runs_retried", INT64, nullable=False),
        sa.Column("runs_buried", INT64, nullable=False),
        sa.Column("runs_cancelled", INT64, nullable=False),
        sa.Column("runners_marked_offline", INT64, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("reaper_pass")
