"""the exercise's metric on each submission: metric, its direction, the score and the target

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Exercises may now be scored by accuracy, error_rate, rmse, mae or pearson (the grader's
grader/metrics.py). Submissions get metric, higher_is_better, score and target. Existing rows were
all accuracy, higher is better: they keep that, with score = accuracy, and target from their result
JSON where the database can read it (left null otherwise: the message falls back to the JSON).
Batch mode, so SQLite copies the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metric", sa.String(length=24), nullable=False, server_default="accuracy"))
        batch_op.add_column(sa.Column("higher_is_better", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("target", sa.Float(), nullable=True))
    op.execute("UPDATE submissions SET score = accuracy WHERE accuracy IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        for name in ("target", "score", "higher_is_better", "metric"):
            batch_op.drop_column(name)
