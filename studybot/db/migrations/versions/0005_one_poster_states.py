"""weekly board rows take the one poster's states: retry -> pending, posting -> sending

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Every exactly-once post now goes through services/posting.py, whose states are those lesson rows
always had (pending, sending, sent, failed, skipped). Weekly board rows used their own 'retry' (a
failed post waiting for another attempt) and 'posting' (claimed, mid-post); this renames them in
place. No schema change.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE deliveries SET status = 'pending' WHERE kind = 'leaderboard' AND status = 'retry'")
    op.execute("UPDATE deliveries SET status = 'sending' WHERE kind = 'leaderboard' AND status = 'posting'")


def downgrade() -> None:
    op.execute("UPDATE deliveries SET status = 'retry' WHERE kind = 'leaderboard' AND status = 'pending'")
    op.execute("UPDATE deliveries SET status = 'posting' WHERE kind = 'leaderboard' AND status = 'sending'")
    # Record posts (kind 'record') did not exist before 0005's code; the old code never reads them.
