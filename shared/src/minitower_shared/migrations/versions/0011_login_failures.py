"""failed sign-ins in the database (login_failure), shared by every API process

Revision ID: 0011_login_failures
Revises: 0010_attempt_log_budget
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64

revision: str = "0011_login_failures"
down_revision: str | None = "0010_attempt_log_budget"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failure",
        sa.Column("id", INT64, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failure_key", "login_failure", ["kind", "key", "failed_at"])
    op.create_index(op.f("ix_login_failure_failed_at"), "login_failure", ["failed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_login_failure_failed_at"), table_name="login_failure")
    op.drop_index("ix_login_failure_key", table_name="login_failure")
    op.drop_table("login_failure")
