"""each attempt's log budget in its row (log_bytes, log_truncated)

Revision ID: 0010_attempt_log_budget
Revises: 0009_stored_objects
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from minitower_shared.dialect import INT64, utf8_length

revision: str = "0010_attempt_log_budget"
down_revision: str | None = "0009_stored_objects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Where the cap cut an attempt's log, the API stored a line starting so
# (minitower_shared.log_budget; copied: a migration keeps its own words).
_TRUNCATION_PREFIX = "[minitower] log truncated:"


def upgrade() -> None:
    with op.batch_alter_table("run_attempt", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("log_bytes", INT64, nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("log_truncated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Every attempt's budget from its stored lines, as the API counts them (UTF-8 bytes):
    # one walk of run_log's (attempt_id, seq) index.
    attempt = sa.table(
        "run_attempt", sa.column("id"), sa.column("log_bytes"), sa.column("log_truncated")
    )
    log = sa.table("run_log", sa.column("attempt_id"), sa.column("line"))
    its_lines = log.c.attempt_id == attempt.c.id
    stored = sa.select(sa.func.sum(utf8_length(log.c.line))).where(its_lines).scalar_subquery()
    op.execute(
        attempt.update()
        .where(sa.exists().where(its_lines))
        .values(
            log_bytes=sa.func.coalesce(stored, 0),
            log_truncated=sa.exists().where(
                its_lines, log.c.line.startswith(_TRUNCATION_PREFIX, autoescape=True)
            ),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("run_attempt", schema=None) as batch_op:
        batch_op.drop_column("log_truncated")
        batch_op.drop_column("log_bytes")
