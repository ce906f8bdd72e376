"""objects in the database (MINITOWER_OBJECT_STORE=postgres)

Revision ID: 0009_stored_objects
Revises: 0008_audit
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64

revision: str = "0009_stored_objects"
down_revision: str | None = "0008_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_object",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", INT64, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "object_chunk",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["key"], ["stored_object.key"]),
        sa.PrimaryKeyConstraint("key", "seq"),
    )


def downgrade() -> None:
    op.drop_table("object_chunk")
    op.drop_table("stored_object")
