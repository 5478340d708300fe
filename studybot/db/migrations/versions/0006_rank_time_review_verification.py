"""the ranking time and its interval, review of flagged results, verification re-runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Submissions get predict_seconds, rank_seconds with its interval (rank_seconds_low/high), the review
columns (review_state, review_note, reviewed_by, reviewed_at) and the verification columns
(verification, verified_at, verified_by_submission, verifies); grading jobs get avoid_worker.
Existing rows were ranked by train_seconds: they keep that rank, as rank_seconds = train_seconds
with the interval [x, x]. Batch mode, so SQLite (which cannot add foreign keys in place) copies the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FLOATS = ("predict_seconds", "rank_seconds", "rank_seconds_low", "rank_seconds_high")


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        for name in FLOATS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("review_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("review_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reviewed_by", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("verification", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("verified_by_submission", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("verifies", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_submissions_verified_by_submission_submissions"), "submissions",
                                    ["verified_by_submission"], ["id"])
        batch_op.create_foreign_key(batch_op.f("fk_submissions_verifies_submissions"), "submissions",
                                    ["verifies"], ["id"])
    with op.batch_alter_table("grading_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("avoid_worker", sa.String(length=120), nullable=True))
    op.execute("UPDATE submissions SET rank_seconds = train_seconds, rank_seconds_low = train_seconds, "
               "rank_seconds_high = train_seconds WHERE train_seconds IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("grading_jobs", schema=None) as batch_op:
        batch_op.drop_column("avoid_worker")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_submissions_verifies_submissions", type_="foreignkey")
        batch_op.drop_constraint("fk_submissions_verified_by_submission_submissions", type_="foreignkey")
        for name in ("verifies", "verified_by_submission", "verified_at", "verification", "reviewed_at",
                     "reviewed_by", "review_note", "review_state", *reversed(FLOATS)):
            batch_op.drop_column(name)
