"""organizers' weekly digests and the replies in each lesson post's thread

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

cohort_digests: one row per cohort that has a weekly progress digest (when, and where: the named
organizers' DMs, or one private channel). lesson_thread_replies: one row per reply in a lesson post's
thread, unique per (lesson post, reply ts), so a retried event never counts twice. Both hang off a
cohort (through its deliveries for the replies) and are scoped by it. New tables only: nothing
existing changes, and the downgrade drops them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cohort_digests",
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("post_time", sa.String(length=5), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=True),
        sa.Column("channel_name", sa.String(length=80), nullable=True),
        sa.Column("set_by", sa.String(length=40), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.id"], name="fk_cohort_digests_cohort_id_cohorts",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cohort_id", name="pk_cohort_digests"),
    )
    op.create_table(
        "lesson_thread_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("message_ts", sa.String(length=40), nullable=False),
        sa.Column("replied_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name="fk_lesson_thread_replies_delivery_id_deliveries",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_lesson_thread_replies"),
        sa.UniqueConstraint("delivery_id", "message_ts", name="uq_lesson_thread_replies_delivery_message"),
    )


def downgrade() -> None:
    op.drop_table("lesson_thread_replies")
    op.drop_table("cohort_digests")
