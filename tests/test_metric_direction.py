"""An exercise's metric and its direction, bot side, on SQLite and PostgreSQL: queue.finish() stores the
metric, direction, score and target; old rows and old results read as accuracy, higher is better
(migration 0007); the result DM, the boards, the record post, the App Home and the CSV export say
"RMSE 0.912 (target ≤ 0.950)" or "98.10% accuracy (target 97.00%)"; boards still rank by time."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

from sqlalchemy import select, text

from studybot.db.models import Cohort, Notebook, Submission
from studybot.messages import render, score_phrase
from tests.conftest import T0
from tests.support.boards import board_lines, start

NOTEBOOK = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}).encode()


def rmse_result(score, seconds, *, status="passed", target=0.95):
    return {"status": status, "metric": "rmse", "higher_is_better": False, "score": score, "score_std": 0.01,
            "accuracy": None, "accuracy_std": None, "target": target, "train_seconds": seconds, "predict_seconds": 0.0,
            "rank_seconds": seconds, "rank_seconds_low": seconds, "rank_seconds_high": seconds, "speed_ratio": 1.0,
            "message": status, "log_tail": "", "hardware": {}, "runs": [{"seed": 1, "score": score}]}


def graded(bot, user, result, minutes=0) -> int:
    """A submission queued, claimed and finished through the real queue with `result`."""
    db, queue = bot.services.db, bot.services.submissions.queue
    digest = hashlib.sha256(NOTEBOOK).hexdigest()
    with db.session() as s:
        if s.get(Notebook, digest) is None:
            s.add(Notebook(sha256=digest, content=NOTEBOOK, size=len(NOTEBOOK), created_at=T0))
        row = Submission(user_id=user, exercise_id="digits", status="queued", created_at=T0 + timedelta(minutes=minutes),
                         cohort_id=s.scalar(select(Cohort.id).where(Cohort.name == "fastai")),
                         notebook_sha256=digest, lane="ranked", source="shell", filename="movielens.ipynb")
        s.add(row)
        s.flush()
        queue.enqueue(s, row)
        submission_id = row.id
    claim = queue.claim("w")
    assert claim.submission_id == submission_id
    assert queue.finish(claim.job_id, claim.token, result)
    return submission_id


def test_finish_stores_the_metric_its_direction_score_and_target(bot):
    start(bot)
    sid = graded(bot, "ada", rmse_result(0.912, 3.0))
    old = graded(bot, "bob", {"status": "passed", "accuracy": 0.981, "target": 0.97, "train_seconds": 2.0})
    with bot.services.db.session() as s:
        rmse, accuracy = s.get(Submission, sid), s.get(Submission, old)
        assert (rmse.metric, rmse.higher_is_better, rmse.score, rmse.target, rmse.accuracy) == \
            ("rmse", False, 0.912, 0.95, None)
        assert (accuracy.metric, accuracy.higher_is_better, accuracy.score, accuracy.target) == \
            ("accuracy", True, 0.981, 0.97)  # a result from before metrics


def test_the_messages_say_the_metric_and_which_way_the_target_points(bot):
    start(bot)
    sid = graded(bot, "ada", rmse_result(0.912, 3.0))
    worse = graded(bot, "bob", rmse_result(1.02, 2.0, status="below_target")
                   | {"message": "mean RMSE 1.020 is above the target ≤ 0.950: train longer"}, minutes=1)
    feedback, submissions = bot.services.feedback, bot.services.submissions
    dm = feedback.message(submissions.get(sid), None)
    assert "Passed digits: RMSE 0.912 (target ≤ 0.950), ranking time" in dm.text
    assert "*RMSE* 0.912 ± 0.010 (target ≤ 0.950)" in json.dumps(dm.blocks, ensure_ascii=False)
    below = feedback.message(submissions.get(worse), None)
    assert "below target" in below.text and "above the target ≤ 0.950" in below.text
    assert score_phrase("accuracy", True, 0.981, 0.97) == "98.10% accuracy (target 97.00%)"
    assert score_phrase("error_rate", False, 0.02, 0.05) == "error rate 2.00% (target ≤ 5.00%)"


def test_boards_rank_passing_entries_by_time_and_show_the_metric(bot):
    start(bot)
    graded(bot, "ada", rmse_result(0.80, 5.0))               # the better score, but slower
    graded(bot, "bob", rmse_result(0.94, 2.0), minutes=1)    # passes (≤ 0.95) and is faster: first
    graded(bot, "cy", rmse_result(1.20, 1.0, status="below_target"), minutes=2)  # worse than the target: off
    said = bot.say("/study leaderboard digits", as_user="ada")
    assert board_lines(said) == ["1. @bob · 2.00 s · RMSE 0.940 · 1.00× ref",
                                 "2. @ada · 5.00 s · RMSE 0.800 · 1.00× ref ← you"]
    entry = bot.services.leaderboards.board("ada", "digits").entries[0]
    assert (entry.metric, entry.score, entry.higher_is_better) == ("rmse", 0.94, False)
    message = render("leaderboard_record", cohort_name="fastai", exercise="digits", holder={
        "label": "bob", "user_id": "bob", "metric": "rmse", "score": 0.94}, previous=None, seconds=2.0, low=2.0,
        high=2.0, accuracy=None, speedup=None, same_holder=False, previous_seconds=None)
    assert "to RMSE 0.940" in message.text


def test_home_and_export_show_the_metric(bot):
    from studybot.home import home_text

    start(bot)
    graded(bot, "ada", rmse_result(0.912, 3.0))
    home = home_text(bot.services, "ada")
    assert "Best digits: RMSE 0.912 in 3.00 s" in home
    _, content = bot.services.exports.export_csv("carol", "digits", "fastai")
    row = next(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert (row["metric"], row["higher_is_better"], row["score"], row["target"], row["accuracy"]) == \
        ("rmse", "false", "0.912", "0.95", "")


def test_0007_reads_old_rows_as_accuracy_higher_is_better(db, bot):
    from alembic import command

    from studybot.db.engine import alembic_config

    with db.engine.connect() as connection:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
        connection.execute(text(
            "INSERT INTO submissions (user_id, exercise_id, status, created_at, source, lane, accuracy) "
            "VALUES ('ada', 'digits', 'passed', '2027-01-08 16:00:00', 'shell', 'ranked', 0.975), "
            "('bob', 'digits', 'crashed', '2027-01-08 16:00:00', 'shell', 'ranked', NULL)"))
        command.upgrade(config, "head")
        connection.commit()
    with db.session() as s:
        rows = {r.user_id: r for r in s.scalars(select(Submission))}
    assert (rows["ada"].metric, rows["ada"].higher_is_better, rows["ada"].score) == ("accuracy", True, 0.975)
    assert (rows["bob"].metric, rows["bob"].higher_is_better, rows["bob"].score) == ("accuracy", True, None)


def test_review_evidence_shows_the_metric(bot):
    start(bot)
    flagged = graded(bot, "ada", rmse_result(0.5, 0.2) | {"flags": [{"code": "too_good_too_fast", "message": "m"}],
                                                           "runs": [{"seed": 11, "score": 0.5, "accuracy": None}]})
    evidence = bot.say(f"/study review {flagged}", as_user="carol")
    assert "RMSE 0.500." in evidence and "run 1 (seed 11):" in evidence and ", RMSE 0.500, load" in evidence
