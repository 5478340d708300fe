"""submit intents, and the run plot stored with each submission

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submit_intents",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("exercise_id", sa.String(length=80), nullable=False),
        sa.Column("lane", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_submit_intents")),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plot_png", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("plot_png")
    op.drop_table("submit_intents")
