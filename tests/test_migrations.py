"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from datetime import date, datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

from studybot.db.models import Base


def expected_schema() -> MetaData:
    """Our models, and the tables slack_sdk's installation and OAuth state stores read and write (0008)."""
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    SQLAlchemyInstallationStore.build_installations_table(metadata, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(metadata, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(metadata, "slack_oauth_states")
    return metadata


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, expected_schema()) == []


def test_migrating_twice_is_harmless(db):
    db.migrate()
    assert {"cohorts", "deliveries", "memberships", "alembic_version"} <= set(inspect(db.engine).get_table_names())


def test_0005_gives_weekly_board_rows_the_one_posters_states(db, bot):
    """Rows written by the old weekly-board code ('retry', 'posting') are picked up by the one poster."""
    from alembic import command
    from sqlalchemy import select, text

    from studybot.db.models import Delivery

    bot.say("/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin",
            as_user="admin")
    with db.migration_connection() as (connection, config):
        command.downgrade(config, "0004")
        cohort_id = connection.execute(text("SELECT id FROM cohorts")).scalar()
        for key, status in (("2027-W01", "sent"), ("2027-W02", "retry"), ("2027-W03", "posting")):
            connection.execute(text(
                "INSERT INTO deliveries (cohort_id, lesson_key, position, kind, due_at, status, attempts) "
                "VALUES (:c, :k, 0, 'leaderboard', :due, :s, 1)"), {"c": cohort_id, "k": key, "s": status,
                                                                    "due": "2027-01-08 16:00:00"})
        command.upgrade(config, "head")
    with db.session() as s:
        boards = dict(s.execute(select(Delivery.lesson_key, Delivery.status).where(
            Delivery.kind == "leaderboard")).all())
        lessons = set(s.scalars(select(Delivery.status).where(Delivery.kind == "lesson")))
    assert boards == {"2027-W01": "sent", "2027-W02": "pending", "2027-W03": "sending"}
    assert lessons == {"pending"}  # lesson rows were already in these states: untouched


def test_0006_ranks_existing_rows_by_their_train_time_with_no_spread(db, bot):
    """Rows graded before 0006 keep their rank: rank_seconds = train_seconds, interval [x, x], nothing held."""
    from alembic import command
    from sqlalchemy import select, text

    from studybot.db.models import GradingJob, Submission

    bot.say("/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin",
            as_user="admin")
    with db.migration_connection() as (connection, config):
        command.downgrade(config, "0005")
        for user, status, seconds in (("ada", "passed", 41.5), ("bob", "crashed", None)):
            connection.execute(text(
                "INSERT INTO submissions (user_id, exercise_id, status, created_at, source, lane, train_seconds) "
                "VALUES (:u, 'digits', :s, '2027-01-08 16:00:00', 'shell', 'ranked', :t)"),
                {"u": user, "s": status, "t": seconds})
        command.upgrade(config, "head")
    with db.session() as s:
        rows = {r.user_id: r for r in s.scalars(select(Submission))}
        assert s.scalars(select(GradingJob.avoid_worker)).all() == []
    ada, bob = rows["ada"], rows["bob"]
    assert (ada.rank_seconds, ada.rank_seconds_low, ada.rank_seconds_high) == (41.5, 41.5, 41.5)
    assert (ada.predict_seconds, ada.review_state, ada.verification, ada.verifies) == (None, None, None, None)
    assert (bob.rank_seconds, bob.rank_seconds_low, bob.rank_seconds_high) == (None, None, None)


def test_0008_moves_single_workspace_rows_into_the_configured_team(db):
    """0007-era rows (one workspace, names unique) land in STUDYBOT_DEFAULT_TEAM_ID's team, and only there."""
    from alembic import command
    from sqlalchemy import select, text

    from studybot.db.models import Cohort, ProcessedEvent, SubmitIntent, Submission
    from studybot.teams import Team, acting_for

    with db.migration_connection() as (connection, config):
        command.downgrade(config, "0007")
        connection.execute(text(
            "INSERT INTO cohorts (name, channel_id, channel_name, curriculum_id, start_date, weekday, post_time, "
            "timezone, status, created_by, created_at) VALUES ('fastai', 'C1', 'fastai', 'fastai-part1-2022', "
            "'2027-01-05', 1, '18:00', 'Europe/Berlin', 'active', 'U1', '2027-01-01 10:00:00')"))
        cohort_id = connection.execute(text("SELECT id FROM cohorts")).scalar()
        connection.execute(text(
            "INSERT INTO submissions (user_id, exercise_id, status, created_at, cohort_id, source, lane) "
            "VALUES ('U1', 'digits', 'passed', '2027-01-08 16:00:00', :c, 'slack', 'ranked')"), {"c": cohort_id})
        connection.execute(text("INSERT INTO submit_intents (user_id, exercise_id, lane, created_at) "
                                "VALUES ('U2', 'digits', 'ranked', '2027-01-08 16:00:00')"))
        connection.execute(text("INSERT INTO processed_events (event_id, received_at) "
                                "VALUES ('Ev1', '2027-01-08 16:00:00')"))
        config.attributes["default_team_id"] = "T0OLDTEAM"
        command.upgrade(config, "head")

    with acting_for(Team("T0OLDTEAM")), db.session() as s:
        assert [(c.name, c.team_id, c.enterprise_id) for c in s.scalars(select(Cohort))] == [
            ("fastai", "T0OLDTEAM", None)]
        assert [(r.user_id, r.team_id, r.cohort_id) for r in s.scalars(select(Submission))] == [
            ("U1", "T0OLDTEAM", cohort_id)]
        assert [(r.user_id, r.team_id) for r in s.scalars(select(SubmitIntent))] == [("U2", "T0OLDTEAM")]
        assert [(r.event_id, r.team_id) for r in s.scalars(select(ProcessedEvent))] == [("Ev1", "T0OLDTEAM")]
    with acting_for(Team("T0OTHER")), db.session() as s:  # another workspace sees none of it
        assert s.scalars(select(Cohort)).all() == [] and s.scalars(select(Submission)).all() == []
        # ...and may now have a cohort of the same name: uniqueness is per workspace
        s.add(Cohort(name="fastai", channel_id="C9", channel_name="fastai", curriculum_id="fastai-part1-2022",
                     start_date=date(2027, 1, 5), weekday=1, post_time="18:00", timezone="UTC", created_by="U9",
                     created_at=datetime(2027, 1, 1, tzinfo=timezone.utc)))
    with acting_for(Team("T0OTHER")), db.session() as s:
        assert [c.team_id for c in s.scalars(select(Cohort))] == ["T0OTHER"]
