"""Organizers moderate boards, through the shell on SQLite and PostgreSQL: disqualify and requalify
keep the evidence; a re-grade is a new, queued submission of the same notebook (services/moderation.py,
Submissions.regrade)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from studybot.db.models import GradingJob, Submission
from tests.support.boards import board_lines, count, start, submit


def test_disqualify_keeps_the_evidence_and_takes_the_entry_off_the_board(bot):
    start(bot)
    db = bot.services.db
    fast = submit(db, "ada", 20.0, minutes=1)
    submit(db, "bob", 30.0, minutes=2)
    for line, words in [(f"/study disqualify {fast} --reason 'x'", "Only organizers"),
                        (f"/study disqualify {fast}", "Give a reason"),
                        ("/study disqualify abc --reason 'copied'", "is not a submission id"),
                        ("/study disqualify 9999 --reason 'copied'", "There is no submission 9999")]:
        said = bot.say(line, as_user="ada" if "'x'" in line else "carol")
        assert words in said, line
    with db.session() as s:
        assert s.get(Submission, fast).disqualified_at is None
    said = bot.say(f"/study disqualify {fast} --reason 'trained on the <!channel> test set'", as_user="carol")
    assert f"Disqualified submission {fast} (@ada, `digits`, 20.0 s, fastai)" in said
    assert "It is off the board now" in said
    with db.session() as s:
        row = s.get(Submission, fast)
        assert row.status == "passed" and row.train_seconds == 20.0 and row.accuracy == 0.975
        assert json.loads(row.result_json)["train_seconds"] == 20.0
        assert (row.disqualified_by, row.disqualified_reason) == ("carol", "trained on the <!channel> test set")
        assert row.disqualified_at == bot.clock.now()
    [dm] = [p for p in bot.chat.posted if p.channel_id == "@ada"]
    assert "was disqualified by an organizer" in dm.message.text
    assert "<!channel>" not in json.dumps(dm.message.blocks)  # user-typed text stays inert
    assert board_lines(bot.say("/study leaderboard digits", as_user="ada"))[0].startswith("1. @bob")
    assert "already disqualified" in bot.say(f"/study disqualify {fast} --reason again", as_user="carol")
    assert "back on the board" in bot.say(f"/study requalify {fast}", as_user="carol")
    assert board_lines(bot.say("/study leaderboard digits", as_user="ada"))[0].startswith("1. @ada")


def test_regrade_queues_a_new_submission_of_the_same_notebook(bot):
    pytest.importorskip("studybot.queue")
    start(bot)
    db = bot.services.db
    original = submit(db, "ada", 20.0, notebook=b'{"cells": [], "nbformat": 4}')
    assert "Only organizers" in bot.say(f"/study regrade {original}", as_user="ada")
    assert count(db, GradingJob) == 0
    said = bot.say(f"/study regrade {original}", as_user="carol")
    assert f"Re-grading submission {original} (@ada, `digits`, 20.0 s, fastai)" in said
    with db.session() as s:
        new = s.scalar(select(Submission).where(Submission.regrade_of == original))
        old = s.get(Submission, original)
        assert (new.source, new.status, new.user_id, new.exercise_id, new.cohort_id, new.notebook_sha256) == (
            "regrade", "queued", "ada", "digits", old.cohort_id, old.notebook_sha256)
        job = s.scalar(select(GradingJob).where(GradingJob.submission_id == new.id))
        assert job is not None and job.status == "queued"
    assert f"queued as submission {new.id}, number 1 in the queue" in said
    assert "already being re-graded" in bot.say(f"/study regrade {original}", as_user="carol")
    assert count(db, GradingJob) == 1
    # A worker grades it: the re-grade competes as a new entry, and confirming one's own record is not news.
    from studybot.queue import JobQueue

    queue = JobQueue(db, bot.clock)
    claim = queue.claim("worker-1")
    assert claim.submission_id == new.id and claim.notebook == b'{"cells": [], "nbformat": 4}'
    assert queue.finish(claim.job_id, claim.token, {"status": "passed", "accuracy": 0.98, "train_seconds": 18.0,
                                                    "speed_ratio": 0.45})
    assert bot.services.leaderboards.record_broken(new.id) is None
    assert board_lines(bot.say("/study leaderboard digits", as_user="ada")) == [
        "1. @ada · 18.0 s · 98.0% · 0.45× ref ← you"]
