"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from studybot.db.models import Base


def test_migrations_match_the_models(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrating_twice_is_harmless(db):
    db.migrate()
    assert {"cohorts", "deliveries", "memberships", "alembic_version"} <= set(inspect(db.engine).get_table_names())


def test_0005_gives_weekly_board_rows_the_one_posters_states(db, bot):
    """Rows written by the old weekly-board code ('retry', 'posting') are picked up by the one poster."""
    from alembic import command
    from sqlalchemy import select, text

    from studybot.db.engine import alembic_config
    from studybot.db.models import Delivery

    bot.say("/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin",
            as_user="admin")
    with db.engine.connect() as connection:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
        cohort_id = connection.execute(text("SELECT id FROM cohorts")).scalar()
        for key, status in (("2027-W01", "sent"), ("2027-W02", "retry"), ("2027-W03", "posting")):
            connection.execute(text(
                "INSERT INTO deliveries (cohort_id, lesson_key, position, kind, due_at, status, attempts) "
                "VALUES (:c, :k, 0, 'leaderboard', :due, :s, 1)"), {"c": cohort_id, "k": key, "s": status,
                                                                    "due": "2027-01-08 16:00:00"})
        command.upgrade(config, "head")
        connection.commit()
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

    from studybot.db.engine import alembic_config
    from studybot.db.models import GradingJob, Submission

    bot.say("/study cohort create fastai --channel #fastai --start 2027-01-05 --time 18:00 --tz Europe/Berlin",
            as_user="admin")
    with db.engine.connect() as connection:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
        for user, status, seconds in (("ada", "passed", 41.5), ("bob", "crashed", None)):
            connection.execute(text(
                "INSERT INTO submissions (user_id, exercise_id, status, created_at, source, lane, train_seconds) "
                "VALUES (:u, 'digits', :s, '2027-01-08 16:00:00', 'shell', 'ranked', :t)"),
                {"u": user, "s": status, "t": seconds})
        command.upgrade(config, "head")
        connection.commit()
    with db.session() as s:
        rows = {r.user_id: r for r in s.scalars(select(Submission))}
        assert s.scalars(select(GradingJob.avoid_worker)).all() == []
    ada, bob = rows["ada"], rows["bob"]
    assert (ada.rank_seconds, ada.rank_seconds_low, ada.rank_seconds_high) == (41.5, 41.5, 41.5)
    assert (ada.predict_seconds, ada.review_state, ada.verification, ada.verifies) == (None, None, None, None)
    assert (bob.rank_seconds, bob.rank_seconds_low, bob.rank_seconds_high) == (None, None, None)
