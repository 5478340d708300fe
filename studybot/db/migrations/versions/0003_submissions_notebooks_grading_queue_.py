"""submissions, notebooks, grading queue, leaderboard settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notebooks',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_notebooks'))
    )
    op.create_table('grading_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('lane', sa.String(length=16), nullable=False),
    sa.Column('virtual_time', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('lease_token', sa.String(length=40), nullable=True),
    sa.Column('lease_owner', sa.String(length=120), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.Column('run_after', sa.DateTime(), nullable=False),
    sa.Column('progress', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], name=op.f('fk_grading_jobs_submission_id_submissions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grading_jobs')),
    sa.UniqueConstraint('submission_id', name=op.f('uq_grading_jobs_submission_id'))
    )
    with op.batch_alter_table('grading_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_grading_jobs_claim', ['status', 'lane', 'virtual_time', 'id'], unique=False)

    with op.batch_alter_table('cohorts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leaderboard_weekday', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('leaderboard_time', sa.String(length=5), nullable=True))

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leaderboard_mode', sa.String(length=16), nullable=False, server_default='named'))

    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cohort_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('notebook_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('filename', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=False, server_default='slack'))
        batch_op.add_column(sa.Column('lane', sa.String(length=16), nullable=False, server_default='ranked'))
        batch_op.add_column(sa.Column('slack_file_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('dm_channel', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('dm_ts', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('notified_state', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('result_json', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('accuracy', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('train_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('speed_ratio', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('finished_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('regrade_of', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('disqualified_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('disqualified_by', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('disqualified_reason', sa.Text(), nullable=True))
        batch_op.create_index('ix_submissions_exercise_status', ['exercise_id', 'status'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_submissions_slack_file_id'), ['slack_file_id'])
        batch_op.create_foreign_key(batch_op.f('fk_submissions_regrade_of_submissions'), 'submissions', ['regrade_of'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_submissions_cohort_id_cohorts'), 'cohorts', ['cohort_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_submissions_notebook_sha256_notebooks'), 'notebooks', ['notebook_sha256'], ['sha256'])



def downgrade() -> None:
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_submissions_notebook_sha256_notebooks'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_submissions_cohort_id_cohorts'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_submissions_regrade_of_submissions'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_submissions_slack_file_id'), type_='unique')
        batch_op.drop_index('ix_submissions_exercise_status')
        batch_op.drop_column('disqualified_reason')
        batch_op.drop_column('disqualified_by')
        batch_op.drop_column('disqualified_at')
        batch_op.drop_column('regrade_of')
        batch_op.drop_column('finished_at')
        batch_op.drop_column('speed_ratio')
        batch_op.drop_column('train_seconds')
        batch_op.drop_column('accuracy')
        batch_op.drop_column('result_json')
        batch_op.drop_column('notified_state')
        batch_op.drop_column('dm_ts')
        batch_op.drop_column('dm_channel')
        batch_op.drop_column('slack_file_id')
        batch_op.drop_column('lane')
        batch_op.drop_column('source')
        batch_op.drop_column('filename')
        batch_op.drop_column('notebook_sha256')
        batch_op.drop_column('cohort_id')

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('leaderboard_mode')

    with op.batch_alter_table('cohorts', schema=None) as batch_op:
        batch_op.drop_column('leaderboard_time')
        batch_op.drop_column('leaderboard_weekday')

    with op.batch_alter_table('grading_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_grading_jobs_claim')

    op.drop_table('grading_jobs')
    op.drop_table('notebooks')
