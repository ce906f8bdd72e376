"""runners bound to a team, team registration tokens, shared-runner opt-out

Revision ID: 0003_runner_binding
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64

revision: str = "0003_runner_binding"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every existing team keeps today's behaviour: its runs may go to shared runners.
    with op.batch_alter_table("team") as batch:
        batch.add_column(
            sa.Column(
                "allow_shared_runners", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
    # Every existing runner registered with the operator's token: shared (team_id null).
    with op.batch_alter_table("runner") as batch:
        batch.add_column(sa.Column("team_id", INT64, nullable=True))
        batch.create_foreign_key("fk_runner_team_id_team", "team", ["team_id"], ["id"])
        batch.create_index("ix_runner_team_id", ["team_id"], unique=False)
    op.create_table(
        "runner_registration_token",
        sa.Column("id", INT64, nullable=False),
        sa.Column("team_id", INT64, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        "ix_runner_registration_token_team_id",
        "runner_registration_token",
        ["team_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_runner_registration_token_team_id", table_name="runner_registration_token")
    op.drop_table("runner_registration_token")
    with op.batch_alter_table("runner") as batch:
        batch.drop_index("ix_runner_team_id")
        batch.drop_constraint("fk_runner_team_id_team", type_="foreignkey")
        batch.drop_column("team_id")
    with op.batch_alter_table("team") as batch:
        batch.drop_column("allow_shared_runners")
