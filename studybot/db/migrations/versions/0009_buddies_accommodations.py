"""study buddies (opt-ins, the organizer's switch, each week's groups) and accommodations (deadline
extensions, quota grants, reminder pauses)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Every table but reminder_pauses hangs off a cohort and is scoped through it, like memberships. A
reminder pause spans a learner's cohorts in one workspace, so it carries team_id (keyed with the user,
like submit_intents). The week's pairing and each group's DM are rows of deliveries (kinds 'buddies'
and 'buddy_group'), so they need no table of their own beyond buddy_groups.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _cohort_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.id"], name=op.f(f"fk_{table}_cohort_id_cohorts"),
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "buddy_settings",
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("changed_by", sa.String(length=40), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        _cohort_fk("buddy_settings"),
        sa.PrimaryKeyConstraint("cohort_id", name=op.f("pk_buddy_settings")),
    )
    op.create_table(
        "buddy_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("opted_in", sa.Boolean(), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        _cohort_fk("buddy_preferences"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buddy_preferences")),
        sa.UniqueConstraint("cohort_id", "user_id", name="uq_buddy_preferences_cohort_user"),
    )
    op.create_table(
        "buddy_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("lesson_key", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("user_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _cohort_fk("buddy_groups"),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], name=op.f("fk_buddy_groups_delivery_id_deliveries"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buddy_groups")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_buddy_groups_delivery_id")),
    )
    op.create_index("ix_buddy_groups_cohort_lesson", "buddy_groups", ["cohort_id", "lesson_key"], unique=False)
    op.create_table(
        "deadline_extensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("lesson_key", sa.String(length=16), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(), nullable=False),
        sa.Column("granted_by", sa.String(length=40), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(), nullable=True),
        _cohort_fk("deadline_extensions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deadline_extensions")),
        sa.UniqueConstraint("cohort_id", "user_id", "lesson_key", name="uq_deadline_extensions_cohort_user_lesson"),
    )
    op.create_table(
        "quota_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("exercise_id", sa.String(length=80), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("extra", sa.Integer(), nullable=False),
        sa.Column("granted_by", sa.String(length=40), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        _cohort_fk("quota_grants"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_grants")),
    )
    op.create_index("ix_quota_grants_user_day", "quota_grants", ["user_id", "day"], unique=False)
    op.create_table(
        "reminder_pauses",
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_reminder_pauses")),
    )


def downgrade() -> None:
    op.drop_table("reminder_pauses")
    op.drop_index("ix_quota_grants_user_day", table_name="quota_grants")
    op.drop_table("quota_grants")
    op.drop_table("deadline_extensions")
    op.drop_index("ix_buddy_groups_cohort_lesson", table_name="buddy_groups")
    op.drop_table("buddy_groups")
    op.drop_table("buddy_preferences")
    op.drop_table("buddy_settings")
    # The pairings' and groups' deliveries rows are plain rows of deliveries: they go with their kinds.
    op.execute(sa.text("DELETE FROM deliveries WHERE kind IN ('buddies', 'buddy_group')"))
