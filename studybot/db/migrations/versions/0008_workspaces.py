"""many workspaces: every row scoped to its Slack team; bolt's installation and OAuth state tables

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Cohorts, submissions, submit intents and processed events get team_id (and enterprise_id, Enterprise
Grid only). Cohort names become unique per team. Rows that hang off a cohort (organizers, memberships,
deliveries) are scoped through it and are left as they are.

Existing rows belong to the one workspace the deployment served so far: they get the team id the
migrating process was given (Database.migrate(default_team_id=...), from STUDYBOT_DEFAULT_TEAM_ID), else
"local", the team token mode and the shell act for when no id is configured (studybot/teams.py).

slack_bots, slack_installations and slack_oauth_states are the tables of slack_sdk's
SQLAlchemyInstallationStore and SQLAlchemyOAuthStateStore, written out here (rather than create_all at
run time) so that the schema has one history; tests/test_migrations.py checks they still match what
the installed slack_sdk expects.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LOCAL_TEAM_ID = "local"  # studybot.teams.LOCAL_TEAM_ID as of this revision (a migration is frozen in time)


def _default_team_id() -> str:
    return context.config.attributes.get("default_team_id") or LOCAL_TEAM_ID


def _scope_table(table: str, team_id: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("enterprise_id", sa.String(length=32), nullable=True))
    op.execute(sa.text(f"UPDATE {table} SET team_id = :team").bindparams(team=team_id))
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.alter_column("team_id", existing_type=sa.String(length=32), nullable=False)


def _rekey_table(table: str, key: str, team_id: str) -> None:
    """team_id joins the primary key: (team_id, key)."""
    _scope_table(table, team_id)
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(f"pk_{table}", type_="primary")
        batch_op.create_primary_key(f"pk_{table}", ["team_id", key])


def upgrade() -> None:
    team_id = _default_team_id()
    _scope_table("cohorts", team_id)
    with op.batch_alter_table("cohorts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_cohorts_name", type_="unique")
        batch_op.create_unique_constraint("uq_cohorts_team_name", ["team_id", "name"])
        batch_op.create_index("ix_cohorts_team_id", ["team_id"], unique=False)
    _scope_table("submissions", team_id)
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index("ix_submissions_team_id", ["team_id"], unique=False)
    _rekey_table("submit_intents", "user_id", team_id)
    _rekey_table("processed_events", "event_id", team_id)

    op.create_table(
        "slack_installations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_name", sa.String(length=200), nullable=True),
        sa.Column("enterprise_url", sa.String(length=200), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("team_name", sa.String(length=200), nullable=True),
        sa.Column("bot_token", sa.String(length=200), nullable=True),
        sa.Column("bot_id", sa.String(length=32), nullable=True),
        sa.Column("bot_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_scopes", sa.String(length=1000), nullable=True),
        sa.Column("bot_refresh_token", sa.String(length=200), nullable=True),
        sa.Column("bot_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("user_token", sa.String(length=200), nullable=True),
        sa.Column("user_scopes", sa.String(length=1000), nullable=True),
        sa.Column("user_refresh_token", sa.String(length=200), nullable=True),
        sa.Column("user_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("incoming_webhook_url", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_channel", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_channel_id", sa.String(length=200), nullable=True),
        sa.Column("incoming_webhook_configuration_url", sa.String(length=200), nullable=True),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("token_type", sa.String(length=32), nullable=True),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("slack_installations_idx", "slack_installations",
                    ["client_id", "enterprise_id", "team_id", "user_id", "installed_at"], unique=False)
    op.create_table(
        "slack_bots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("enterprise_name", sa.String(length=200), nullable=True),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("team_name", sa.String(length=200), nullable=True),
        sa.Column("bot_token", sa.String(length=200), nullable=True),
        sa.Column("bot_id", sa.String(length=32), nullable=True),
        sa.Column("bot_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_scopes", sa.String(length=1000), nullable=True),
        sa.Column("bot_refresh_token", sa.String(length=200), nullable=True),
        sa.Column("bot_token_expires_at", sa.DateTime(), nullable=True),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("slack_bots_idx", "slack_bots", ["client_id", "enterprise_id", "team_id", "installed_at"],
                    unique=False)
    op.create_table(
        "slack_oauth_states",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("state", sa.String(length=200), nullable=False),
        sa.Column("expire_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    """Back to one workspace: only the rows of the default team are kept (the others have nowhere to go)."""
    team_id = _default_team_id()
    op.drop_table("slack_oauth_states")
    op.drop_index("slack_bots_idx", table_name="slack_bots")
    op.drop_table("slack_bots")
    op.drop_index("slack_installations_idx", table_name="slack_installations")
    op.drop_table("slack_installations")
    for table, key in (("processed_events", "event_id"), ("submit_intents", "user_id")):
        op.execute(sa.text(f"DELETE FROM {table} WHERE team_id <> :team").bindparams(team=team_id))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"pk_{table}", type_="primary")
            batch_op.create_primary_key(f"pk_{table}", [key])
            batch_op.drop_column("enterprise_id")
            batch_op.drop_column("team_id")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_submissions_team_id")
        batch_op.drop_column("enterprise_id")
        batch_op.drop_column("team_id")
    op.execute(sa.text("DELETE FROM cohorts WHERE team_id <> :team").bindparams(team=team_id))
    with op.batch_alter_table("cohorts", schema=None) as batch_op:
        batch_op.drop_index("ix_cohorts_team_id")
        batch_op.drop_constraint("uq_cohorts_team_name", type_="unique")
        batch_op.create_unique_constraint("uq_cohorts_name", ["name"])
        batch_op.drop_column("enterprise_id")
        batch_op.drop_column("team_id")
